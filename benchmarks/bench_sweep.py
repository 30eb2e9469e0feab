"""Sweep throughput: runs per minute for 1 and 2 local worker processes, and the executor's overhead.

A sweep of ``--runs`` runs (default 200) of the quickstart scenario shortened to ``--duration``
(default 2h), one combination x N seeds, goes through ``twin.experiments.sweep.run_sweep`` three
ways, each into a fresh results folder (a reused folder would resume instead of running):

* ``serial``: in-process, no executor: the mean in-process run time (the baseline);
* ``local`` with 1 and 2 worker processes: runs per minute and the speed-up over 1 worker.

Overhead per run = wall x workers / runs - mean in-process run time: what each run costs beyond the
simulation itself (process hand-off, pickling, worker start-up and imports, the results file).
The serial row includes the results file (one fsync'd JSON line per run), so its overhead is 0 by
definition. The overhead is measured a second way with a trivial runner that returns at once:
wall x workers / runs.

    .venv/bin/python benchmarks/bench_sweep.py [--runs 200] [--duration 2h] [--trivial-runs 2000]

No assertions: it prints a table. On 2 shared cores the 2-worker speed-up depends on the load.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from twin.experiments.sweep import make_executor, plan_runs, resolve_runner, run_sweep

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = str(ROOT / "scenarios" / "quickstart.yaml")
RUNNER = "twin.experiments.runner:run_summary"
TRIVIAL_RUNNER = "bench_sweep:trivial_run"


def trivial_run(scenario: str, seed: int, overrides: Sequence[str]) -> dict[str, float]:
    """A run that does no work: what is left of its wall time is the executor's cost."""
    return {"seed_echo": float(seed)}


def timed_sweep(executor: str, workers: int, runs: int, duration: str, runner: str) -> float:
    specs = plan_runs(SCENARIO, {"duration": [duration]}, list(range(runs)), runner=runner)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as out:
        start = time.perf_counter()
        with make_executor(executor, workers) as pool:
            result = run_sweep(specs, out, executor=pool)
        wall = time.perf_counter() - start
    if result.failed or result.computed != runs:
        raise SystemExit(f"sweep did not complete: {result.failed[:1]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--duration", default="2h", help="simulated time per run (a scenario override)")
    parser.add_argument("--trivial-runs", type=int, default=2000)
    args = parser.parse_args()

    # Warm up in this process first: imports and model caches would otherwise land on the first run
    # of the serial baseline (forked workers inherit the warm state).
    resolve_runner(RUNNER)(SCENARIO, 0, [f"duration={args.duration}"])
    serial = timed_sweep("serial", 1, args.runs, args.duration, RUNNER)
    mean_run = serial / args.runs
    rows: list[tuple[str, int, float]] = [("serial (in-process)", 1, serial)]
    for workers in (1, 2):
        wall = timed_sweep("local", workers, args.runs, args.duration, RUNNER)
        rows.append((f"local, {workers} worker{'s' if workers > 1 else ''}", workers, wall))

    print(f"{args.runs} runs of quickstart.yaml with duration={args.duration}")
    print(f"{'executor':22s} {'wall s':>8s} {'runs/min':>9s} {'speed-up':>9s} {'overhead/run ms':>16s}")
    one_worker_wall = rows[1][2]
    for name, workers, wall in rows:
        overhead = (wall * workers / args.runs - mean_run) * 1000.0
        print(f"{name:22s} {wall:8.2f} {60.0 * args.runs / wall:9.1f} {one_worker_wall / wall:9.2f}x {overhead:16.2f}")
    print(f"mean in-process run time: {mean_run * 1000.0:.1f} ms")

    print(f"\n{args.trivial_runs} trivial runs (no simulation): executor cost per run")
    for workers in (1, 2):
        wall = timed_sweep("local", workers, args.trivial_runs, args.duration, TRIVIAL_RUNNER)
        print(f"local, {workers} worker(s): {wall * workers / args.trivial_runs * 1000.0:.2f} ms per run")
    wall = timed_sweep("serial", 1, args.trivial_runs, args.duration, TRIVIAL_RUNNER)
    print(f"serial: {wall / args.trivial_runs * 1000.0:.2f} ms per run (results file and bookkeeping only)")


if __name__ == "__main__":
    main()
