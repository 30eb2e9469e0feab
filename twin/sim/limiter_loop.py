"""The ``limiter`` controller in ``mode: loop``: tick TensorFusion's ERL loop every 500 ms.

By default the engine uses the soft limiter's steady state (twin.policy.isolation.soft_steady_shares)
and never ticks. With ``controllers: [{name: limiter, params: {mode: loop}}]`` this process runs the
real per-worker control loop, but only where it changes anything: on soft GPUs whose residents
would be throttled (some worker's demand above its UpLimit, or more demand than the lowest UpLimit).
Elsewhere the fluid share equals the demand and no tick is spent.
"""

from __future__ import annotations

from typing import Any

from twin.policy.isolation import SoftLimiterState, initial_limiter_state, soft_loop_tick
from twin.resources import IsolationMode
from twin.scenario import ControllerConfig
from twin.sim.host import SimHost
from twin.sim.workers import SimWorker


def needs_loop(residents: list[SimWorker]) -> bool:
    """True when the soft limiter would throttle someone on this GPU."""
    if not residents or residents[0].req.isolation is not IsolationMode.SOFT:
        return False
    lowest = min(w.up_limit for w in residents)
    return sum(w.demand for w in residents) > lowest or any(w.demand > w.up_limit for w in residents)


class LimiterLoop:
    def __init__(self, sim: SimHost, period: float) -> None:
        self.sim = sim
        self.period = period
        self.states: dict[tuple[str, str], SoftLimiterState] = {}  # (gpu, worker uid) -> loop state
        self.util: dict[str, float] = {}
        self.ticks = 0

    def install(self) -> None:
        self.sim.env.process(self._loop())

    def _loop(self) -> Any:
        sim = self.sim
        while True:
            yield sim.env.timeout(self.period)
            sim.integrate()
            changed: list[SimWorker] = []
            live: set[tuple[str, str]] = set()
            for gpu, residents in sim.load.residents.items():
                if not needs_loop(residents):
                    continue
                self.ticks += 1
                keys = [(gpu, w.uid) for w in residents]
                live.update(keys)
                states = [self.states.get(k) or initial_limiter_state(sim.erl) for k in keys]
                states, shares = soft_loop_tick(
                    states,
                    [w.demand for w in residents],
                    [w.up_limit for w in residents],
                    self.util.get(gpu, 0.0),
                    sim.erl,
                )
                self.util[gpu] = sum(shares)
                for k, st in zip(keys, states, strict=True):
                    self.states[k] = st
                changed.extend(sim.load.set_shares(gpu, shares))
            for k in [k for k in self.states if k not in live]:
                del self.states[k]
            sim.refresh(changed)


def install_limiter_loop(*, sim: SimHost, config: ControllerConfig) -> LimiterLoop:
    """The ``limiter`` controller's installer (registered in :mod:`twin.sim.controllers`)."""
    loop = LimiterLoop(sim, config.period)
    loop.install()
    return loop
