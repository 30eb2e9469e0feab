"""Sweeps on a real Dask cluster: ``dask scheduler`` and two ``dask worker`` processes on loopback.

The workers run in their own empty folders with their own input caches, so a run can only succeed
if it ships its scenario and the files the scenario references (the bug this guards against: workers
received a path and failed with "cannot read the scenario"). One worker is SIGKILLed mid-sweep; the
sweep must still finish with every run exactly once, equal byte for byte to the local executor's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from twin.experiments.check import run_check
from twin.experiments.paper import curves_csv, curves_from_rows, paper_runs
from twin.experiments.run_inputs import scenario_inputs
from twin.experiments.sweep import RUNS_FILE, aggregate, make_executor, parse_grid, plan_runs, run_sweep, write_table

distributed = pytest.importorskip("distributed")

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """\
name: shipped
duration: 6h
pools:
  h100: {hardware: h100, count: 2, gpus_per_node: 8}
workloads:
  - name: replayed
    arrival: {process: replay, file: ../data/arrivals.csv}
    qos: {medium: 1.0}
    shapes:
      - {request: {tflops: 200, vram_gib: 20}, limit: {tflops: 400, vram_gib: 24}}
    usage:
      compute: {kind: trace, file: ../data/usage.csv}
  - name: poisson
    arrival: {process: poisson, rate_per_hour: 30}
    lifetime: {kind: exponential, mean: 1h}
    shapes:
      - {request: {tflops: 100, vram_gib: 10}}
