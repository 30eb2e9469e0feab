"""``twin run``: the output files, byte-identical for the same scenario and seed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from simtest_helpers import REPO

from twin.cli.run_cmd import run
from twin.sim.metrics import COLUMNS

EXPECTED = [
    "allocation.png",
    "cost.png",
    "events.jsonl",
    "fragmentation.png",
    "pending_queue.png",
    "pending_times.png",
    "report.html",
    "summary.json",
    "timeseries.csv",
]


def _run(out: Path, *extra: str) -> None:
    args = [str(REPO / "scenarios" / "quickstart.yaml"), "-o", str(out), "-q", "--set", "duration=2h", *extra]
    result = CliRunner().invoke(run, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_same_scenario_and_seed_give_byte_identical_files(tmp_path: Path) -> None:
    _run(tmp_path / "a")
    _run(tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == EXPECTED
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_another_seed_changes_the_run(tmp_path: Path) -> None:
    _run(tmp_path / "a", "--no-plots")
    _run(tmp_path / "b", "--no-plots", "--seed", "99")
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert a["seed"] == 7 and b["seed"] == 99
    assert (tmp_path / "a" / "events.jsonl").read_bytes() != (tmp_path / "b" / "events.jsonl").read_bytes()


def test_outputs_are_well_formed(tmp_path: Path) -> None:
    _run(tmp_path, "--no-plots")
    rows = list(csv.reader((tmp_path / "timeseries.csv").open()))
    assert tuple(rows[0]) == COLUMNS
    assert float(rows[1][0]) == 0.0 and float(rows[-1][0]) == 7200.0
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events and all({"t", "event", "subject"} <= e.keys() for e in events)
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    binds = [e for e in events if e["event"] == "bind"]
    assert binds and all(e["node"] and e["gpus"] for e in binds)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["workers"]["arrived"] == sum(1 for e in events if e["event"] == "arrive")


def test_bad_input_exits_with_code_2_and_names_the_field(tmp_path: Path) -> None:
    from twin.cli import main

    result = CliRunner().invoke(
        main, ["run", str(REPO / "scenarios" / "quickstart.yaml"), "-o", str(tmp_path), "--set", "pools.h100.count=-1"]
    )
    assert result.exit_code == 2
    assert "pools.h100.count" in result.output


def test_demo_uses_the_shipped_quickstart() -> None:
    from twin.cli.run_cmd import DEMO_SCENARIO

    assert DEMO_SCENARIO == REPO / "scenarios" / "quickstart.yaml" and DEMO_SCENARIO.is_file()


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    from twin.cli.run_cmd import demo

    result = CliRunner().invoke(demo, ["-o", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == EXPECTED


def test_runner_returns_flat_metrics_for_sweeps_and_checks() -> None:
    from twin.experiments.runner import run_summary

    scenario = REPO / "scenarios" / "node-failure.yaml"
    a = run_summary(scenario, 1, ["duration=2h"])
    assert a == run_summary(scenario, 1, ["duration=2h"])
    assert a != run_summary(scenario, 2, ["duration=2h"])
    assert {"slo_attainment", "cost_usd.nodes", "utilisation_mean", "preemptions.total"} <= a.keys()
    assert all(isinstance(v, float) for v in a.values())


@pytest.mark.slow
def test_outputs_do_not_depend_on_python_hash_randomisation(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        args = [sys.executable, "-m", "twin.cli", "run", str(REPO / "scenarios" / "multi-tenant-quota.yaml")]
        args += ["-o", str(tmp_path / seed), "-q", "--set", "duration=2h"]
        subprocess.run(args, check=True, env=env, capture_output=True)
    for name in EXPECTED:
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes(), name
