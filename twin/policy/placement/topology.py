"""GPU topology inside a node (semantics 2.4, ``GPUNetworkTopologyAware``).

A node's GPUs form a networkx graph: one vertex per GPU (attribute ``numa``) and an edge per
NVLink. The tier of a GPU pair is 0 (NVLink), 1 (same NUMA node), 2 (different NUMA nodes) or 3
(NUMA unknown for either). A GPU set's tier is its worst pair. For multi-GPU requests the strategy
takes the best-tier set among at most ``max_combinations`` combinations (enumerated over the
candidates in placement-score order); equal tiers go to the higher summed GPU score, then to the
earlier combination. In ``hard`` mode nodes whose best tier exceeds ``max_allowed_tier`` are filtered.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import networkx as nx

from twin.state import ClusterState

TIER_NVLINK = 0
TIER_SAME_NUMA = 1
TIER_CROSS_NUMA = 2
TIER_UNKNOWN = 3


@dataclass(frozen=True, slots=True)
class TopologyConfig:
    mode: Literal["soft", "hard"] = "soft"
    max_allowed_tier: int = TIER_SAME_NUMA
    max_combinations: int = 256


def node_graph(state: ClusterState, node: str) -> nx.Graph:
    graph = nx.Graph()
    owner = state.nodes[node]
    for gid in owner.gpus:
        graph.add_node(gid, numa=state.gpus[gid].numa)
    graph.add_edges_from(owner.nvlinks)
    return graph


def pair_tier(graph: nx.Graph, a: str, b: str) -> int:
    if graph.has_edge(a, b):
        return TIER_NVLINK
    numa_a, numa_b = graph.nodes[a]["numa"], graph.nodes[b]["numa"]
    if numa_a < 0 or numa_b < 0:
        return TIER_UNKNOWN
    return TIER_SAME_NUMA if numa_a == numa_b else TIER_CROSS_NUMA


def set_tier(graph: nx.Graph, gpus: Sequence[str]) -> int:
    return max((pair_tier(graph, a, b) for a, b in itertools.combinations(gpus, 2)), default=TIER_NVLINK)


def best_combination(
    graph: nx.Graph, ordered: Sequence[str], count: int, scores: Mapping[str, int], max_combinations: int = 256
) -> tuple[tuple[str, ...], int] | None:
    """The best-tier ``count``-subset of ``ordered`` (see module doc), or None if too few GPUs."""
    if count > len(ordered) or count < 1:
        return None
    best: tuple[tuple[int, int, int], tuple[str, ...]] | None = None
    for n, combo in enumerate(itertools.combinations(ordered, count)):
        if n >= max_combinations:
            break
        key = (set_tier(graph, combo), -sum(scores[g] for g in combo), n)
        if best is None or key < best[0]:
            best = (key, combo)
    assert best is not None
    return best[1], best[0][0]
