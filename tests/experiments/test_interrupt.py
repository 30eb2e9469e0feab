"""Ctrl-C and SIGKILL of ``twin sweep`` with local worker processes (real scenario, real processes).

A grid of two short and two very long runs: the short ones finish, then Ctrl-C arrives while the
long ones are running. The sweep must stop within a couple of seconds, keep the finished runs, say
how to resume, and leave no worker behind; after SIGKILL of the parent the workers must exit too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from twin.experiments.sweep import RUNS_FILE

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
# Two 10-minute runs finish in well under a second; the two 60-day runs would take minutes.
ARGS = ["sweep", str(ROOT / "scenarios" / "quickstart.yaml"), "--grid", "duration=10m,60d", "--seeds", "2"]


def _start(out: Path) -> subprocess.Popen[str]:
    cmd = [str(BIN / "twin"), *ARGS, "--workers", "2", "-o", str(out)]
    # A session of its own: Ctrl-C on a terminal signals the whole foreground process group.
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_rows(out: Path, rows: int, proc: subprocess.Popen[str], timeout: float = 120) -> list[int]:
    """Wait until ``rows`` runs are saved; return the worker pids then busy with the long runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = out / RUNS_FILE
        if path.exists() and len(path.read_text().splitlines()) >= rows:
            workers = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
            if workers:
                return workers
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the short runs did not finish in time")


def _ctrl_c_after_two_runs(out: Path, proc: subprocess.Popen[str]) -> tuple[list[int], str, float]:
    """Ctrl-C (SIGINT to the process group) once two runs are saved: (worker pids, stderr, seconds to stop)."""
    try:
        workers = _wait_for_rows(out, 2, proc)
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        return workers, stderr, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()


def _all_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c_stops_within_seconds_keeps_finished_runs_and_says_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    proc = _start(out)
    workers, stderr, elapsed = _ctrl_c_after_two_runs(out, proc)
    assert proc.returncode == 130, stderr
    # ~0.1 s when the machine is quiet; the bound is loose so a loaded CI machine cannot flake it, and still
    # far below the minutes the remaining long runs would take if Ctrl-C waited for the queue
    assert elapsed < 15, f"took {elapsed:.1f} s to stop"
    assert "2 of 4 runs are saved" in stderr and "Run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    rows = [json.loads(line) for line in (out / RUNS_FILE).read_text().splitlines()]
    assert sorted(r["params"]["duration"] for r in rows) == ["10m", "10m"]
    assert _all_gone(workers, 5), "worker processes outlived the interrupted sweep"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_sigkill_of_the_parent_leaves_no_orphan_workers(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    proc = _start(out)
    try:
        workers = _wait_for_rows(out, 2, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert _all_gone(workers, 5), "worker processes kept computing after the parent was killed"
    finally:
        for pid in _alive(workers if "workers" in locals() else []):
            os.kill(pid, signal.SIGKILL)


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if psutil.pid_exists(p)]


def test_ctrl_c_stops_a_plan_and_says_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "plan"
    cmd = [str(BIN / "twin"), "plan", str(ROOT / "scenarios" / "capacity-planning.yaml"), "--objective"]
    cmd += ["cost_usd.nodes", "--constraint", "serving.*.slo_attainment>=0.5", "--vary", "pools.shared.count=1..6"]
    cmd += ["--vary", "pools.shared.node_groups.0.count=1..4"]
    # Six seeds per configuration: Ctrl-C comes after two of the first configuration's runs, with four left.
    cmd += ["--seeds", "0..5", "--workers", "2", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    workers, stderr, elapsed = _ctrl_c_after_two_runs(out, proc)
    assert proc.returncode == 130, stderr
    # ~0.1 s when the machine is quiet; the bound is loose so a loaded CI machine cannot flake it, and still
    # far below the minutes the remaining long runs would take if Ctrl-C waited for the queue
    assert elapsed < 15, f"took {elapsed:.1f} s to stop"
    saved = len((out / RUNS_FILE).read_text().splitlines())
    assert f"{saved} finished runs are saved" in stderr and "Run the same command again to resume" in stderr
    assert _all_gone(workers, 5)
