"""The FGD paper's fill-up experiment on the openb trace, exactly as fgd-protocol.md specifies.

One run = one node list × pod list × policy × seed:

1. sort the pods by name (W) and build the typical pods from W;
2. seed Go's ``math/rand`` with the seed, burn one Int63, shuffle W (P);
3. inflate P to 130% of GPU capacity with random copies of W (or trim it if it is above);
4. burn ten Int63, rank the nodes (sorted by name) with ``Perm``: the rank breaks score ties;
5. place P one pod at a time (no departures, no retries), logging after every pod the arrived GPU
   demand, the allocated GPU milli and the cluster fragmentation.

The curves bin those rows by arrived workload in percent of capacity, as the paper's scripts do.
The placement engine is vectorised over nodes; FGD's scores are cached per distinct node state
(model, free CPU, sorted free GPU milli), since most of the 1,213 nodes share a handful of states.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from twin import limits
from twin.errors import TwinInputError
from twin.experiments.trace_gorand import GoRand
from twin.policy.placement.fgd_measure import (
    MILLI_PER_GPU,
    FragmentationModel,
    TypicalClass,
    fgd_score,
    scoring_view,
    typical_pods,
)
from twin.policy.placement.research import affinity_tag, best_fit_gpus, paper_scores
from twin.spec.openb import NodeList, PodList

POLICIES: Final = ("random", "dotproduct", "gpuclustering", "gpupacking", "bestfit", "fgd")
TUNE_RATIO: Final = 1.3
EXTRA_DRAWS_AFTER_TUNING: Final = 10  # the reference's informers each draw one Float64 (§3 step 6)
SLOTS: Final = 8  # GPU slots per node row; openb nodes have at most 8 GPUs

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class PreparedRun:
    """The inputs of one run after shuffling, inflation and node ranking (all seeded)."""

    seed: int
    node_names: tuple[str, ...]  # sorted by name
    node_cpu: IntArray
    node_mem: IntArray
    node_gpus: IntArray
    node_model: IntArray  # index into ``models``
    node_rank: IntArray  # perm rank: lower wins ties
    models: tuple[str, ...]
    pod_names: tuple[str, ...]  # P, in placement order (copies named <name>-tuned-<i>)
    pod_cpu: IntArray  # actual requests: filters and accounting
    pod_mem: IntArray
    pod_num_gpu: IntArray  # k
    pod_share: IntArray  # d (per-GPU milli, clamped to 1000)
    pod_milli_cpu: IntArray  # scoring view (100 when the request is 0)
    pod_type_ok: BoolArray  # (pods, models): may the pod use this model
    typical: tuple[TypicalClass, ...]
    copies: int  # pods appended by inflation (negative: pods removed)
    rng: GoRand = field(repr=False)  # the stream, positioned after the node ranking (Random uses it)

    @property
    def total_gpu_milli(self) -> int:
        return int(self.node_gpus.sum()) * MILLI_PER_GPU


def prepare_run(nodes: NodeList, pods: PodList, seed: int, tune_ratio: float = TUNE_RATIO) -> PreparedRun:
    """Steps 1-7 of the run protocol (fgd-protocol.md §3). Only GPU nodes take part."""
    gpu_nodes = [i for i in range(len(nodes)) if nodes.num_gpu[i] > 0]
    if not gpu_nodes:
        raise TwinInputError("node list has no GPU nodes", file=nodes.source, field="gpu")
    if int(nodes.num_gpu.max()) > SLOTS:
        raise TwinInputError(f"nodes with more than {SLOTS} GPUs are not supported", file=nodes.source, field="gpu")
    if len(pods) == 0:
        raise TwinInputError("pod list is empty", file=pods.source)
    node_order = sorted(gpu_nodes, key=lambda i: nodes.names[i].encode())
    models = tuple(sorted({nodes.model[i] for i in node_order}))

    w_order = sorted(range(len(pods)), key=lambda i: pods.names[i].encode())
    shapes = [
        scoring_view(int(pods.cpu_milli[i]), int(pods.num_gpu[i]), int(pods.gpu_milli[i]), pods.gpu_spec[i])
        for i in w_order
    ]
    typical = typical_pods(shapes)

    rng = GoRand(seed)
    rng.int63()  # the reference evaluates rand.Int() inside a debug-log argument
    order = list(range(len(w_order)))  # positions in W
    rng.shuffle(order)
    demand = [s.gpu_number * s.milli_gpu for s in shapes]
    total = sum(demand[j] for j in order)
    capacity = int(nodes.num_gpu[node_order].sum()) * MILLI_PER_GPU
    target = tune_ratio * capacity
    names = [pods.names[w_order[j]] for j in order]
    copies = 0
    if total < target:
        # Inflation adds copies until the demand reaches the target: with no GPU demand at all (a trace
        # of CPU pods) it would never stop, and a tiny demand on a huge cluster would exhaust memory.
        smallest = min((d for d in demand if d > 0), default=0)
        if smallest == 0:
            raise TwinInputError(
                "no pod in the trace asks for a GPU; the FGD protocol inflates GPU demand to "
                f"{tune_ratio:.0%} of the cluster's GPUs",
                file=pods.source,
                field="num_gpu",
            )
        limits.check(limits.MAX_TRACE_PODS, len(order) + (target - total) / smallest, file=pods.source, field="pods")
        while True:
            j = rng.intn(len(w_order))
            # Quirk kept from the reference: the stop test adds the per-GPU share d, not k·d.
            if total + shapes[j].milli_gpu > target:
                break
            total += demand[j]
            order.append(j)
            names.append(f"{pods.names[w_order[j]]}-tuned-{copies}")
            copies += 1
    elif total > target:
        while total > target:
            idx = rng.intn(len(order))
            total -= demand[order[idx]]
            del order[idx]
            del names[idx]
            copies -= 1
    for _ in range(EXTRA_DRAWS_AFTER_TUNING):
        rng.int63()
    rank = np.asarray(rng.perm(len(node_order)), dtype=np.int64)

    src = np.asarray([w_order[j] for j in order], dtype=np.int64)
    type_ok = np.ones((len(order), len(models)), dtype=bool)
    for row, j in enumerate(order):
        allowed = shapes[j].allowed_models
        if allowed:
            type_ok[row] = [m in allowed for m in models]
    picked = np.asarray(node_order, dtype=np.int64)
    return PreparedRun(
        seed=seed,
        node_names=tuple(nodes.names[i] for i in node_order),
        node_cpu=nodes.cpu_milli[picked].copy(),
        node_mem=nodes.memory_mib[picked].copy(),
        node_gpus=nodes.num_gpu[picked].copy(),
        node_model=np.asarray([models.index(nodes.model[i]) for i in node_order], dtype=np.int64),
        node_rank=rank,
        models=models,
        pod_names=tuple(names),
        pod_cpu=pods.cpu_milli[src].copy(),
        pod_mem=pods.memory_mib[src].copy(),
        pod_num_gpu=np.asarray([shapes[j].gpu_number for j in order], dtype=np.int64),
        pod_share=np.asarray([shapes[j].milli_gpu for j in order], dtype=np.int64),
        pod_milli_cpu=np.asarray([shapes[j].milli_cpu for j in order], dtype=np.int64),
        pod_type_ok=type_ok,
        typical=typical,
        copies=copies,
        rng=rng,
    )


@dataclass(frozen=True)
class FillUpResult:
    """One report row per pod of P (§9.1), plus where each pod went."""

    policy: str
    seed: int
    total_gpus: int
    arrived: IntArray  # cumulative k·d, failed pods included
    used: IntArray  # allocated GPU milli
    frag: FloatArray  # cluster fragmentation F, milli-GPU
    idle: IntArray  # free GPU milli
    node: IntArray  # chosen node (index in name order), -1 when the pod failed
    gpus: tuple[tuple[int, ...], ...]  # chosen GPU indices per pod

    @property
    def pods_failed(self) -> int:
        return int((self.node < 0).sum())

    @property
    def frag_ratio(self) -> FloatArray:
        ratio = np.where(self.idle > 0, 100.0 * self.frag / np.maximum(self.idle, 1), 0.0)
        return np.asarray(ratio, dtype=np.float64)


class _Cluster:
    """Mutable node arrays in name order. GPU slots a node lacks hold -1."""

    def __init__(self, run: PreparedRun) -> None:
        n = len(run.node_names)
        self.cpu = run.node_cpu.copy()
        self.mem = run.node_mem.copy()
        self.free = np.full((n, SLOTS), -1, dtype=np.int64)
        for i, g in enumerate(run.node_gpus):
            self.free[i, : int(g)] = MILLI_PER_GPU
        self.model = run.node_model
        self.gpus = run.node_gpus
        self.rank = run.node_rank
        self.capacity_milli = run.node_gpus * MILLI_PER_GPU

    def feasible(self, cpu: int, mem: int, k: int, d: int, type_ok: BoolArray) -> IntArray:
        """Indices of the nodes that pass the filters of §5 (name order)."""
        ok = (self.cpu >= cpu) & (self.mem >= mem)
        if d > 0:
            ok &= type_ok[self.model]
            ok &= (self.free >= d).sum(axis=1) >= k
        return np.flatnonzero(ok)


def _pick(candidates: IntArray, scores: IntArray, rank: IntArray) -> int:
    """Highest score; ties to the lowest rank (the reference's smallest renamed node name)."""
    top = candidates[scores == scores.max()]
    return int(top[np.argmin(rank[top])])


class _FgdScorer:
    """FGD node scores cached per (node state, pod shape); states are interned as they appear."""

    def __init__(self, frag: FragmentationModel, cluster: _Cluster) -> None:
        self.frag = frag
        self._ids: dict[tuple[int, int, tuple[int, ...]], int] = {}
        cap = 4096
        self.st_model = np.zeros(cap, dtype=np.int64)
        self.st_cpu = np.zeros(cap, dtype=np.int64)
        self.st_free = np.zeros((cap, SLOTS), dtype=np.int64)
        self.st_frag = np.zeros(cap, dtype=np.float64)
        self._count = 0
        self._tables: dict[tuple[int, int, int], npt.NDArray[np.int16]] = {}
        self.node_state = np.array(
            [self.intern(int(cluster.model[i]), int(cluster.cpu[i]), cluster.free[i]) for i in range(len(cluster.cpu))],
            dtype=np.int64,
        )

    def intern(self, model: int, cpu: int, free: IntArray) -> int:
        ordered = np.sort(free)[::-1]  # descending; absent (-1) slots last
        key = (model, cpu, tuple(int(x) for x in ordered))
        sid = self._ids.get(key)
        if sid is not None:
            return sid
        sid = self._count
        if sid == len(self.st_cpu):
            self._grow()
        self.st_model[sid] = model
        self.st_cpu[sid] = cpu
        self.st_free[sid] = ordered
        self.st_frag[sid] = self.frag.batch(
            self.st_model[sid : sid + 1], self.st_cpu[sid : sid + 1], self.st_free[sid : sid + 1]
        )[0]
        self._ids[key] = sid
        self._count += 1
        return sid

    def _grow(self) -> None:
        cap = 2 * len(self.st_cpu)
        self.st_model = np.resize(self.st_model, cap)
        self.st_cpu = np.resize(self.st_cpu, cap)
        self.st_free = np.resize(self.st_free, (cap, SLOTS))
        self.st_frag = np.resize(self.st_frag, cap)

    def scores(self, nodes: IntArray, milli_cpu: int, k: int, d: int) -> IntArray:
        key = (milli_cpu, k, d)
        table = self._tables.get(key)
        if table is None or len(table) < self._count:
            grown = np.full(len(self.st_cpu), -1, dtype=np.int16)
            if table is not None:
                grown[: len(table)] = table
            table = self._tables[key] = grown
        states = self.node_state[nodes]
        got = table[states]
        missing = got < 0
        if missing.any():
            todo = np.unique(states[missing])
            table[todo] = self._score_states(todo, milli_cpu, k, d)
            got = table[states]
        return got.astype(np.int64)

    def _score_states(self, states: IntArray, milli_cpu: int, k: int, d: int) -> IntArray:
        before = self.st_frag[states]
        cpu_after = self.st_cpu[states] - milli_cpu
        free = self.st_free[states]
        model = self.st_model[states]
        if k == 1 and 0 < d < MILLI_PER_GPU:
            # One row per (state, GPU slot that fits); a node scores its best GPU.
            rows, slots = np.nonzero(free >= d)
            after = free[rows].copy()
            after[np.arange(len(rows)), slots] -= d
            frag_after = self.frag.batch(model[rows], cpu_after[rows], after)
            per_row = fgd_score(before[rows], frag_after)
            best = np.full(len(states), -1, dtype=np.int64)
            np.maximum.at(best, rows, per_row)
            return best
        after = free.copy()
        if d > 0:
            after[:, :k] = 0  # states keep free slots sorted descending: the first k are whole GPUs
        return fgd_score(before, self.frag.batch(model, cpu_after, after))

    def gpu_choice(self, cluster: _Cluster, node: int, milli_cpu: int, k: int, d: int) -> tuple[int, ...]:
        """§6.2: the lowest GPU index reaching the node's integer max score (sharing pods)."""
        if d == 0:
            return ()
        free = cluster.free[node]
        if not (k == 1 and d < MILLI_PER_GPU):
            return tuple(int(i) for i in np.flatnonzero(free == MILLI_PER_GPU)[:k])
        slots = np.flatnonzero(free >= d)
        after = np.repeat(free[None, :], len(slots), axis=0)
        after[np.arange(len(slots)), slots] -= d
        n = len(slots)
        frag_after = self.frag.batch(
            np.full(n, cluster.model[node]), np.full(n, int(cluster.cpu[node]) - milli_cpu), after
        )
        sid = int(self.node_state[node])
        per_gpu = fgd_score(np.full(n, self.st_frag[sid]), frag_after)
        return (int(slots[int(np.argmax(per_gpu))]),)  # argmax returns the first (lowest) index


def _random_gpus(rng: GoRand, free: IntArray, k: int, d: int) -> tuple[int, ...]:
    if d == 0:
        return ()
    if k == 1 and d < MILLI_PER_GPU:
        chosen = -1
        for seen, i in enumerate(np.flatnonzero(free >= d), start=1):
            if rng.intn(seen) == 0:  # reservoir sampling, one draw per eligible GPU
                chosen = int(i)
        return (chosen,)
    return tuple(int(i) for i in np.flatnonzero(free == MILLI_PER_GPU)[:k])


def run_fill_up(
    run: PreparedRun, policy: str, *, limit: int | None = None, progress: ProgressFn | None = None
) -> FillUpResult:
    """Place the pods of ``run`` in order with ``policy`` (§3 step 8) and log every row (§9.1).

    ``limit`` stops after that many pods (a prefix, for tests and benchmarks). The run's Go
    stream is copied, so the same :class:`PreparedRun` can be replayed.
    """
    if policy not in POLICIES:
        raise TwinInputError(f"unknown policy, expected one of {', '.join(POLICIES)}", field="policy", value=policy)
    rng = run.rng.copy()
    cluster = _Cluster(run)
    frag_model = FragmentationModel(run.typical, run.models)
    scorer = _FgdScorer(frag_model, cluster)  # also tracks every node's F for the report
    tags = np.zeros((len(run.node_names), SLOTS + 1), dtype=np.int64) if policy == "gpuclustering" else None
    count = len(run.pod_names) if limit is None else min(limit, len(run.pod_names))
    arrived = np.zeros(count, dtype=np.int64)
    used = np.zeros(count, dtype=np.int64)
    frag = np.zeros(count, dtype=np.float64)
    idle = np.zeros(count, dtype=np.int64)
    chosen_node = np.full(count, -1, dtype=np.int64)
    chosen_gpus: list[tuple[int, ...]] = []
    node_frag = scorer.st_frag[scorer.node_state].copy()
    capacity = int(cluster.capacity_milli.sum())
    arrived_total = 0
    used_total = 0
    for p in range(count):
        cpu, mem = int(run.pod_cpu[p]), int(run.pod_mem[p])
        k, d, milli_cpu = int(run.pod_num_gpu[p]), int(run.pod_share[p]), int(run.pod_milli_cpu[p])
        arrived_total += k * d
        nodes = cluster.feasible(cpu, mem, k, d, run.pod_type_ok[p])
        gpus: tuple[int, ...] = ()
        node = -1
        if len(nodes) > 0:
            if policy == "random":
                node = int(nodes[rng.intn(len(nodes))]) if len(nodes) > 1 else int(nodes[0])
                gpus = _random_gpus(rng, cluster.free[node], k, d)
            elif policy == "fgd":
                node = _pick(nodes, scorer.scores(nodes, milli_cpu, k, d), cluster.rank)
                gpus = scorer.gpu_choice(cluster, node, milli_cpu, k, d)
            else:
                tag = affinity_tag(k, d)
                scores = paper_scores(
                    policy,
                    cluster.cpu[nodes],
                    cluster.free[nodes],
                    cluster.gpus[nodes],
                    milli_cpu,
                    k,
                    d,
                    None if tags is None else tags[nodes],
                )
                node = _pick(nodes, scores, cluster.rank)
                gpus = best_fit_gpus([int(x) for x in cluster.free[node]], k, d)
                if tags is not None and tag >= 0:
                    tags[node, tag] += 1
            cluster.cpu[node] -= cpu
            cluster.mem[node] -= mem
            for g in gpus:
                cluster.free[node, g] -= d
            used_total += k * d
            sid = scorer.intern(int(cluster.model[node]), int(cluster.cpu[node]), cluster.free[node])
            scorer.node_state[node] = sid
            node_frag[node] = scorer.st_frag[sid]
        chosen_node[p] = node
        chosen_gpus.append(gpus)
        arrived[p] = arrived_total
        used[p] = used_total
        frag[p] = float(node_frag.sum())
        idle[p] = capacity - used_total
        if progress is not None:
            progress(p + 1, count)
    return FillUpResult(
        policy=policy,
        seed=run.seed,
        total_gpus=int(run.node_gpus.sum()),
        arrived=arrived,
        used=used,
        frag=frag,
        idle=idle,
        node=chosen_node,
        gpus=tuple(chosen_gpus),
    )


@dataclass(frozen=True, slots=True)
class CurvePoint:
    arrived_pct: int
    allocated_pct: float
    frag_amount_pct: float
    frag_ratio_pct: float


def bin_curves(result: FillUpResult, max_pct: int = 130) -> list[CurvePoint]:
    """Bin the report rows by arrived workload, as the paper's analysis scripts do (§9.2)."""
    gpus = result.total_gpus
    arrive_pct = np.array([round(a / gpus / 10, 0) for a in result.arrived.tolist()], dtype=np.float64)
    alloc_pct = np.array([round(u / gpus / 10, 2) for u in result.used.tolist()], dtype=np.float64)
    frag = np.array([float(f"{f:.2f}") for f in result.frag.tolist()], dtype=np.float64)
    ratio = np.array([float(f"{r:.2f}") for r in result.frag_ratio.tolist()], dtype=np.float64)
    points: list[CurvePoint] = []
    for x in range(max_pct + 1):
        rows = arrive_pct == x
        if not rows.any():
            rows = (arrive_pct >= x - 1) & (arrive_pct <= x + 1)
        if not rows.any():
            continue
        points.append(
            CurvePoint(
                arrived_pct=x,
                allocated_pct=float(np.round(alloc_pct[rows].mean(), 2)),
                frag_amount_pct=float(np.round(100 * frag[rows].mean() / 1000 / gpus, 2)),
                frag_ratio_pct=float(ratio[rows].mean()),
            )
        )
    return points


def allocation_at(points: Sequence[CurvePoint], arrived_pct: int) -> float | None:
    for point in points:
        if point.arrived_pct == arrived_pct:
            return point.allocated_pct
    return None
