"""One cluster description and one builder: every ``ClusterState`` of the twin comes from here.

Scenarios (pools and node groups), the ``twin place`` cluster file, the openb node lists, the
fill-up protocol's prepared runs, the serving simulator's pools, the vertical study and the live
inventory each describe their cluster as pools plus :class:`NodeSpec` rows, and
:func:`build_state` turns that into a :class:`ClusterState`, looking each node's GPU model up in
the hardware catalogue once. A node of discovered, mixed or individually described devices (the
live inventory, a cluster file's ``gpus`` list) lists its GPUs one by one (:class:`GPUSpec`), with
their existing usage, phase, NUMA node and MIG partitions that already exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from twin.errors import TwinInputError
from twin.hardware import HardwareCatalog, HardwareProfile
from twin.resources import ZERO, AllocRequest, GPUPhase, IsolationMode, Resource
from twin.state import DEFAULT_MAX_PARTITIONS, TENSOR_FUSION, ClusterState, GPUState, PoolState, StateError


@dataclass(frozen=True)
class Where:
    """Where a node's hardware name (or a listed GPU) was written, for the errors it raises."""

    file: str | None = None
    obj: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class PartitionSpec:
    """A MIG partition that already exists on a GPU (allocated when the state is built)."""

    template: str
    namespace: str = "default"
    name: str = ""


@dataclass(frozen=True)
class GPUSpec:
    """One GPU given one by one (a node of mixed or discovered devices): its own profile and state."""

    index: int
    profile: HardwareProfile  # already resolved (a discovered device may match no catalogue entry)
    uid: str | None = None
    capacity: Resource | None = None  # None: the profile's
    isolation: IsolationMode | None = None  # None: the node's, then the pool's rules (static policy)
    phase: GPUPhase = GPUPhase.RUNNING
    used: Resource = ZERO  # taken by something the twin does not manage
    partitions: bool = True  # the profile's MIG templates
    used_by: str = TENSOR_FUSION
    numa: int = -1
    max_partitions: int | None = None  # None: the profile's
    existing: tuple[PartitionSpec, ...] = ()  # partitions carved before the twin starts
    where: Where | None = None  # set: a state error on this GPU is a TwinInputError located here


@dataclass(frozen=True)
class NodeSpec:
    """One node: its name, pool, host resources and ``gpus`` GPUs of one hardware profile."""

    name: str
    pool: str
    hardware: str  # a hw_profiles key or alias
    gpus: int
    cpu_milli: int = 0
    memory: int = 0
    cost_per_hour: float = 0.0
    ram_bytes: int = 0
    data_disk_bytes: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    isolation: IsolationMode | None = None
    gpu_capacity: Resource | None = None  # None: the profile's (the trace counts compute in milli-GPU)
    partitions: bool = True  # the profile's MIG templates and partition limits
    where: Where = Where()
    gpu_list: tuple[GPUSpec, ...] | None = None  # instead of ``gpus`` GPUs of ``hardware``
    nvlinks: tuple[tuple[int, int], ...] = ()  # NVLink-joined GPU index pairs
    ready: bool = True  # False: the hypervisor's heartbeat is lost (the node is filtered)


class LabelMatcher(Protocol):
    """A node label selector (``twin.spec.selectors.LabelSelector``)."""

    def matches(self, labels: Mapping[str, str]) -> bool: ...


@dataclass(frozen=True)
class IsolationRule:
    """``isolationModeRules``: nodes whose labels match take ``mode`` (the first matching rule wins)."""

    selector: LabelMatcher
    mode: IsolationMode


@dataclass(frozen=True)
class ClusterDescription:
    """Pools (in order) and nodes (in order: node and GPU order fix every placement tie-break).

    ``isolation_rules`` None: a GPU given no mode keeps none (each request brings its own, as the
    simulators want). A mapping (pool name -> rules, possibly none): TensorFusion's static
    isolation policy, so a GPU given no mode takes its node's first matching rule, else its pool's
    ``default_isolation`` (pools with ``dynamic_isolation`` leave it unset)."""

    pools: Sequence[PoolState]
    nodes: Sequence[NodeSpec]
    isolation_rules: Mapping[str, Sequence[IsolationRule]] | None = None


