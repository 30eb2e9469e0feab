"""A closed-loop serving benchmark, as ``vllm bench serve --max-concurrency`` style tools run it.

``concurrency`` clients each send a request with fixed input and output lengths, and the next one the
moment the last finished; the first wave goes out at t = 0. Reports mean TTFT and TPOT over requests
and output tokens per second over the whole run. Runs on the serving simulation's own clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.errors import TwinInputError
from twin.sim.serving import DONE, Replica, ServingSim, _Seq
from twin.sim.serving_replay import EngineSetup, run_engine
from twin.sim.serving_traffic import Trace

MAX_BENCH_REQUESTS = 1_000_000


class ClosedLoopSim(ServingSim):
    """Request ``i + concurrency`` is sent when request ``i`` finishes (so ``concurrency`` are always out)."""

    concurrency = 1
    _next = 0

    def _arrivals(self) -> Any:
        first = min(self.concurrency, len(self.trace))
        for i in range(first):
            self._send(i)
        self._next = first
        yield self.env.timeout(0)

    def _send(self, i: int) -> None:
        t = self.trace
        self.arrival[i] = self.env.now
        self._route(_Seq(i, int(t.input_tokens[i]), max(int(t.output_tokens[i]), 1)))

    def finish_ok(self, seq: _Seq, now: float, variant: str, replica: Replica | None = None) -> None:
        super().finish_ok(seq, now, variant, replica)
        if self._next < len(self.trace):
            self._send(self._next)
            self._next += 1


@dataclass(frozen=True)
class BenchResult:
    ttft_ms: float
    tpot_ms: float
    output_tokens_per_s: float

    def as_dict(self) -> dict[str, float]:
        return {"ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms, "output_tokens_per_s": self.output_tokens_per_s}


def closed_loop_bench(
    setup: EngineSetup,
    input_tokens: int,
    output_tokens: int,
    concurrency: int,
    requests: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BenchResult:
    """``requests`` (default ``10 * concurrency``) requests of fixed lengths from ``concurrency`` clients."""
    n = 10 * concurrency if requests is None else requests
    if not 1 <= n <= MAX_BENCH_REQUESTS:
        raise TwinInputError(f"must be in [1, {MAX_BENCH_REQUESTS}]", field="--requests", value=n)
    if not 1 <= concurrency <= 100_000:
        raise TwinInputError("must be in [1, 100000]", field="--concurrency", value=concurrency)
    trace = Trace(np.zeros(n), np.full(n, input_tokens, dtype=np.int64), np.full(n, output_tokens, dtype=np.int64))

    class _Bench(ClosedLoopSim):
        pass

    _Bench.concurrency = concurrency
    sim, _ = run_engine(setup, trace, sim_cls=_Bench, progress=progress)
    done = sim.status == DONE
    if not done.all():
        raise TwinInputError(
            "requests did not finish (too long for the KV cache?)", field="--input-tokens", value=input_tokens
        )
    end = float(np.max(sim.arrival + sim.e2e))
    itl = sim.itl[np.isfinite(sim.itl)]
    return BenchResult(
        ttft_ms=float(np.mean(sim.ttft) * 1000.0),
        tpot_ms=float(np.mean(itl) * 1000.0) if itl.size else float("nan"),
        output_tokens_per_s=float(output_tokens * n / end) if end > 0 else float("nan"),
    )
