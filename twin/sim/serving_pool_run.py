"""Models on one pool of their own, through the one engine (a serving scenario's ``cluster``).

Kept apart from :mod:`twin.sim.serving_pool` (the ``serving`` workload kind the engine itself
registers) because it builds a :class:`twin.sim.engine.Simulation`: the kind must not import the
engine back (tests/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from twin.errors import TwinInputError
from twin.resources import AllocRequest
from twin.scenario import LoadedScenario, PoolConfig, Scenario
from twin.sim.engine import Simulation
from twin.sim.serving import ModelRun, ServingResult, ServingSim
from twin.sim.serving_pool import PoolReplicaPods


def run_on_pool(
    models: Sequence[ModelRun],
    templates: Mapping[str, Mapping[str, AllocRequest]],
    pool_name: str,
    pool: PoolConfig,
    duration_s: float,
    *,
    per_slice: bool = True,
    progress: Callable[[float], None] | None = None,
    source: str = "",
) -> dict[str, ServingResult]:
    """Models on one pool of their own, through the one engine (a serving scenario's ``cluster``, and
    the Python API): each ``modelID|namespace`` keeps its replicas, metrics, autoscaler and HPAs and
    meets the others only in the pool, where a replica that does not fit pends. ``templates`` gives
    each model's request per variant."""
    keys = [f"{m.config.model_id}|{m.config.namespace}" for m in models]
    if len(set(keys)) != len(keys):
        raise TwinInputError("each model (modelID|namespace) may appear once", field="models", value=keys)
    scenario = Scenario(name="serving", duration=duration_s, pools={pool_name: pool}, controllers=[])
    sim = Simulation(LoadedScenario(scenario, Path(source).parent, source), record_events=False)
    sims = []
    for key, m in zip(keys, models, strict=True):
        pods = PoolReplicaPods(sim, templates[key], "serving", per_slice=per_slice)
        serving = ServingSim(m.config, m.trace, m.autoscaler, duration_s=duration_s, env=sim.env, pods=pods)
        pods.serving = serving
        pods.start(m.config.scrape_interval_s)
        serving.start()
        sims.append(serving)
    sim.run(progress=progress, chunks=50)
    return {key: serving.finish() for key, serving in zip(keys, sims, strict=True)}