def build_state(desc: ClusterDescription, catalog: HardwareCatalog) -> ClusterState:
    """The described cluster; an unknown hardware name raises :class:`TwinInputError` where it was written."""
    state = ClusterState()
    for pool in desc.pools:
        state.add_pool(pool)
    profiles: dict[str, HardwareProfile] = {}
    for node in desc.nodes:
        if node.gpu_list is not None:
            _add_listed(state, node, node.gpu_list, desc.isolation_rules)
        else:
            profile = profiles.get(node.hardware)
            if profile is None:
                try:
                    profile = profiles[node.hardware] = catalog.get(node.hardware)
                except TwinInputError as err:
                    w = node.where
                    raise TwinInputError(
                        err.message, file=w.file, obj=w.obj, field=w.field, value=node.hardware
                    ) from err
            _add_node(state, node)
            _add_uniform(state, node, profile, _static_isolation(state, node, desc.isolation_rules))
        if node.nvlinks:
            uid_of = {state.gpus[g].index: g for g in state.nodes[node.name].gpus}
            for a, b in node.nvlinks:
                state.add_nvlink(uid_of[a], uid_of[b])
        if not node.ready:
            state.set_node_ready(node.name, False)
    return state


def _static_isolation(
    state: ClusterState, node: NodeSpec, rules: Mapping[str, Sequence[IsolationRule]] | None
) -> IsolationMode | None:
    """The mode a GPU of ``node`` given none gets: the node's, else (static policy) the pool's rules."""
    if node.isolation is not None or rules is None:
        return node.isolation
    pool = state.pool(node.pool)
    if pool.dynamic_isolation:
        return None
    matched = next((r.mode for r in rules.get(pool.name, ()) if r.selector.matches(node.labels)), None)
    return matched or pool.default_isolation


def _add_node(state: ClusterState, node: NodeSpec) -> None:
    """The node row itself (its GPUs are added by the caller: from a profile or from a GPU list)."""
    state.add_node(
        node.name,
        node.pool,
        cpu_milli=node.cpu_milli,
        memory=node.memory,
        cost_per_hour=node.cost_per_hour,
        ram_bytes=node.ram_bytes,
        data_disk_bytes=node.data_disk_bytes,
        labels=dict(node.labels) if node.labels else None,
    )


def _add_uniform(
    state: ClusterState, node: NodeSpec, profile: HardwareProfile, isolation: IsolationMode | None
) -> None:
    capacity = node.gpu_capacity or profile.capacity
    for j in range(node.gpus):
        if node.partitions:
            state.add_gpu(
                node.name,
                j,
                model=profile.key,
                vendor=profile.vendor,
                capacity=capacity,
                isolation=isolation,
                templates=profile.mig_templates,
                max_partitions=profile.max_partitions or DEFAULT_MAX_PARTITIONS,
                placement_slots=profile.placement_slots,
            )
        else:
            state.add_gpu(
                node.name, j, model=profile.key, vendor=profile.vendor, capacity=capacity, isolation=isolation
            )


def _add_listed(
    state: ClusterState,
    node: NodeSpec,
    gpus: tuple[GPUSpec, ...],
    rules: Mapping[str, Sequence[IsolationRule]] | None,
) -> None:
    _add_node(state, node)
    fallback = _static_isolation(state, node, rules)
    for g in gpus:
        p = g.profile
        try:
            created = state.add_gpu(
                node.name,
                g.index,
                uid=g.uid,
                model=p.key,
                vendor=p.vendor,
                capacity=g.capacity or p.capacity,
                isolation=g.isolation or fallback,
                phase=g.phase,
                used_by=g.used_by,
                numa=g.numa,
                templates=p.mig_templates if g.partitions else (),
                max_partitions=p.max_partitions if g.max_partitions is None else g.max_partitions,
                placement_slots=p.placement_slots,
                used=g.used,
            )
        except StateError as err:
            if g.where is None:
                raise
            raise _located(g.where, str(err), g.where.field, g.index) from None
        if g.existing:
            _carve(state, node, g, created)


def _carve(state: ClusterState, node: NodeSpec, g: GPUSpec, gpu: GPUState) -> None:
    """Allocate the partitions that already exist on GPU ``g`` (as TensorFusion finds them)."""
    where = g.where or Where()
    base = where.field or gpu.uid
    for p, part in enumerate(g.existing):
        if gpu.template(part.template) is None:
            known = ", ".join(t.name for t in g.profile.mig_templates) or "none"
            raise _located(
                where,
                f"unknown partition template for {g.profile.key}; known: {known}",
                f"{base}.partitions[{p}].template",
                part.template,
            )
        req = AllocRequest(
            uid=f"existing/{gpu.uid}/{p}",
            namespace=part.namespace,
            name=part.name or f"existing-{gpu.uid}-{p}",
            pool=node.pool,
            isolation=IsolationMode.PARTITIONED,
            partition_template=part.template,
        )
        try:
            state.allocate(req, node.name, [gpu.uid], part.template)
        except StateError as err:
            raise _located(where, str(err), f"{base}.partitions[{p}]", part.template) from None


def _located(where: Where, message: str, field: str | None, value: object) -> TwinInputError:
    return TwinInputError(message, file=where.file, obj=where.obj, field=field, value=value)
