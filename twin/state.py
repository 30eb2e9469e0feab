"""Cluster state: pools, nodes, GPUs and the allocations on them (semantics 1.2-1.4, 2.3, 2.6, 2.7).

The state is the single source of truth every layer mutates through ``allocate`` / ``release`` /
``adjust``. Accounting rules (TensorFusion ``node_capacity.go`` and the allocator):

* soft/hard: each GPU loses the request (compute percent converts with ``int(pct·cap/100)``);
* shared: the GPU is taken whole (available becomes 0) and is restored to capacity on release;
* partitioned: the GPU loses the template's resources and the template occupies slots.

Exactness: a GPU's ``available`` is always the left fold ``baseline - take_1 - take_2 - ...`` over
its allocations in the order they were made, so releasing an allocation gives bit-for-bit the value
the GPU would have had without it (no float drift from add-back).

Speed: placement reads numpy arrays (:class:`GPUArrays`) that are kept in sync per GPU on every
mutation, so a strategy can filter and score a 1,000-GPU pool with a handful of vector operations.

Transactions use an undo journal (only recorded while a checkpoint is open): ``checkpoint`` is
O(1) and ``rollback`` restores exactly the records touched since.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from twin.hardware import MigTemplate
from twin.resources import (
    ZERO,
    AllocRequest,
    GPUPhase,
    IsolationMode,
    PlacementMode,
    Resource,
)

TENSOR_FUSION = "tensor-fusion"
DEFAULT_MAX_WORKER_PER_NODE = 256
DEFAULT_MAX_PARTITIONS = 7
ISOLATION_MODES: tuple[IsolationMode, ...] = tuple(IsolationMode)
PHASES: tuple[GPUPhase, ...] = tuple(GPUPhase)
MODE_CODE = {m: i for i, m in enumerate(ISOLATION_MODES)}  # column code of each isolation mode
PHASE_CODE = {p: i for i, p in enumerate(PHASES)}
_MAX_CHANGES = 1 << 14


class StateError(ValueError):
    """A caller bug or an impossible operation on the state (unknown uid, over capacity, ...)."""


class AllocationError(StateError):
    """``allocate`` refused: the GPUs cannot hold the request."""


class AdjustError(StateError):
    """``adjust`` refused: the new request does not fit (``available + old - new < 0``) or the mode is fixed.

    A per-GPU capacity refusal carries the numbers as data: the GPU, what is free on it, what the
    worker holds there and what it asked for (``available + held`` is the most it could take).
    """

    def __init__(
        self,
        message: str,
        *,
        gpu_id: str | None = None,
        available: Resource | None = None,
        held: Resource | None = None,
        requested: Resource | None = None,
    ) -> None:
        super().__init__(message)
        self.gpu_id = gpu_id
        self.available = available
        self.held = held
        self.requested = requested


@dataclass(frozen=True, slots=True)
class Oversubscription:
    """``capacityConfig.oversubscription`` (semantics 1.2, 2.6): reporting only, never admission."""

    tflops_oversell_ratio: float = 500.0  # percent, >= 100
    vram_expand_to_host_mem: float = 50.0  # percent of node RAM
    vram_expand_to_host_disk: float = 70.0  # percent of node data disk


@dataclass(slots=True)
class PoolState:
    """A GPUPool plus the scheduling knobs the twin needs from its SchedulingConfigTemplate."""

    name: str
    placement_mode: PlacementMode = PlacementMode.NODE_COMPACT_GPU_LOW_LOAD
    vram_weight: float = 0.7
    tflops_weight: float = 0.3
    max_worker_per_node: int = DEFAULT_MAX_WORKER_PER_NODE
    default_isolation: IsolationMode = IsolationMode.SOFT
    oversubscription: Oversubscription | None = None
    dynamic_isolation: bool = False  # operator-wide Dynamic isolation policy (semantics 2.8)


@dataclass(frozen=True, slots=True)
class PartitionSlot:
    """One allocated partition on a GPU (``allocatedPartitions[podUID]``)."""

    template_id: str
    slot_start: int
    slot_end: int  # exclusive
    seq: int  # allocation order, used to replay partitions without slots


@dataclass(slots=True)
class GPUState:
    uid: str
    node: str
    index: int
    model: str
    vendor: str
    capacity: Resource
    available: Resource
    isolation: IsolationMode | None = None
    phase: GPUPhase = GPUPhase.RUNNING
    used_by: str = TENSOR_FUSION
    numa: int = -1  # -1: unknown NUMA node
    templates: tuple[MigTemplate, ...] = ()
    max_partitions: int = DEFAULT_MAX_PARTITIONS
    placement_slots: int = 0
    partitions: dict[str, PartitionSlot] = field(default_factory=dict)
    active_mode: IsolationMode | None = None  # Dynamic policy lock (semantics 2.8)
    baseline: Resource = ZERO  # available with no allocations (capacity minus external usage)
    takes: dict[str, Resource] = field(default_factory=dict)  # alloc uid -> what it took, in order

    def template(self, ident: str) -> MigTemplate | None:
        """The template named ``ident`` (id or name exactly first, then normalised alias)."""
        wanted = ident.strip().lower()
        for tpl in self.templates:
            if wanted in (tpl.id.lower(), tpl.name.lower()):
                return tpl
        for tpl in self.templates:
            if tpl.matches(ident):
                return tpl
        return None

    @property
    def schedulable_by_tf(self) -> bool:
        return self.phase is GPUPhase.RUNNING and self.used_by in ("", TENSOR_FUSION)


@dataclass(slots=True)
class NodeState:
    name: str
    pool: str
    gpus: list[str] = field(default_factory=list)
    cpu_milli: int = 0  # 0: CPU not modelled (no node-level CPU filter)
    memory: int = 0  # bytes; 0: not modelled
    cpu_used: int = 0
    memory_used: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    cost_per_hour: float = 0.0
    heartbeat_ok: bool = True
    ram_bytes: int = 0  # nodeInfo.ramSize, for VRAM expansion reporting
    data_disk_bytes: int = 0  # nodeInfo.dataDiskSize
    nvlinks: list[tuple[str, str]] = field(default_factory=list)  # NVLink-connected GPU uid pairs
    workers: int = 0  # allocations on this node (maxWorkerPerNode)


@dataclass(frozen=True, slots=True)
class Allocation:
    request: AllocRequest
    node: str
    gpu_ids: tuple[str, ...]
    partition_template: str | None = None
    slot_start: int | None = None
    seq: int = 0  # creation order in this state: preemption picks the newest victim first


@dataclass(frozen=True, slots=True)
class Checkpoint:
    position: int
    token: int


@dataclass(frozen=True, slots=True)
class VirtualCapacity:
    """Physical and virtual (oversubscribed, reporting-only) capacity of a pool or node (semantics 2.6)."""

    tflops: float
    vram: int
    available_tflops: float
    available_vram: int
    virtual_tflops: float
    virtual_vram: float
    virtual_available_tflops: float
    virtual_available_vram: float


class GPUArrays:
    """Column view of every GPU, in a fixed order (node name, GPU index), kept in sync incrementally."""

    def __init__(self, state: ClusterState) -> None:
        order = sorted(state.gpus.values(), key=lambda g: (g.node, g.index, g.uid))
        self.uids: list[str] = [g.uid for g in order]
        self.pos: dict[str, int] = {u: i for i, u in enumerate(self.uids)}
        self.node_names: list[str] = sorted(state.nodes)
        node_pos = {n: i for i, n in enumerate(self.node_names)}
        self.node_pos = node_pos
        n = len(order)
        self.node_idx: npt.NDArray[np.int64] = np.array([node_pos[g.node] for g in order], dtype=np.int64)
        self.index: npt.NDArray[np.int64] = np.array([g.index for g in order], dtype=np.int64)
        self.numa: npt.NDArray[np.int64] = np.array([g.numa for g in order], dtype=np.int64)
        self.cap_t: npt.NDArray[np.float64] = np.array([g.capacity.tflops for g in order], dtype=np.float64)
        self.cap_v: npt.NDArray[np.float64] = np.array([g.capacity.vram for g in order], dtype=np.float64)
        self.avail_t = np.zeros(n, dtype=np.float64)
        self.avail_v = np.zeros(n, dtype=np.float64)
        self.phase = np.zeros(n, dtype=np.int64)
        self.used_by_tf = np.zeros(n, dtype=bool)
        self.iso = np.zeros(n, dtype=np.int64)  # -1: no static mode, else ISOLATION_MODES position
        self.active = np.zeros(n, dtype=np.int64)  # -1: no Dynamic lock
        self.n_partitions = np.zeros(n, dtype=np.int64)
        self.max_partitions = np.array([g.max_partitions for g in order], dtype=np.int64)
        self.has_templates = np.array([bool(g.templates) for g in order], dtype=bool)
        self.models: dict[str, int] = {}
        self.vendors: dict[str, int] = {}
        self.model = np.array([self.models.setdefault(g.model, len(self.models)) for g in order], dtype=np.int64)
        self.vendor = np.array([self.vendors.setdefault(g.vendor, len(self.vendors)) for g in order], dtype=np.int64)
        pools = sorted(state.pools)
        self.pool_pos = {p: i for i, p in enumerate(pools)}
        self.pool = np.array([self.pool_pos.get(state.nodes[g.node].pool, -1) for g in order], dtype=np.int64)
        self.node_workers = np.zeros(len(self.node_names), dtype=np.int64)
        self.node_ok = np.zeros(len(self.node_names), dtype=bool)
        self.node_cpu_free = np.full(len(self.node_names), np.inf)  # inf: CPU not modelled
        self.node_mem_free = np.full(len(self.node_names), np.inf)
        self._pool_members: dict[str, npt.NDArray[np.int64]] = {}
        self._pool_selectors: dict[str, slice | npt.NDArray[np.int64]] = {}
        # Python mirror of the slowly changing columns, to notice a change without numpy reads.
        self._static: list[tuple[int, bool, int, int, int]] = [(-1, False, -1, -1, -1)] * n
        # Incremental readers (score caches, masks): ``static_version`` moves whenever a phase,
        # usedBy, isolation mode, Dynamic lock or partition count changes; ``changes`` lists the
        # positions of every GPU update since position ``changes_base`` (trimmed, see update_gpu).
        self.static_version = 0
        self.changes: list[int] = []
        self.changes_base = 0
        for g in order:
            self.update_gpu(g)
        for node in state.nodes.values():
            self.update_node(node)
        self.changes.clear()  # readers start from the columns as built
        self.derived: dict[object, object] = {}  # readers' caches (masks, scores), keyed by the reader

    def update_gpu(self, g: GPUState, *, static_too: bool = True) -> None:
        """Copy ``g`` into the columns; ``static_too=False`` when only its available resources moved."""
        i = self.pos[g.uid]
        self.avail_t[i] = g.available.tflops
        self.avail_v[i] = g.available.vram
        if not static_too:
            self._log(i)
            return
        static = (
            PHASE_CODE[g.phase],
            g.used_by in ("", TENSOR_FUSION),
            -1 if g.isolation is None else MODE_CODE[g.isolation],
            -1 if g.active_mode is None else MODE_CODE[g.active_mode],
            len(g.partitions),
        )
        if static != self._static[i]:
            self._static[i] = static
            self.phase[i], self.used_by_tf[i], self.iso[i], self.active[i], self.n_partitions[i] = static
            self.static_version += 1
        self._log(i)

    def _log(self, i: int) -> None:
        changes = self.changes
        changes.append(i)
        if len(changes) > _MAX_CHANGES:
            # Readers further behind than the kept half rebuild from the columns.
            drop = len(changes) // 2
            del changes[:drop]
            self.changes_base += drop

    def update_node(self, node: NodeState) -> None:
        j = self.node_pos[node.name]
        self.node_workers[j] = node.workers
        self.node_ok[j] = node.heartbeat_ok
        self.node_cpu_free[j] = node.cpu_milli - node.cpu_used if node.cpu_milli else np.inf
        self.node_mem_free[j] = node.memory - node.memory_used if node.memory else np.inf

    def pool_selector(self, pool: str) -> slice | npt.NDArray[np.int64]:
        """Index for the pool's columns: a slice when its GPUs are contiguous (views, no copy)."""
        sel = self._pool_selectors.get(pool)
        if sel is None:
            members = self.pool_members(pool)
            contiguous = len(members) > 0 and int(members[-1]) - int(members[0]) + 1 == len(members)
            sel = slice(int(members[0]), int(members[-1]) + 1) if contiguous else members
            self._pool_selectors[pool] = sel
        return sel

    def pool_members(self, pool: str) -> npt.NDArray[np.int64]:
        """Positions of the pool's GPUs, ascending (so node name, then GPU index)."""
        members = self._pool_members.get(pool)
        if members is None:
            pid = self.pool_pos.get(pool, -2)
            members = np.flatnonzero(self.pool == pid).astype(np.int64)
            self._pool_members[pool] = members
        return members


