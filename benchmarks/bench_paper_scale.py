"""Scale of ``twin trace paper``: a subset of the paper's 1,020 runs through each executor, extrapolated.

The whole matrix is 17 pod lists x 6 policies x 10 seeds. Running it repeatedly on a shared 2-core
machine is not an option, so this measures a representative subset (default: seed 42 x all 17
traces x all 6 policies = 102 runs) four ways, each into a fresh results folder:

* ``serial``: in-process, no executor: the mean in-process run time (the baseline);
* ``local`` with 1 and 2 worker processes;
* ``dask``: a real ``dask scheduler`` and 2 ``dask worker`` processes (1 thread each) on loopback,
  started here; runs ship their pod list and node list by content hash.

Per-run executor overhead = wall x workers / runs - mean in-process run time. It is also measured
directly with a runner that does nothing (``--trivial-runs``). The 1,020-run wall times are
**extrapolated** linearly from the subset (wall x 1020 / runs), not measured. Every executor's rows
are compared with the serial ones: they must be identical.

    .venv/bin/python benchmarks/bench_paper_scale.py [--seeds 42] [--traces all] [--trivial-runs 200]

Needs the shared openb trace and the ``distributed`` package (test extras). No assertions beyond
identical results: it prints a table. On 2 shared cores the numbers move with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from twin.experiments.fgd_protocol import POLICIES
from twin.experiments.paper import PAPER_TRACES, paper_runs
from twin.experiments.sweep import RunSpec, make_executor, resolve_runner, run_sweep
from twin.spec.openb import default_trace_dir

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
TRIVIAL_RUNNER = "bench_paper_scale:trivial_run"
FULL = 1020


def trivial_run(main: str, seed: int, overrides: Sequence[str]) -> dict[str, float]:
    """A run that does no work: what is left of its wall time is the executor's cost."""
    return {"seed_echo": float(seed)}


@contextmanager
def dask_cluster(workers: int) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": folder, "env": env}
    procs = [
        subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet
        )
    ]
    address = f"tcp://127.0.0.1:{port}"
    for i in range(workers):
        cmd = [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
        cmd += ["--host", "127.0.0.1", "--local-directory", str(folder / f"w{i}")]
        procs.append(subprocess.Popen(cmd, **quiet))
    try:
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=120)
            # Fresh worker processes import numpy and the twin on their first run; forked local
            # workers inherit them warm. Import up front so the timed sweeps compare like with like.
            start = time.perf_counter()
            client.run(_warm_imports)
            print(f"dask workers: imports took {time.perf_counter() - start:.1f} s (once per worker)", flush=True)
        yield address
    finally:
        for proc in reversed(procs):  # workers first: they would wait for a scheduler that is gone
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _warm_imports() -> None:
    pass