"""


def write_scenario(root: Path) -> Path:
    """A scenario in ``root/scenarios`` naming two CSVs in ``root/data`` by relative paths."""
    (root / "scenarios").mkdir(parents=True)
    (root / "data").mkdir()
    arrivals = ["time,lifetime"] + [f"{60 * i},{1800 + 37 * i}" for i in range(120)]
    (root / "data" / "arrivals.csv").write_text("\n".join(arrivals) + "\n")
    usage = ["time,value"] + [f"{300 * i},{0.2 + 0.05 * (i % 7)}" for i in range(40)]
    (root / "data" / "usage.csv").write_text("\n".join(usage) + "\n")
    path = root / "scenarios" / "shipped.yaml"
    path.write_text(SCENARIO)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]


def _start_worker(address: str, folder: Path) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TWIN_INPUT_CACHE": str(folder / "cache")}
    cmd = [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
    cmd += ["--local-directory", str(folder / "dask"), "--host", "127.0.0.1"]
    return subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        cwd=base,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers = [_start_worker(address, base / f"worker{i}") for i in range(2)]
    try:
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield Cluster(address, scheduler, workers)
    finally:
        for proc in [*workers, scheduler]:
            proc.terminate()
        for proc in [*workers, scheduler]:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _local_reference(scenario: Path, grid: list[str], seeds: int, out: Path) -> bytes:
    runs = plan_runs(str(scenario), parse_grid(grid), list(range(seeds)))
    with make_executor("local", 2) as pool:
        result = run_sweep(runs, out, executor=pool)
    assert not result.failed
    write_table(aggregate(result.rows), out)
    return (out / "results.csv").read_bytes()


def test_cli_sweep_from_another_folder_ships_the_scenario_and_its_files(cluster: Cluster, tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path / "project")
    grid = ["pools.h100.count=1,2"]
    expected = _local_reference(scenario, grid, 2, tmp_path / "local")
    cmd = [str(BIN / "twin"), "sweep", "scenarios/shipped.yaml", "--grid", grid[0], "--seeds", "2"]
    cmd += ["--executor", cluster.address.replace("tcp://", "dask://"), "-o", str(tmp_path / "dask")]
    done = subprocess.run(cmd, cwd=tmp_path / "project", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "4 runs computed, 0 reused, 0 failed" in done.stderr
    assert "sweep: 4/4 runs" in done.stderr  # progress on the client (plain lines off a terminal)
    assert (tmp_path / "dask" / "results.csv").read_bytes() == expected
    # Each worker holds the inputs under their content hashes, never under the client's paths.
    inputs = scenario_inputs(scenario)
    cached = {p.name for w in cluster.workers for p in (Path(_worker_dir(w)) / "cache").glob("*")}
    assert {f"{f.sha256}{f.suffix}" for f in inputs.files} <= cached


def test_paper_runs_and_check_runs_on_dask_equal_the_serial_ones(cluster: Cluster, tmp_path: Path) -> None:
    """Named inputs (the paper's node list) and the gate's seeds travel the same way as scenario files."""
    data = tmp_path / "openb"
    data.mkdir()
    (data / "openb_node_list_gpu_node.csv").write_text(
        "sn,cpu_milli,memory_mib,gpu,model\n" + "".join(f"n{i},32000,65536,{2 + 2 * (i % 2)},T4\n" for i in range(6))
    )
    pods = [
        f"p{i:03d},{1000 + 500 * (i % 3)},2048,{1 if i % 4 else 0},{(0, 250, 500, 1000)[i % 4]}\n" for i in range(30)
    ]
    (data / "openb_pod_list_tiny.csv").write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\n" + "".join(pods))
    runs = paper_runs(data, data / "openb_node_list_gpu_node.csv", ["tiny"], ["fgd", "random"], [42, 43])
    with make_executor("serial", 1) as pool:
        serial = run_sweep(runs, tmp_path / "serial", executor=pool)
    with make_executor(cluster.address, 1) as pool:
        shipped = run_sweep(runs, tmp_path / "dask", executor=pool)
    assert not shipped.failed and shipped.computed == len(runs)
    assert curves_csv(curves_from_rows(shipped.rows)) == curves_csv(curves_from_rows(serial.rows))

    scenario = write_scenario(tmp_path / "project")
    written = []
    for name, executor in (("serial", "serial"), ("dask", cluster.address)):
        baseline = tmp_path / name / "gate.json"
        with make_executor(executor, 1) as pool:
            run_check([str(scenario)], str(baseline), update=True, seeds=3, pool=pool)
        written.append(baseline.read_text())
    assert written[0] == written[1]


def _worker_dir(proc: subprocess.Popen[bytes]) -> str:
    args = proc.args
    assert isinstance(args, list)
    return str(Path(str(args[args.index("--local-directory") + 1])).parent)


def test_a_worker_killed_mid_sweep_loses_no_run_and_duplicates_none(cluster: Cluster, tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path / "project")
    grid = ["pools.h100.count=1,2,3"]
    seeds = 4
    expected = _local_reference(scenario, grid, seeds, tmp_path / "local")
    runs = plan_runs(str(scenario), parse_grid(grid), list(range(seeds)))
    victim = cluster.workers[0]
    progress: list[bool] = []

    def on_done(_spec: object, ok: bool) -> None:
        progress.append(ok)
        if len(progress) == 1:  # mid-sweep: one run back, the rest queued or running
            os.kill(victim.pid, signal.SIGKILL)

    out = tmp_path / "dask"
    started = time.monotonic()
    with make_executor(cluster.address, 1) as pool:
        result = run_sweep(runs, out, executor=pool, on_done=on_done)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert not result.failed, result.failed
    assert len(progress) == len(runs) and all(progress)
    lines = (out / RUNS_FILE).read_text().splitlines()
    ids = [json.loads(line)["run_id"] for line in lines]
    assert sorted(ids) == sorted(r.run_id for r in runs)  # every run exactly once
    write_table(aggregate(result.rows), out)
    assert (out / "results.csv").read_bytes() == expected
    assert time.monotonic() - started < 240
    # Resuming reuses every result and computes nothing.
    with make_executor(cluster.address, 1) as pool:
        again = run_sweep(runs, out, executor=pool)
    assert (again.reused, again.computed, again.stale) == (len(runs), 0, 0)
