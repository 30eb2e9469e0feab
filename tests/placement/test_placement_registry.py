"""The strategy registry, schedule() atomicity and `twin place --preempt`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from placement_helpers import build, req, use

from twin.cli import main
from twin.cli.place_cmd import PodDecision, explain_lines
from twin.errors import TwinInputError
from twin.policy.placement import PlacementResult, PlacementStrategy, get_strategy, register_strategy, schedule
from twin.policy.placement.registry import STRATEGIES
from twin.policy.quota import QuotaAccountingError, QuotaStore
from twin.resources import AllocRequest, GPUPhase, PlacementMode
from twin.state import ClusterState, states_equal


@dataclass
class FirstGPU:
    """A toy strategy: the first GPU by uid, whatever its load."""

    name: str = "test-first-gpu"

    def place(self, state: ClusterState, req: AllocRequest, quota: QuotaStore | None = None) -> PlacementResult:
        gid = sorted(state.gpus)[0]
        return PlacementResult(ok=True, node=state.gpus[gid].node, gpu_ids=(gid,))


def test_register_and_get_custom_strategy() -> None:
    register_strategy("test-first-gpu", FirstGPU)
    try:
        strategy = get_strategy("test-first-gpu")
        assert isinstance(strategy, PlacementStrategy)
        state = build(1, 2)
        assert schedule(state, req("x", 1, 1), strategy).gpu_ids == ("n0-gpu0",)
        register_strategy("test-first-gpu", FirstGPU)  # same factory again: allowed
        with pytest.raises(ValueError, match="already registered"):
            register_strategy("test-first-gpu", lambda: FirstGPU())
    finally:
        STRATEGIES.unregister("test-first-gpu")


def test_bad_parameters_are_input_errors() -> None:
    with pytest.raises(TwinInputError, match="bad parameters"):
        get_strategy("CompactFirst", no_such_param=1)
    with pytest.raises(TwinInputError, match="aggregation"):
        get_strategy("CompactFirst", aggregation="median")


def test_tensorfusion_uses_each_pools_mode() -> None:
    state = build(2, 1, mode=PlacementMode.LOW_LOAD_FIRST)
    use(state, "n0-gpu0", 10, 10)
    assert get_strategy("tensorfusion").place(state, req("x", 1, 1)).node == "n1"  # spread
    assert get_strategy("CompactFirst").place(state, req("x", 1, 1)).node == "n0"  # pack


def test_schedule_rolls_back_when_quota_accounting_fails() -> None:
    state = build(1, 1)
    quota = QuotaStore()
    quota.add(req("x", 1, 1))  # the uid is already accounted: add() will raise after allocate()
    before = state.snapshot()
    with pytest.raises(QuotaAccountingError):
        schedule(state, req("x", 1, 1), get_strategy("CompactFirst"), quota)
    assert states_equal(state, before) and "x" not in state.allocations


def test_twin_place_preempt_evicts_lower_priority(tmp_path: Path) -> None:
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump({"nodes": [{"name": "n", "profile": "A100_SXM_80G", "gpusPerNode": 1}]}))
    pods = tmp_path / "pods.yaml"

    def pod(name: str, qos: str) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {"tensor-fusion.ai/enabled": "true"},
                "annotations": {
                    "tensor-fusion.ai/qos": qos,
                    "tensor-fusion.ai/tflops-request": "200",
                    "tensor-fusion.ai/vram-request": "40Gi",
                },
            },
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        }

    pods.write_text(yaml.safe_dump_all([pod("low", "low"), pod("crit", "critical")]))
    args = ["place", "--cluster", str(cluster), str(pods), "--json"]
    plain = json.loads(CliRunner().invoke(main, args).output)
    assert [p["scheduled"] for p in plain["pods"]] == [True, False]
    assert plain["pods"][1]["reason"].startswith("Resource")
    preempting = json.loads(CliRunner().invoke(main, [*args, "--preempt"]).output)
    assert [p["scheduled"] for p in preempting["pods"]] == [True, True]
    assert preempting["pods"][1]["evicted"] == ["low"]
    assert preempting["pods"][0]["evicted_by"] == "crit" and preempting["preempted"] == 1


def test_explain_lines_order_filters_by_chain() -> None:
    state = build(2, 2)
    use(state, "n0-gpu0", 64, 1)
    state.set_gpu_phase("n1-gpu1", GPUPhase.UNKNOWN)
    result = get_strategy("CompactFirst").place(state, req("x", 10, 1, count=2))
    lines = explain_lines(PodDecision("x", "default", "Pod/default/x", result))
    assert lines[0] == "default/x: unschedulable (SameNode: no node has at least 2 available GPUs)"
    assert lines[1:] == [
        "  rejected by Phase: n1-gpu1",
        "  rejected by Resource: n0-gpu0",
        "  rejected by SameNode: n0-gpu1, n1-gpu0",
    ]
