"""A straightforward reference of the fill-up placement loop, node by node.

It re-derives every policy's choice from fgd-protocol.md §5-§8 without any caching: the baselines
score each feasible node in plain Python, and FGD evaluates the fragmentation of every feasible
node and every fitting GPU for every pod in one direct NumPy batch (the "direct vectorised"
implementation). It is slow and meant for prefixes of a run. The benchmark times the fast engine
against it, and the tests check that both place every pod of a prefix identically.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from twin.experiments.fgd_protocol import SLOTS, PreparedRun
from twin.policy.placement.fgd_measure import MILLI_PER_GPU, FragmentationModel
from twin.policy.placement.research import MAX_CPU, MAX_GPU

Placement = tuple[int, tuple[int, ...]]  # (node index or -1, GPU indices)


def _fgd_score(before: float, after: float) -> int:
    return int(100.0 / (1.0 + math.exp(-(before - after) / 1000.0)))


def _whole_gpus(free: list[int], k: int) -> tuple[int, ...]:
    return tuple([i for i, r in enumerate(free) if r == MILLI_PER_GPU][:k])


def reference_fill_up(run: PreparedRun, policy: str, limit: int) -> list[Placement]:
    """Placements of the first ``limit`` pods of ``run`` under ``policy``."""
    rng = run.rng.copy()
    frag = FragmentationModel(run.typical, run.models)
    n = len(run.node_names)
    cpu = [int(x) for x in run.node_cpu]
    mem = [int(x) for x in run.node_mem]
    free = [[MILLI_PER_GPU] * int(g) for g in run.node_gpus]
    model = [run.models[int(m)] for m in run.node_model]
    rank = [int(r) for r in run.node_rank]
    tags: list[dict[str, int]] = [{} for _ in range(n)]
    out: list[Placement] = []
    for p in range(min(limit, len(run.pod_names))):
        c, m = int(run.pod_cpu[p]), int(run.pod_mem[p])
        k, d, mc = int(run.pod_num_gpu[p]), int(run.pod_share[p]), int(run.pod_milli_cpu[p])
        sharing = k == 1 and 0 < d < MILLI_PER_GPU
        feasible = []
        for i in range(n):
            if cpu[i] < c or mem[i] < m:
                continue
            if d > 0:
                if not run.pod_type_ok[p, int(run.node_model[i])]:
                    continue
                if sum(1 for r in free[i] if r >= d) < k:
                    continue
            feasible.append(i)
        if not feasible:
            out.append((-1, ()))
            continue
        gpu_choice: dict[int, tuple[int, ...]] = {}
        scores: dict[int, int] = {}
        if policy == "random":
            node = feasible[rng.intn(len(feasible))] if len(feasible) > 1 else feasible[0]
            if sharing:
                chosen, seen = -1, 0
                for g, r in enumerate(free[node]):
                    if r >= d:
                        seen += 1
                        if rng.intn(seen) == 0:
                            chosen = g
                gpu_choice[node] = (chosen,)
            else:
                gpu_choice[node] = _whole_gpus(free[node], k) if d > 0 else ()
        elif policy == "fgd":
            scores, gpu_choice = _fgd_direct(frag, feasible, model, cpu, free, mc, k, d)
            best = max(scores.values())
            node = min((i for i in feasible if scores[i] == best), key=lambda i: rank[i])
        else:
            for i in feasible:
                scores[i], gpu_choice[i] = _score(policy, frag, model[i], cpu[i], free[i], mc, k, d, tags[i])
            if policy == "bestfit":
                lo, hi = min(scores.values()), max(scores.values())
                scores = {i: (0 if hi == lo else (s - lo) * 100 // (hi - lo)) for i, s in scores.items()}
            best = max(scores.values())
            node = min((i for i in feasible if scores[i] == best), key=lambda i: rank[i])
        gpus = gpu_choice[node]
        cpu[node] -= c
        mem[node] -= m
        for g in gpus:
            free[node][g] -= d
        if policy == "gpuclustering" and d > 0:
            tag = "share-gpu" if sharing else f"{k}-gpu"
            tags[node][tag] = tags[node].get(tag, 0) + 1
        out.append((node, gpus))
    return out


def _fgd_direct(
    frag: FragmentationModel,
    feasible: list[int],
    model: list[str],
    cpu: list[int],
    free: list[list[int]],
    mc: int,
    k: int,
    d: int,
) -> tuple[dict[int, int], dict[int, tuple[int, ...]]]:
    """FGD scores of every feasible node: before/after fragmentation of each (node, GPU) choice."""
    codes = {m: i for i, m in enumerate(frag.models)}
    rows_node: list[int] = []
    rows_gpus: list[tuple[int, ...]] = []
    after_free: list[list[int]] = []
    for i in feasible:
        if k == 1 and 0 < d < MILLI_PER_GPU:
            for g, r in enumerate(free[i]):
                if r >= d:
                    after = list(free[i])
                    after[g] -= d
                    rows_node.append(i)
                    rows_gpus.append((g,))
                    after_free.append(after)
        else:
            gpus = _whole_gpus(free[i], k) if d > 0 else ()
            rows_node.append(i)
            rows_gpus.append(gpus)
            after_free.append([0 if g in gpus else r for g, r in enumerate(free[i])])

    def padded(rows: list[list[int]]) -> npt.NDArray[np.int64]:
        return np.array([r + [-1] * (SLOTS - len(r)) for r in rows], dtype=np.int64)

    node_model = np.array([codes[model[i]] for i in feasible], dtype=np.int64)
    before = frag.batch(
        node_model, np.array([cpu[i] for i in feasible], dtype=np.int64), padded([free[i] for i in feasible])
    )
    before_of = dict(zip(feasible, before.tolist(), strict=True))
    after_frag = frag.batch(
        np.array([codes[model[i]] for i in rows_node], dtype=np.int64),
        np.array([cpu[i] - mc for i in rows_node], dtype=np.int64),
        padded(after_free),
    )
    scores: dict[int, int] = {}
    choice: dict[int, tuple[int, ...]] = {}
    for i, gpus, f_after in zip(rows_node, rows_gpus, after_frag.tolist(), strict=True):
        s = _fgd_score(before_of[i], f_after)
        if i not in scores or s > scores[i]:  # rows are in GPU index order: the lowest index wins ties
            scores[i], choice[i] = s, gpus
    return scores, choice


def _best_fit_gpu(free: list[int], k: int, d: int) -> tuple[int, ...]:
    if d == 0:
        return ()
    if k == 1 and d < MILLI_PER_GPU:
        fits = [(r, g) for g, r in enumerate(free) if r >= d]
        return (min(fits)[1],)
    return _whole_gpus(free, k)


def _score(
    policy: str,
    frag: FragmentationModel,
    model: str,
    cpu_left: int,
    free: list[int],
    mc: int,
    k: int,
    d: int,
    tags: dict[str, int],
) -> tuple[int, tuple[int, ...]]:
    free_gpu = sum(free)
    gpus = _best_fit_gpu(free, k, d)
    if policy == "bestfit":
        a = (cpu_left - mc) / MAX_CPU * 0.5
        b = (free_gpu - k * d) / MAX_GPU * 0.5
        return int((1.0 - ((0.0 + a) + b)) * 100.0), gpus
    if policy == "dotproduct":
        if cpu_left < mc:
            return 0, gpus
        dot = (cpu_left / MAX_CPU) * (mc / MAX_CPU) + (free_gpu / MAX_GPU) * (k * d / MAX_GPU)
        return int(100.0 * (1.0 - dot / 2.0)), gpus
    if policy == "gpupacking":
        if d == 0:
            return 0, gpus
        if all(r == MILLI_PER_GPU for r in free):
            return max(33 - len(free), len(free)), gpus
        picked = [free[g] for g in gpus]
        opened = sum(1 for r in picked if r == MILLI_PER_GPU)
        if opened:
            return max(50 - opened, 33), gpus
        return max(100 - sum(r * 100 // MILLI_PER_GPU for r in picked) // 10, 50), gpus
    if policy == "gpuclustering":
        if d == 0:
            return 0, gpus
        tag = "share-gpu" if (k == 1 and d < MILLI_PER_GPU) else f"{k}-gpu"
        base = 25 * (MAX_GPU - free_gpu) // MAX_GPU
        present = {t for t, n in tags.items() if n > 0}
        if present == {tag}:
            bonus = 75
        elif tag in present:
            bonus = 50
        elif not present:
            bonus = 25
        else:
            bonus = 0
        return base + bonus, gpus
    raise ValueError(policy)
