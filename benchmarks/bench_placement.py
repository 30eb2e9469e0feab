"""Placement speed: TensorFusion strategies on a 1,000-GPU pool versus a naive pure-Python baseline.

The pool has 125 nodes x 8 GPUs (A100 80GB: 312 TFLOPs, 80 GiB). Pods (seeded sizes: 5-60 TFLOPs,
2-40 GiB, 1 GPU; every tenth asks for 2 GPUs) are placed in order until the first one that does
not fit. The baseline (slow, so run on the first ``--naive-pods`` pods) makes the same decisions
with a plain loop over every GPU and dict lookups (same filters, scores and tie-breaks); the
script checks that both place those pods on the same GPUs, then prints decisions/second and
microseconds per pod over the whole fill, and the speed-up on the pods both placed.

Then it fills the pool with low-priority pods and times ``plan_preemption`` for high-priority
pods against ``plan_preemption_exhaustive`` (the same rule, full placement for every check),
checking that both choose the same victims and node.

    .venv/bin/python benchmarks/bench_placement.py [--nodes 125] [--gpus 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from twin.cluster_desc import ClusterDescription, GPUSpec, NodeSpec, build_state
from twin.hardware import default_catalog
from twin.policy.placement import get_strategy, plan_preemption, schedule
from twin.policy.placement.scoring import gpu_score
from twin.resources import GIB, AllocRequest, PlacementMode, QoS, Resource
from twin.seeding import component_rng
from twin.state import ClusterState, PoolState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test oracles
from oracles.preemption_exhaustive import plan_preemption_exhaustive

CAP = Resource(312.0, 80 * GIB)


def build(nodes: int, gpus: int) -> ClusterState:
    catalog = default_catalog()
    a100 = catalog.get("A100_SXM_80G")
    listed = tuple(GPUSpec(i, a100, capacity=CAP, numa=i // 4, partitions=False) for i in range(gpus))
    rows = [NodeSpec(f"node-{n:04d}", "p", "", 0, gpu_list=listed) for n in range(nodes)]
    return build_state(ClusterDescription([PoolState("p")], rows), catalog)


def requests(count: int, seed: int) -> list[AllocRequest]:
    rng = component_rng(seed, "bench-placement")
    out = []
    for k in range(count):
        tflops = float(round(rng.uniform(5, 60), 1))
        vram = int(rng.integers(2, 41)) * GIB
        out.append(
            AllocRequest(uid=f"pod-{k}", pool="p", gpu_count=2 if k % 10 == 9 else 1, request=Resource(tflops, vram))
        )
    return out


def naive_place(state: ClusterState, req: AllocRequest, mode: PlacementMode) -> tuple[str, list[str]] | None:
    """The same decision as the vectorised strategy, one GPU at a time in plain Python."""
    pool = state.pools[req.pool]
    scores: dict[str, list[int]] = defaultdict(list)
    candidates: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for uid, gpu in state.gpus.items():
        node = state.nodes[gpu.node]
        if node.pool != req.pool:
            continue
        args = (gpu.available.tflops, gpu.capacity.tflops, gpu.available.vram, gpu.capacity.vram)
        weights = {"vram_weight": pool.vram_weight, "tflops_weight": pool.tflops_weight}
        scores[gpu.node].append(gpu_score(mode, *args, for_node=True, **weights))
        if not gpu.schedulable_by_tf or node.workers >= pool.max_worker_per_node or not node.heartbeat_ok:
            continue
        if gpu.available.tflops >= req.request.tflops and gpu.available.vram >= req.request.vram:
            candidates[gpu.node].append((-gpu_score(mode, *args, for_node=False, **weights), gpu.index, uid))
    best: tuple[int, str] | None = None
    for node_name, cands in candidates.items():
        if len(cands) < req.gpu_count:
            continue
        node_scores = scores[node_name]
        key = (-(sum(node_scores) // len(node_scores)), node_name)
        if best is None or key < best:
            best = key
    if best is None:
        return None
    chosen = sorted(candidates[best[1]])
    if req.gpu_count == 1:
        return best[1], [chosen[0][2]]
    # multi-GPU: best topology tier first (NVLink absent here: same NUMA beats cross NUMA), then score
    import itertools

    options = []
    for n, combo in enumerate(itertools.combinations(chosen, req.gpu_count)):
        if n >= 256:
            break
        numas = {state.gpus[c[2]].numa for c in combo}
        options.append((1 if len(numas) == 1 else 2, sum(c[0] for c in combo), n, [c[2] for c in combo]))
    return best[1], min(options)[3]


def run_vectorised(
    nodes: int, gpus: int, reqs: list[AllocRequest], mode: PlacementMode
) -> tuple[list[object], list[float]]:
    """Decisions and the cumulative elapsed seconds after each pod."""
    state = build(nodes, gpus)
    strategy = get_strategy(mode.value)
    decisions: list[object] = []
    elapsed: list[float] = []
    start = time.perf_counter()
    for req in reqs:
        result = schedule(state, req, strategy)
        if not result.ok:
            break
        decisions.append((result.node, list(result.gpu_ids)))
        elapsed.append(time.perf_counter() - start)
    return decisions, elapsed


def run_naive(
    nodes: int, gpus: int, reqs: list[AllocRequest], mode: PlacementMode, limit: int
) -> tuple[list[object], float]:
    state = build(nodes, gpus)
    decisions: list[object] = []
    start = time.perf_counter()
    for req in reqs[:limit]:
        choice = naive_place(state, req, mode)
        if choice is None:
            break
        state.allocate(req, choice[0], choice[1])
        decisions.append((choice[0], choice[1]))
    return decisions, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=125)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-preemption", action="store_true", help="skip the preemption timing")
    parser.add_argument("--naive-pods", type=int, default=1500, help="pods the (slow) baseline places per mode")
    args = parser.parse_args()
    total_gpus = args.nodes * args.gpus
    reqs = requests(total_gpus * 12, args.seed)
    print(f"pool: {args.nodes} nodes x {args.gpus} GPUs = {total_gpus} GPUs; seed {args.seed}")
    header = f"{'strategy':<24} {'pods':>6} {'dec/s':>9} {'us/pod':>8} | {'naive pods':>10} {'us/pod':>8} |"
    print(f"{header} {'speed-up':>8} same")
    for mode in PlacementMode:
        fast, elapsed = run_vectorised(args.nodes, args.gpus, reqs, mode)
        fast_s = elapsed[-1]
        n = min(len(fast), args.naive_pods)
        slow, slow_s = run_naive(args.nodes, args.gpus, reqs, mode, n)
        fast_us = fast_s / len(fast) * 1e6
        slow_us = slow_s / len(slow) * 1e6
        # the speed-up compares the same pods: the first len(slow) of the vectorised run
        same_pods_us = elapsed[len(slow) - 1] / len(slow) * 1e6
        same = fast[: len(slow)] == slow
        print(
            f"{mode.value:<24} {len(fast):>6} {len(fast) / fast_s:>9.0f} {fast_us:>8.1f} |"
            f" {len(slow):>10} {slow_us:>8.1f} |"
            f" {slow_us / same_pods_us:>7.1f}x {'yes' if same else 'NO'}"
        )
    if not args.no_preemption:
        bench_preemption(args.nodes, args.gpus, args.seed)


def bench_preemption(nodes: int, gpus: int, seed: int) -> None:
    """Fill the pool with low-priority pods, then plan preemption for high-priority ones."""
    state = build(nodes, gpus)
    strategy = get_strategy(PlacementMode.NODE_COMPACT_GPU_LOW_LOAD.value)
    for req in requests(nodes * gpus * 12, seed):
        if not schedule(state, replace(req, qos=QoS.LOW, gpu_count=1), strategy).ok:
            break
    print(f"\npreemption on the full pool ({len(state.allocations)} low-priority pods)")
    print(f"{'request':<24} {'fast s':>8} {'victims':>7} | {'exhaustive s':>12} | {'speed-up':>8} same")
    for count, tflops, vram in ((1, 150.0, 40), (4, 300.0, 70)):
        req = AllocRequest(
            uid=f"hi-{count}", pool="p", qos=QoS.HIGH, gpu_count=count, request=Resource(tflops, vram * GIB)
        )
        start = time.perf_counter()
        fast = plan_preemption(state, req, strategy)
        fast_s = time.perf_counter() - start
        start = time.perf_counter()
        slow = plan_preemption_exhaustive(state, req, strategy)
        slow_s = time.perf_counter() - start
        assert fast is not None and slow is not None
        same = [v.request.uid for v in fast.victims] == [v.request.uid for v in slow.victims]
        label = f"{count} GPU x {tflops:g} TFLOPs"
        print(
            f"{label:<24} {fast_s:>8.3f} {len(fast.victims):>7} | {slow_s:>12.3f} |"
            f" {slow_s / fast_s:>7.1f}x {'yes' if same and fast.node == slow.node else 'NO'}"
        )


if __name__ == "__main__":
    main()
