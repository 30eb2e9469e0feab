"""twin.experiments.runner: the flat metrics every sweep, plan and gate reads."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from twin.experiments.runner import PENDING_SLO_S, flatten, pending_slo_metrics, run_summary
from twin.resources import QoS
from twin.scenario import load_scenario
from twin.sim.engine import Simulation
from twin.sim.serving_scenario import simulate_serving_scenario
from twin.sim.workers import Outcome

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "scenarios" / "quickstart.yaml")
SERVING = str(ROOT / "scenarios" / "llm-serving.yaml")

_leaf = st.one_of(
    st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=3)
)
_tree = st.recursive(
    _leaf,
    lambda inner: (
        st.dictionaries(st.text("abc_", min_size=1, max_size=3), inner, max_size=4) | st.lists(inner, max_size=2)
    ),
    max_leaves=20,
)


def _numbers(value: Any, prefix: str) -> dict[str, float]:
    """An independent flattening: recursion by hand over the same rules."""
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for k, v in value.items():
            out.update(_numbers(v, f"{prefix}{k}."))
        return out
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return {prefix[:-1]: float(value)} if ok else {}


@given(st.dictionaries(st.text("xyz", min_size=1, max_size=3), _tree, max_size=5))
def test_flatten_keeps_exactly_the_finite_numbers_under_dotted_names(data: dict[str, Any]) -> None:
    flat = dict(flatten(data))
    assert flat == _numbers(data, "")
    assert all(math.isfinite(v) for v in flat.values())


@dataclass
class _Worker:
    qos: QoS
    arrival: float
    first_start: float | None
    outcome: Outcome | None = None


def test_pending_slo_counts_met_missed_and_undecided_workers() -> None:
    high, low = PENDING_SLO_S[QoS.HIGH], PENDING_SLO_S[QoS.LOW]
    workers = [
        _Worker(QoS.HIGH, 0.0, high),  # exactly on target: met
        _Worker(QoS.HIGH, 0.0, high + 1),  # late: missed
        _Worker(QoS.HIGH, 100.0, None, Outcome.REJECTED),  # rejected: missed
        _Worker(QoS.LOW, 0.0, None),  # waited the whole run (longer than its target): missed
        _Worker(QoS.LOW, 10_000.0 - low / 2, None),  # still inside its target at the end: undecided
        _Worker(QoS.LOW, 0.0, 5.0),  # met
    ]
    metrics = pending_slo_metrics(workers, end=10_000.0)
    assert metrics["slo_attainment"] == 2 / 5
    assert metrics["slo_attainment.high"] == 1 / 3
    assert metrics["slo_attainment.low"] == 1 / 2
    assert "slo_attainment.medium" not in metrics  # no medium worker decided: no number, not a fake 1.0


def test_pool_run_is_the_engine_summary_flattened_with_overrides_and_seed() -> None:
    overrides = ["duration=3h", "pools.h100.count=2"]
    metrics = run_summary(QUICKSTART, 4, overrides)
    sim = Simulation(load_scenario(QUICKSTART, overrides), seed=4, record_events=False)
    sim.run()
    expected = dict(flatten(sim.metrics.summary))
    assert {k: v for k, v in metrics.items() if not k.startswith("slo_attainment")} == {
        k: v for k, v in expected.items() if k != "seed"
    }
    assert metrics["cluster.pools.h100.nodes"] == 2.0
    assert metrics["duration_s"] == 3 * 3600.0
    assert 0.0 <= metrics["slo_attainment"] <= 1.0
    assert run_summary(QUICKSTART, 4, overrides) == metrics  # deterministic
    assert run_summary(QUICKSTART, 5, overrides) != metrics  # the seed reaches the engine


def test_serving_run_prefixes_by_autoscaler_or_stays_bare_with_one(tmp_path: Path) -> None:
    several = run_summary(SERVING, 0, ["duration=4m"])
    report, _ = simulate_serving_scenario(SERVING, 0, None, ["duration=4m"])
    for label, summary in report["autoscalers"].items():
        assert several[f"{label}.slo_attainment"] == summary["slo_attainment"]
        assert several[f"{label}.ttft_ms.p99"] == summary["ttft_ms"]["p99"]
        assert several[f"{label}.cost"] == summary["cost"]
    assert several["requests"] == report["requests"]
    single = run_summary(SERVING, 0, ["duration=4m", 'autoscalers=[{"name": "static", "params": {"replicas": 3}}]'])
    assert single["slo_attainment"] == several["static.slo_attainment"]
    assert single["ttft_ms.p99"] == several["static.ttft_ms.p99"]
    assert not any(k.startswith("static.") for k in single)
    json.dumps(single)  # plain floats: what runs.jsonl stores
