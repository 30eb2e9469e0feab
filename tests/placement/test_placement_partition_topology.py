"""Partitioned placement (auto-match, slots, max partitions) and topology tiers."""

from __future__ import annotations

import networkx as nx
from placement_helpers import TEMPLATES, TPL_1G, TPL_2G, TPL_3G, build, req

from twin.policy.placement import get_strategy, schedule
from twin.policy.placement.pipeline import template_waste_score
from twin.policy.placement.topology import (
    TIER_CROSS_NUMA,
    TIER_NVLINK,
    TIER_SAME_NUMA,
    TIER_UNKNOWN,
    TopologyConfig,
    best_combination,
    node_graph,
    pair_tier,
)
from twin.resources import GIB, IsolationMode, Resource
from twin.state import ClusterState

P = IsolationMode.PARTITIONED


def test_auto_match_score_least_waste() -> None:
    request = Resource(8.0, 15 * GIB)
    # 2g.20gb on 64 TFLOPs: 18.29 TFLOPs / 20 GiB -> 0.6*(18.29-8)/8 + 0.4*(5 GiB)/(15 GiB)
    res = TPL_2G.resources(64.0)
    expected = 0.6 * (res.tflops - 8.0) / 8.0 + 0.4 * (5 * GIB) / (15 * GIB)
    assert template_waste_score(res, request) == expected
    state = build(1, 1, templates=TEMPLATES)
    result = get_strategy("NodeCompactGPULowLoad").place(state, req("x", 8, 15, isolation=P))
    assert result.partition_template == "t-2g"  # 1g.10gb is too small, 3g/7g waste more
    assert result.slot_start == 0


def test_auto_match_small_request_prefers_zero_resource_floor() -> None:
    state = build(1, 1, templates=TEMPLATES)
    result = get_strategy("CompactFirst").place(state, req("x", 0, 0, isolation=P))
    assert result.partition_template == TPL_1G.id


def test_partitions_bind_to_first_free_slot_range() -> None:
    state = build(1, 1, templates=TEMPLATES)
    strategy = get_strategy("CompactFirst")
    first = schedule(state, req("a", isolation=P, partition_template="1g.10gb"), strategy)
    second = schedule(state, req("b", isolation=P, partition_template="3g.40gb"), strategy)
    third = schedule(state, req("c", isolation=P, partition_template="1g.10gb"), strategy)
    assert (first.slot_start, second.slot_start, third.slot_start) == (0, 4, 1)
    assert state.allocations["b"].slot_start == 4
    fourth = schedule(state, req("d", isolation=P, partition_template="3g.40gb"), strategy)
    assert not fourth.ok and fourth.reason.startswith("PartitionAvailability")  # starts 0 and 4 both blocked


def test_max_partitions_filter() -> None:
    state = ClusterState()
    state.add_node("n0", "p")
    state.add_gpu(
        "n0",
        0,
        model="A100",
        capacity=Resource(64.0, 80 * GIB),
        templates=TEMPLATES,
        max_partitions=2,
        placement_slots=8,
    )
    strategy = get_strategy("CompactFirst")
    for uid in ("a", "b"):
        assert schedule(state, req(uid, isolation=P, partition_template="1g.10gb"), strategy).ok
    result = strategy.place(state, req("c", isolation=P, partition_template="1g.10gb"))
    assert not result.ok and result.rejections == {"n0-gpu0": "PartitionTemplate"}


def test_partition_template_filter_needs_templates() -> None:
    """TensorFusion ``internal/scheduler/gpuresources/filter/partition_template_filter.go``: GPUs without
    templates are filtered out; the twin's reason says the GPU model has no partition templates."""
    state = build(1, 1)
    result = get_strategy("CompactFirst").place(state, req("x", isolation=P))
    assert not result.ok and result.reason.startswith("PartitionTemplate")
    assert result.reason == "PartitionTemplate: GPU model(s) A100 have no partition templates"