def take_of(gpu: GPUState, req: AllocRequest, template: MigTemplate | None) -> Resource:
    """What one allocation takes from ``gpu`` (semantics 2.3 Dealloc, 2.6, 2.7)."""
    if req.isolation is IsolationMode.SHARED:
        return gpu.capacity
    if template is not None:
        return template.resources(gpu.capacity.tflops)
    return Resource(req.request.effective_tflops(gpu.capacity.tflops), req.request.vram)


def _fold_appended(gpu: GPUState, take: Resource) -> Resource:
    """``_fold`` after ``take`` was appended as the newest take: one subtraction instead of the walk.

    Exact: the fold is left to right, so appending subtracts from the previous unclamped result;
    a positive ``available`` was not clamped. Otherwise (zero, maybe clamped) walk from the baseline.
    """
    before = gpu.available
    if before.tflops <= 0:
        return _fold(gpu)
    tflops = before.tflops - take.tflops
    if tflops < 0 and tflops > -1e-9:
        tflops = 0.0
    return Resource(tflops, before.vram - take.vram)


def _fold(gpu: GPUState) -> Resource:
    """``baseline - take_1 - take_2 ...`` in allocation order; shared takes leave exactly zero."""
    tflops = gpu.baseline.tflops
    vram = gpu.baseline.vram
    for take in gpu.takes.values():
        tflops -= take.tflops
        vram -= take.vram
    if tflops < 0 and tflops > -1e-9:
        tflops = 0.0  # absorb float noise; real overdraft is refused before we get here
    return Resource(tflops, vram)


