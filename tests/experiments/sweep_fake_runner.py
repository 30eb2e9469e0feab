"""A deterministic stand-in for a scenario run, so sweep/plan/check logic is tested on known numbers.

cost = 10 * count; slo_attainment rises with count and saturates at 20 GPUs; a tiny seed-dependent
jitter gives the confidence intervals something to measure. Each call appends a line to the file
named by $SWEEP_CALLS (when set) so tests can count computed runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def fake_run(scenario: str, seed: int, overrides: Sequence[str]) -> dict[str, float]:
    params = dict(o.split("=", 1) for o in overrides)
    count = int(params.get("pools.gpu.count", "8"))
    strategy = params.get("placement", "good")
    calls = os.environ.get("SWEEP_CALLS")
    if calls:
        with open(calls, "a") as fh:
            fh.write(f"{count},{seed}\n")
    jitter = ((seed * 7919) % 11 - 5) * 1e-4
    penalty = 0.05 if strategy == "bad" else 0.0
    return {
        "cost": 10.0 * count,
        "slo_attainment": min(1.0, count / 20.0) + jitter - penalty,
        "pending_p99_s": max(0.0, 100.0 - 5.0 * count) + (30.0 if strategy == "bad" else 0.0),
    }
