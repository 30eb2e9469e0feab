"""Experiment: vLLM 0.19's asynchronous scheduling in the replayed replica, against the four real runs.

    .venv/bin/python benchmarks/bench_vllm_async_scheduling.py

With ``async_scheduling`` vLLM prepares step k+1 while step k runs, so a request that arrives during
step k is scheduled into step k+2; the simulated replica (``twin/sim/serving.py``) schedules it into
step k+1. This script defers such a request's arrival at the replica to the end of the step in progress
(a decode epoch's step boundaries are taken at its first step's length), which reproduces the delay,
and prints the errors with and without it. It changes the replica's scheduling, not the step model, so
it patches ``Replica`` for the duration of the run only instead of shipping in the simulator; nothing is
fitted (the delay has no constant), and the calibration runs' errors move by under a point (their TTFT
is queueing). Measured: docs/serving.md, "Why the replays miss".
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import simpy

import twin.sim.serving as serving
from twin.experiments.vllm_validation import ROWS, available_runs, error_table

RUNS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vllm-real" / "runs"


@contextmanager
def async_admission() -> Iterator[None]:
    """Patch the replica so a request arriving mid-step reaches its waiting queue at that step's end."""
    lockstep, enqueue = serving.Replica._lockstep, serving.Replica.enqueue
    started: dict[int, tuple[float, float]] = {}  # replica id -> (step or epoch start s, step ms)

    def timed_lockstep(self: serving.Replica, own_ms: float) -> float:
        ms = lockstep(self, own_ms)
        started[id(self)] = (self.env.now, ms)
        return ms

    def deferred_enqueue(self: serving.Replica, seq: serving._Seq) -> None:
        start, ms = started.get(id(self), (0.0, 0.0))
        if not self.running or ms <= 0:
            enqueue(self, seq)  # an idle engine schedules it at once
            return
        k = math.floor((self.env.now - start) * 1000.0 / ms)
        boundary = start + (k + 1) * ms / 1000.0

        def later() -> simpy.events.ProcessGenerator:
            yield self.env.timeout(max(boundary - self.env.now, 0.0))
            enqueue(self, seq)

        self.env.process(later())

    serving.Replica._lockstep = timed_lockstep  # type: ignore[method-assign]
    serving.Replica.enqueue = deferred_enqueue  # type: ignore[method-assign]
    try:
        yield
    finally:
        serving.Replica._lockstep = lockstep  # type: ignore[method-assign]
        serving.Replica.enqueue = enqueue  # type: ignore[method-assign]


def main() -> int:
    if not available_runs(RUNS):
        print(f"no runs under {RUNS}; nothing to do")
        return 0
    plain = error_table(RUNS)
    with async_admission():
        deferred = error_table(RUNS)
    labels = [label for label, *_ in ROWS] + ["output tok/s"]
    print(f"{'run':40s} {'metric':14s} {'as shipped':>11s} {'async admission':>16s}")
    for a, b in zip(plain, deferred, strict=True):
        for label in labels:
            print(f"{a.run:40s} {label:14s} {a.errors[label] * 100:+10.1f}% {b.errors[label] * 100:+15.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