class ClusterState:
    """Pools, nodes, GPUs and allocations, with exact accounting and undo-journal transactions."""

    def __init__(self) -> None:
        self.pools: dict[str, PoolState] = {}
        self.nodes: dict[str, NodeState] = {}
        self.gpus: dict[str, GPUState] = {}
        self.allocations: dict[str, Allocation] = {}
        self._arrays: GPUArrays | None = None
        self._journal: list[Callable[[], None]] = []
        self._open: list[int] = []  # tokens of open checkpoints
        self._next_token = 0
        self._seq = 0

    # --- building -------------------------------------------------------------------------------

    def _structural(self, what: str) -> None:
        # The undo journal covers usage, not topology: refuse rather than leave a rollback incomplete.
        if self._open:
            raise StateError(f"cannot {what} inside a transaction")

    def add_pool(self, pool: PoolState) -> PoolState:
        self._structural("add a pool")
        if pool.name in self.pools:
            raise StateError(f"pool {pool.name!r} already exists")
        self.pools[pool.name] = pool
        self._arrays = None
        return pool

    def pool(self, name: str) -> PoolState:
        """The pool ``name``; an unknown name gets default settings (and is created)."""
        found = self.pools.get(name)
        return found if found is not None else self.add_pool(PoolState(name))

    def add_node(
        self,
        name: str,
        pool: str,
        *,
        cpu_milli: int = 0,
        memory: int = 0,
        labels: Mapping[str, str] | None = None,
        cost_per_hour: float = 0.0,
        ram_bytes: int = 0,
        data_disk_bytes: int = 0,
    ) -> NodeState:
        self._structural("add a node")
        if name in self.nodes:
            raise StateError(f"node {name!r} already exists")
        self.pool(pool)
        node = NodeState(
            name=name,
            pool=pool,
            cpu_milli=cpu_milli,
            memory=memory,
            labels=dict(labels or {}),
            cost_per_hour=cost_per_hour,
            ram_bytes=ram_bytes,
            data_disk_bytes=data_disk_bytes,
        )
        self.nodes[name] = node
        self._arrays = None
        return node

    def add_gpu(
        self,
        node: str,
        index: int,
        *,
        model: str,
        capacity: Resource,
        vendor: str = "NVIDIA",
        uid: str | None = None,
        isolation: IsolationMode | None = None,
        phase: GPUPhase = GPUPhase.RUNNING,
        used_by: str = TENSOR_FUSION,
        numa: int = -1,
        templates: Sequence[MigTemplate] = (),
        max_partitions: int = DEFAULT_MAX_PARTITIONS,
        placement_slots: int = 0,
        used: Resource = ZERO,
    ) -> GPUState:
        """Add a GPU. ``used`` is usage by something outside the twin (it lowers the baseline)."""
        self._structural("add a GPU")
        owner = self.nodes.get(node)
        if owner is None:
            raise StateError(f"unknown node {node!r}")
        gid = uid or f"{node}-gpu{index}"
        if gid in self.gpus:
            raise StateError(f"GPU {gid!r} already exists")
        if any(self.gpus[g].index == index for g in owner.gpus):
            raise StateError(f"node {node!r} already has a GPU with index {index}")
        if capacity.tflops <= 0 or capacity.vram <= 0:
            raise StateError(f"GPU {gid!r} needs positive capacity, got {capacity}")
        baseline = Resource(capacity.tflops - used.tflops, capacity.vram - used.vram)
        if baseline.tflops < 0 or baseline.vram < 0:
            raise StateError(f"GPU {gid!r}: existing usage {used} exceeds capacity {capacity}")
        gpu = GPUState(
            uid=gid,
            node=node,
            index=index,
            model=model,
            vendor=vendor,
            capacity=capacity,
            available=baseline,
            isolation=isolation,
            phase=phase,
            used_by=used_by,
            numa=numa,
            templates=tuple(templates),
            max_partitions=max_partitions,
            placement_slots=placement_slots,
            baseline=baseline,
        )
        self.gpus[gid] = gpu
        owner.gpus.append(gid)
        self._arrays = None
        return gpu

    def add_nvlink(self, a: str, b: str) -> None:
        self._structural("add an NVLink")
        ga, gb = self.gpus[a], self.gpus[b]
        if ga.node != gb.node:
            raise StateError(f"NVLink between GPUs on different nodes: {a!r}, {b!r}")
        self.nodes[ga.node].nvlinks.append((a, b))

    def remove_node(self, name: str) -> NodeState:
        """Remove an empty node and its GPUs (node compaction, scale-down)."""
        self._structural("remove a node")
        node = self.nodes.get(name)
        if node is None:
            raise StateError(f"unknown node {name!r}")
        busy = sorted(u for g in node.gpus for u in self.gpus[g].takes)
        if busy:
            raise StateError(f"node {name!r} still runs allocations: {', '.join(busy)}")
        for gid in node.gpus:
            del self.gpus[gid]
        del self.nodes[name]
        self._arrays = None
        return node

    # --- views ----------------------------------------------------------------------------------

    @property
    def arrays(self) -> GPUArrays:
        if self._arrays is None:
            self._arrays = GPUArrays(self)
        return self._arrays

    def pool_gpus(self, pool: str) -> list[GPUState]:
        arr = self.arrays
        return [self.gpus[arr.uids[i]] for i in arr.pool_members(pool)]

    def node_of(self, gpu_id: str) -> NodeState:
        return self.nodes[self.gpus[gpu_id].node]

    def allocations_on(self, gpu_id: str) -> list[Allocation]:
        return [self.allocations[u] for u in self.gpus[gpu_id].takes]

    # --- journal --------------------------------------------------------------------------------

    def _save_gpu(self, gpu: GPUState) -> None:
        if not self._open:
            return
        saved = (gpu.available, dict(gpu.takes), dict(gpu.partitions), gpu.active_mode, gpu.phase)

        def undo() -> None:
            gpu.available, takes, partitions, gpu.active_mode, gpu.phase = saved
            gpu.takes = dict(takes)
            gpu.partitions = dict(partitions)
            self._sync_gpu(gpu)

        self._journal.append(undo)

    def _save_node(self, node: NodeState) -> None:
        if not self._open:
            return
        saved = (node.cpu_used, node.memory_used, node.workers, node.heartbeat_ok)

        def undo() -> None:
            node.cpu_used, node.memory_used, node.workers, node.heartbeat_ok = saved
            self._sync_node(node)

        self._journal.append(undo)

    def _save_allocation(self, uid: str) -> None:
        if not self._open:
            return
        old = self.allocations.get(uid)

        def undo() -> None:
            if old is None:
                self.allocations.pop(uid, None)
            else:
                self.allocations[uid] = old

        self._journal.append(undo)

    def _sync_gpu(self, gpu: GPUState, *, static_too: bool = True) -> None:
        if self._arrays is not None:
            self._arrays.update_gpu(gpu, static_too=static_too)

    def _sync_node(self, node: NodeState) -> None:
        if self._arrays is not None:
            self._arrays.update_node(node)

    def checkpoint(self) -> Checkpoint:
        """Mark the current state; :meth:`rollback` returns to it, :meth:`commit` forgets it."""
        token = self._next_token
        self._next_token += 1
        self._open.append(token)
        return Checkpoint(len(self._journal), token)

    def _close(self, cp: Checkpoint) -> None:
        if cp.token not in self._open:
            raise StateError("checkpoint is not open (already committed or rolled back)")
        # Closing a checkpoint also closes every checkpoint opened after it (they are nested).
        del self._open[self._open.index(cp.token) :]

    def rollback(self, cp: Checkpoint) -> None:
        self._close(cp)
        while len(self._journal) > cp.position:
            self._journal.pop()()
        if not self._open:
            self._journal.clear()

    def commit(self, cp: Checkpoint) -> None:
        self._close(cp)
        if not self._open:
            self._journal.clear()

    @contextmanager
    def transaction(self) -> Iterator[Checkpoint]:
        """``with state.transaction():`` rolls back everything done inside if it raises."""
        cp = self.checkpoint()
        try:
            yield cp
        except BaseException:
            self.rollback(cp)
            raise
        self.commit(cp)

    def snapshot(self) -> ClusterState:
        """An independent deep copy (what-if analysis); open transactions are not copied."""
        journal, opened, arrays = self._journal, self._open, self._arrays
        self._journal, self._open, self._arrays = [], [], None
        try:
            twin = copy.deepcopy(self)
        finally:
            self._journal, self._open, self._arrays = journal, opened, arrays
        return twin

    # --- mutations ------------------------------------------------------------------------------

    def allocate(
        self,
        req: AllocRequest,
        node: str,
        gpu_ids: Sequence[str],
        partition_template: str | None = None,
    ) -> Allocation:
        """Bind ``req`` to ``gpu_ids`` on ``node``; checks capacity, isolation and slots, then accounts."""
        if req.uid in self.allocations:
            raise AllocationError(f"allocation {req.uid!r} already exists")
        owner = self.nodes.get(node)
        if owner is None:
            raise AllocationError(f"unknown node {node!r}")
        if len(gpu_ids) != req.gpu_count or len(set(gpu_ids)) != len(gpu_ids):
            raise AllocationError(f"{req.uid}: needs {req.gpu_count} distinct GPUs, got {list(gpu_ids)}")
        gpus = [self._gpu(g) for g in gpu_ids]
        dynamic = owner.pool in self.pools and self.pools[owner.pool].dynamic_isolation
        plans: list[tuple[GPUState, Resource, MigTemplate | None, int | None]] = []
        for gpu in gpus:
            if gpu.node != node:
                raise AllocationError(f"{req.uid}: GPU {gpu.uid!r} is on node {gpu.node!r}, not {node!r}")
            if dynamic and gpu.active_mode not in (None, req.isolation):
                raise AllocationError(
                    f"{req.uid}: GPU {gpu.uid!r} is locked to {gpu.active_mode.value} (Dynamic isolation policy)"
                )
            template = self._template_for(gpu, req, partition_template)
            take = take_of(gpu, req, template)
            self._check_fits(gpu, req, take)
            slot = self._free_slot(gpu, template) if template is not None else None
            if template is not None and slot is None:
                raise AllocationError(f"{req.uid}: no free {template.id} placement on GPU {gpu.uid!r}")
            plans.append((gpu, take, template, slot))
        if owner.cpu_milli and owner.cpu_used + req.cpu_milli > owner.cpu_milli:
            raise AllocationError(f"{req.uid}: node {node!r} lacks CPU for {req.cpu_milli}m")
        if owner.memory and owner.memory_used + req.memory > owner.memory:
            raise AllocationError(f"{req.uid}: node {node!r} lacks memory for {req.memory} bytes")
        self._seq += 1
        for gpu, take, template, slot in plans:
            self._save_gpu(gpu)
            gpu.takes[req.uid] = take
            if template is not None and slot is not None:
                gpu.partitions[req.uid] = PartitionSlot(template.id, slot, slot + template.slots, self._seq)
            locks = dynamic and gpu.active_mode is None
            if locks:
                gpu.active_mode = req.isolation
            gpu.available = _fold_appended(gpu, take)
            self._sync_gpu(gpu, static_too=locks or template is not None)
        self._save_node(owner)
        owner.cpu_used += req.cpu_milli
        owner.memory_used += req.memory
        owner.workers += 1
        self._sync_node(owner)
        # A CPU-only pod (gpu_count=0) has no plans: it holds node CPU/memory and a worker slot only.
        first_template = plans[0][2] if plans else None
        alloc = Allocation(
            request=req,
            node=node,
            gpu_ids=tuple(gpu_ids),
            partition_template=first_template.id if first_template is not None else None,
            slot_start=plans[0][3] if plans else None,
            seq=self._seq,
        )
        self._save_allocation(req.uid)
        self.allocations[req.uid] = alloc
        return alloc

    def release(self, uid: str) -> Allocation:
        """Remove an allocation: its GPUs get back exactly what it took, slots and locks are freed."""
        alloc = self.allocations.get(uid)
        if alloc is None:
            raise StateError(f"no allocation {uid!r}")
        for gid in alloc.gpu_ids:
            gpu = self.gpus[gid]
            self._save_gpu(gpu)
            del gpu.takes[uid]
            static_too = gpu.partitions.pop(uid, None) is not None
            if not gpu.takes and gpu.active_mode is not None:
                gpu.active_mode = None  # the Dynamic lock goes with the last allocation
                static_too = True
            gpu.available = _fold(gpu)
            self._sync_gpu(gpu, static_too=static_too)
        owner = self.nodes[alloc.node]
        self._save_node(owner)
        owner.cpu_used -= alloc.request.cpu_milli
        owner.memory_used -= alloc.request.memory
        owner.workers -= 1
        self._sync_node(owner)
        self._save_allocation(uid)
        del self.allocations[uid]
        return alloc

    def adjust(self, uid: str, request: Resource, limit: Resource) -> Allocation:
        """Resize in place (autoscaling). Per GPU: ``available + old - new >= 0``, else :class:`AdjustError`."""
        alloc = self.allocations.get(uid)
        if alloc is None:
            raise AdjustError(f"no allocation {uid!r}")
        req = alloc.request
        if req.isolation in (IsolationMode.SHARED, IsolationMode.PARTITIONED):
            raise AdjustError(f"{uid}: {req.isolation.value} allocations have fixed resources and cannot be resized")
        new_req = req.with_resources(request, limit)
        news: list[tuple[GPUState, Resource]] = []
        for gid in alloc.gpu_ids:
            gpu = self.gpus[gid]
            old = gpu.takes[uid]
            new = take_of(gpu, new_req, None)
            left_t = gpu.available.tflops + old.tflops - new.tflops
            left_v = gpu.available.vram + old.vram - new.vram
            if left_t < -1e-9 or left_v < 0:
                raise AdjustError(
                    f"{uid}: GPU {gid} cannot take {new} (available {gpu.available}, currently holding {old})",
                    gpu_id=gid,
                    available=gpu.available,
                    held=old,
                    requested=new,
                )
            news.append((gpu, new))
        for gpu, new in news:
            self._save_gpu(gpu)
            gpu.takes[uid] = new  # same key: keeps the allocation's place in the fold order
            gpu.available = _fold(gpu)
            self._sync_gpu(gpu)
        updated = replace(alloc, request=new_req)
        self._save_allocation(uid)
        self.allocations[uid] = updated
        return updated

    def set_gpu_phase(self, gpu_id: str, phase: GPUPhase) -> None:
        gpu = self._gpu(gpu_id)
        self._save_gpu(gpu)
        gpu.phase = phase
        self._sync_gpu(gpu)

    def set_gpu_isolation(self, gpu_id: str, mode: IsolationMode | None) -> None:
        """Change a GPU's static isolation mode (node relabelled); journaled like every mutation."""
        gpu = self._gpu(gpu_id)
        if self._open:
            old = gpu.isolation

            def undo() -> None:
                gpu.isolation = old
                self._sync_gpu(gpu)

            self._journal.append(undo)
        gpu.isolation = mode
        self._sync_gpu(gpu)

    def invalidate_views(self) -> None:
        """Rebuild the numpy views on next use: call after editing GPU/node fields directly."""
        self._arrays = None

    def set_node_ready(self, node: str, ok: bool) -> None:
        owner = self.nodes.get(node)
        if owner is None:
            raise StateError(f"unknown node {node!r}")
        self._save_node(owner)
        owner.heartbeat_ok = ok
        self._sync_node(owner)

    # --- helpers --------------------------------------------------------------------------------

    def _gpu(self, gpu_id: str) -> GPUState:
        gpu = self.gpus.get(gpu_id)
        if gpu is None:
            raise AllocationError(f"unknown GPU {gpu_id!r}")
        return gpu

    @staticmethod
    def _template_for(gpu: GPUState, req: AllocRequest, chosen: str | None) -> MigTemplate | None:
        if req.isolation is not IsolationMode.PARTITIONED:
            return None
        ident = chosen or req.partition_template
        if not ident:
            raise AllocationError(f"{req.uid}: partitioned allocation needs a partition template")
        template = gpu.template(ident)
        if template is None:
            raise AllocationError(f"{req.uid}: GPU {gpu.uid!r} ({gpu.model}) has no partition template {ident!r}")
        if len(gpu.partitions) >= gpu.max_partitions:
            raise AllocationError(f"{req.uid}: GPU {gpu.uid!r} already has {gpu.max_partitions} partitions")
        same = sum(1 for p in gpu.partitions.values() if p.template_id == template.id)
        if same >= template.max_instances:
            raise AllocationError(f"{req.uid}: GPU {gpu.uid!r} already has {same} {template.id} partitions")
        return template

    @staticmethod
    def _check_fits(gpu: GPUState, req: AllocRequest, take: Resource) -> None:
        if req.isolation is IsolationMode.SHARED:
            if gpu.available != gpu.baseline or gpu.baseline != gpu.capacity or gpu.partitions:
                raise AllocationError(f"{req.uid}: shared mode needs an idle GPU, {gpu.uid!r} is in use")
            return
        if gpu.available.tflops - take.tflops < -1e-9 or gpu.available.vram - take.vram < 0:
            raise AllocationError(f"{req.uid}: GPU {gpu.uid!r} has {gpu.available}, request takes {take}")

    @staticmethod
    def _free_slot(gpu: GPUState, template: MigTemplate) -> int | None:
        return first_free_slot(gpu, template)

    # --- reporting ------------------------------------------------------------------------------

    def capacity_report(self, pool: str | None = None, node: str | None = None) -> VirtualCapacity:
        """Physical and virtual capacity (semantics 2.6) of a pool, a node, or everything.

        Virtual available subtracts each allocation's limit **once, not × gpuCount** (TensorFusion quirk).
        """
        nodes = [
            n for n in self.nodes.values() if (pool is None or n.pool == pool) and (node is None or n.name == node)
        ]
        names = {n.name for n in nodes}
        gpus = [self.gpus[g] for n in nodes for g in n.gpus]
        cap_t = math.fsum(g.capacity.tflops for g in gpus)
        cap_v = sum(g.capacity.vram for g in gpus)
        av_t = math.fsum(g.available.tflops for g in gpus)
        av_v = sum(g.available.vram for g in gpus)
        over = self.pools[pool].oversubscription if pool is not None and pool in self.pools else None
        if node is not None and node in self.nodes:
            over = self.pool(self.nodes[node].pool).oversubscription
        if over is None:
            virt_t, virt_v = cap_t, float(cap_v)
        else:
            virt_t = cap_t * over.tflops_oversell_ratio / 100.0
            virt_v = (
                cap_v
                + sum(n.data_disk_bytes for n in nodes) * over.vram_expand_to_host_disk / 100.0
                + sum(n.ram_bytes for n in nodes) * over.vram_expand_to_host_mem / 100.0
            )
        allocs = [a for a in self.allocations.values() if a.node in names]
        lim_t = math.fsum(a.request.limit.tflops for a in allocs)
        lim_v = sum(a.request.limit.vram for a in allocs)
        return VirtualCapacity(cap_t, cap_v, av_t, av_v, virt_t, virt_v, virt_t - lim_t, virt_v - lim_v)

    def check_invariants(self) -> list[str]:
        """Accounting problems (empty when consistent): used by tests and the simulator's debug mode."""
        problems: list[str] = []
        for gpu in self.gpus.values():
            if gpu.available.tflops < -1e-9 or gpu.available.vram < 0:
                problems.append(f"{gpu.uid}: available {gpu.available} below zero")
            if gpu.available.tflops > gpu.capacity.tflops + 1e-9 or gpu.available.vram > gpu.capacity.vram:
                problems.append(f"{gpu.uid}: available {gpu.available} above capacity {gpu.capacity}")
            if gpu.available != _fold(gpu):
                problems.append(f"{gpu.uid}: available {gpu.available} differs from its allocations")
            for uid in gpu.takes:
                if uid not in self.allocations or gpu.uid not in self.allocations[uid].gpu_ids:
                    problems.append(f"{gpu.uid}: take by unknown allocation {uid!r}")
            used: set[int] = set()
            for uid, part in gpu.partitions.items():
                span = set(range(part.slot_start, part.slot_end))
                if span & used:
                    problems.append(f"{gpu.uid}: partition {uid} overlaps another")
                used |= span
        for node in self.nodes.values():
            count = sum(1 for a in self.allocations.values() if a.node == node.name)
            if count != node.workers:
                problems.append(f"{node.name}: workers {node.workers} but {count} allocations")
        return problems


