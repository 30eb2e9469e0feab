"""Benchmark: the fill-up engine against a straightforward reference, measured in the same run.

The reference (``twin.experiments.trace_reference``) scores every feasible node per pod without
caching; FGD there is the direct NumPy evaluation of every (node, GPU) choice. It is too slow for
the whole trace, so both run on the same prefix of seed 42's pod sequence, and the script checks
they place every pod of that prefix identically. It then times a full run of the fast engine.

Usage: python benchmarks/bench_trace.py [--prefix N] [--policy fgd] [--nodes CSV --pods CSV]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from twin.experiments.fgd_protocol import allocation_at, bin_curves, prepare_run, run_fill_up
from twin.spec.openb import default_nodes_path, default_pods_path, load_nodes, load_pods

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test oracles
from oracles.fill_up_reference import reference_fill_up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=Path, default=default_nodes_path())
    parser.add_argument("--pods", type=Path, default=default_pods_path())
    parser.add_argument("--policy", default="fgd")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--prefix", type=int, default=1000, help="pods both engines place")
    args = parser.parse_args()
    if not args.nodes.is_file() or not args.pods.is_file():
        print(f"trace not found: {args.nodes} / {args.pods}")
        return 1
    run = prepare_run(load_nodes(args.nodes), load_pods(args.pods), args.seed)

    t0 = time.perf_counter()
    ref = reference_fill_up(run, args.policy, args.prefix)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = run_fill_up(run, args.policy, limit=args.prefix)
    t_fast = time.perf_counter() - t0
    same = [(int(n), g) for n, g in zip(fast.node, fast.gpus, strict=True)] == ref
    print(f"policy {args.policy}, seed {args.seed}, prefix of {args.prefix} pods on {len(run.node_names)} nodes")
    print(f"  reference (direct, no cache): {t_ref:8.2f} s")
    print(f"  twin engine (state cache)   : {t_fast:8.2f} s")
    print(f"  speed-up                    : {t_ref / t_fast:8.1f}x")
    print(f"  identical placements        : {same}")

    t0 = time.perf_counter()
    full = run_fill_up(run, args.policy)
    t_full = time.perf_counter() - t0
    points = bin_curves(full)
    print(f"full run: {len(run.pod_names)} pods in {t_full:.2f} s ({full.pods_failed} failed)")
    print(f"  allocation at 98% arrived: {allocation_at(points, 98)}, at 130%: {allocation_at(points, 130)}")
    return 0 if same else 2


if __name__ == "__main__":
    sys.exit(main())