def timed(executor: str, workers: int, runs: Sequence[RunSpec]) -> tuple[float, list[dict[str, object]]]:
    with tempfile.TemporaryDirectory(prefix="bench-paper-") as out, make_executor(executor, workers) as pool:
        start = time.perf_counter()
        result = run_sweep(runs, out, executor=pool)
        wall = time.perf_counter() - start
    if result.failed or result.computed != len(runs):
        raise SystemExit(f"{executor}: sweep did not complete: {result.failed[:1]}")
    return wall, result.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42", help="comma-separated seeds of the subset")
    parser.add_argument("--traces", default="all", help="all (17) or comma-separated pod-list names")
    parser.add_argument("--trivial-runs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="only local and Dask at 2 workers, alternating")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --quick")
    args = parser.parse_args()
    folder = default_trace_dir()
    nodes = folder / "openb_node_list_gpu_node.csv"
    if not nodes.is_file():
        raise SystemExit(f"the shared openb trace is not at {folder}")
    traces = list(PAPER_TRACES) if args.traces == "all" else args.traces.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = paper_runs(folder, nodes, traces, POLICIES, seeds)
    n = len(runs)
    print(f"subset: {len(traces)} traces x {len(POLICIES)} policies x {len(seeds)} seed(s) = {n} runs", flush=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)

    resolve_runner(runs[0].runner)(runs[0].scenario, runs[0].seed, runs[0].overrides)  # warm imports
    table: list[tuple[str, int, float, bool]] = []
    if args.quick:
        # Alternate the two executors and keep each one's fastest round: other users' load on a
        # shared machine only ever slows a round down.
        local_walls: list[float] = []
        dask_walls: list[float] = []
        with dask_cluster(2) as address:
            for _ in range(args.rounds):
                wall, reference = timed("local", 2, runs)
                local_walls.append(wall)
                wall, rows = timed(address, 2, runs)
                dask_walls.append(wall)
                print(f"round: local {local_walls[-1]:.1f} s, dask {wall:.1f} s, identical {rows == reference}")
        best_local, best_dask = min(local_walls), min(dask_walls)
        print(f"fastest of {args.rounds}: local 2 workers {best_local:.1f} s, dask 2 workers {best_dask:.1f} s")
        print(f"dask vs local at 2 workers: {100.0 * (best_dask / best_local - 1):+.1f} % wall time")
        per_local, per_dask = best_local * 2 / n * 1000, best_dask * 2 / n * 1000
        print(f"per run (wall x 2 / runs): local {per_local:.0f} ms, dask {per_dask:.0f} ms")
        return
    serial, reference = timed("serial", 1, runs)
    mean_run = serial / n
    print(f"serial done: {serial:.1f} s", flush=True)
    table.append(("serial (in-process)", 1, serial, True))
    for workers in (1, 2):
        wall, rows = timed("local", workers, runs)
        table.append((f"local, {workers} worker{'s' if workers > 1 else ''}", workers, wall, rows == reference))
        print(f"local {workers} done: {wall:.1f} s", flush=True)
    # The same inputs as the real runs (so the same shipping), distinct seeds (distinct run keys).
    trivial = [replace(runs[i % n], runner=TRIVIAL_RUNNER, seed=i) for i in range(args.trivial_runs)]
    with dask_cluster(2) as address:
        wall, rows = timed(address, 2, runs)
        table.append(("dask, 2 workers", 2, wall, rows == reference))
        print(f"dask 2 done: {wall:.1f} s", flush=True)
        dask_trivial, _ = timed(address, 2, trivial)

    print(f"\n{n} runs; 1,020-run figures are EXTRAPOLATED (wall x 1020 / {n}), not measured")
    header = f"{'executor':22s} {'wall s':>8s} {'speed-up':>9s} {'overhead/run ms':>16s} {'1,020 runs (extrap.)':>21s}"
    print(header + "  identical")
    one = table[1][2]
    for name, workers, wall, same in table:
        overhead = (wall * workers / n - mean_run) * 1000.0
        full = wall * FULL / n
        print(
            f"{name:22s} {wall:8.1f} {one / wall:8.2f}x {overhead:16.1f} "
            f"{full / 60:14.1f} min ({full:5.0f} s)  {'yes' if same else 'NO'}"
        )
    print(f"mean in-process run time: {mean_run * 1000.0:.0f} ms; load average now {os.getloadavg()[0]:.2f}")
    dask_row = table[3][2]
    local2 = table[2][2]
    print(f"dask vs local at 2 workers: {100.0 * (dask_row / local2 - 1):+.1f} % wall time")

    print(f"\n{args.trivial_runs} trivial runs (no fill-up): executor cost per run (wall x workers / runs)")
    for executor, workers in (("serial", 1), ("local", 1), ("local", 2)):
        wall, _ = timed(executor, workers, trivial)
        print(f"{executor}, {workers} worker(s): {wall * workers / args.trivial_runs * 1000.0:.2f} ms per run")
    print(f"dask, 2 workers: {dask_trivial * 2 / args.trivial_runs * 1000.0:.2f} ms per run")


if __name__ == "__main__":
    main()