def first_free_slot(gpu: GPUState, template: MigTemplate) -> int | None:
    """The first start in ``template.placement_starts`` whose slot range is free (semantics 2.7 Bind)."""
    occupied: set[int] = set()
    for part in gpu.partitions.values():
        occupied.update(range(part.slot_start, part.slot_end))
    limit = gpu.placement_slots or max((s + template.slots for s in template.placement_starts), default=0)
    for start in template.placement_starts:
        end = start + template.slots
        if end <= limit and not any(s in occupied for s in range(start, end)):
            return start
    return None


def states_equal(a: ClusterState, b: ClusterState) -> bool:
    """Same GPUs (available, partitions, locks, phases), nodes and allocations: for tests and what-ifs."""

    def gpu_key(g: GPUState) -> Any:
        return (g.available, dict(g.partitions), g.active_mode, g.phase, sorted(g.takes.items()))

    def node_key(n: NodeState) -> Any:
        return (n.cpu_used, n.memory_used, n.workers, n.heartbeat_ok)

    return (
        {k: gpu_key(g) for k, g in a.gpus.items()} == {k: gpu_key(g) for k, g in b.gpus.items()}
        and {k: node_key(n) for k, n in a.nodes.items()} == {k: node_key(n) for k, n in b.nodes.items()}
        and {k: (x.request, x.node, x.gpu_ids, x.partition_template, x.slot_start) for k, x in a.allocations.items()}
        == {k: (x.request, x.node, x.gpu_ids, x.partition_template, x.slot_start) for k, x in b.allocations.items()}
    )