def test_auto_match_converts_compute_percent_to_tflops_on_the_gpu() -> None:
    """TensorFusion ``internal/gpuallocator/partition_strategy.go`` (template auto-match): a compute-percent
    request is converted to TFLOPs on the GPU's capacity (``int(pct·cap/100)``, as in admission) before
    templates are matched, so 40 % of 64 TFLOPs (25) needs 3g (27.4), not the smallest template."""
    state = build(1, 1, templates=TEMPLATES)
    result = get_strategy("CompactFirst").place(state, req("x", 0, 5, percent=40.0, isolation=P))
    assert result.ok and result.partition_template == "t-3g"
    assert TPL_2G.resources(64.0).tflops < 25.0 <= TPL_3G.resources(64.0).tflops


def test_pair_tiers() -> None:
    graph = nx.Graph()
    graph.add_node("a", numa=0)
    graph.add_node("b", numa=0)
    graph.add_node("c", numa=1)
    graph.add_node("d", numa=-1)
    graph.add_edge("a", "c")
    assert pair_tier(graph, "a", "c") == TIER_NVLINK
    assert pair_tier(graph, "a", "b") == TIER_SAME_NUMA
    assert pair_tier(graph, "b", "c") == TIER_CROSS_NUMA
    assert pair_tier(graph, "a", "d") == TIER_UNKNOWN


def test_best_combination_prefers_lowest_tier_then_score() -> None:
    graph = nx.Graph()
    for g, numa in (("g0", 0), ("g1", 1), ("g2", 0), ("g3", 1)):
        graph.add_node(g, numa=numa)
    graph.add_edge("g1", "g3")
    scores = {"g0": 90, "g1": 80, "g2": 70, "g3": 10}
    assert best_combination(graph, ["g0", "g1", "g2", "g3"], 2, scores) == (("g1", "g3"), TIER_NVLINK)
    graph.remove_edge("g1", "g3")
    assert best_combination(graph, ["g0", "g1", "g2", "g3"], 2, scores) == (("g0", "g2"), TIER_SAME_NUMA)
    assert best_combination(graph, ["g0"], 2, scores) is None
    # the enumeration cap: with 1 combination only the first pair is looked at
    assert best_combination(graph, ["g0", "g1", "g2", "g3"], 2, scores, max_combinations=1) == (
        ("g0", "g1"),
        TIER_CROSS_NUMA,
    )


def test_multi_gpu_uses_nvlink_pair_and_hard_mode_filters_nodes() -> None:
    state = build(2, 4)  # numa = index // 2
    state.add_nvlink("n0-gpu1", "n0-gpu2")
    assert node_graph(state, "n0").has_edge("n0-gpu1", "n0-gpu2")
    soft = get_strategy("CompactFirst").place(state, req("x", 1, 1, count=2))
    assert soft.gpu_ids == ("n0-gpu1", "n0-gpu2") and soft.topology_tier == TIER_NVLINK
    three = get_strategy("CompactFirst").place(state, req("y", 1, 1, count=3))
    assert three.topology_tier == TIER_CROSS_NUMA
    hard = get_strategy("CompactFirst", topology=TopologyConfig(mode="hard", max_allowed_tier=1))
    failed = hard.place(state, req("y", 1, 1, count=3))
    assert not failed.ok and failed.reason.startswith("Topology")
    assert failed.rejections["n1-gpu0"] == "Topology"


def test_multi_gpu_on_one_node_allocates_every_gpu() -> None:
    state = build(2, 4)
    result = schedule(state, req("x", 10, 10, count=4), get_strategy("LowLoadFirst"))
    assert result.ok and len(set(result.gpu_ids)) == 4 and {state.gpus[g].node for g in result.gpu_ids} == {"n0"}
    assert all(state.gpus[g].available.tflops == 54.0 for g in result.gpu_ids)


def test_multi_gpu_partitioned_needs_enough_gpus_with_free_partitions() -> None:
    state = build(1, 2, templates=TEMPLATES, cap=Resource(64.0, 100 * GIB))
    strategy = get_strategy("CompactFirst")
    for uid in ("a", "b"):  # two 3g.40gb fill every slot of GPU 0 (starts 0 and 4, 4 slots each)
        assert schedule(state, req(uid, isolation=P, partition_template="3g.40gb"), strategy).gpu_ids == ("n0-gpu0",)
    result = strategy.place(state, req("pair", isolation=P, partition_template="1g.10gb", count=2))
    assert not result.ok and result.reason == "SameNode: no node has at least 2 available GPUs"
    assert result.rejections == {"n0-gpu0": "PartitionAvailability"}
