"""One cluster description and one builder: every simulator's ``ClusterState`` comes from here.

Scenarios (pools and node groups), the openb node lists, the fill-up protocol's prepared runs,
the serving simulator's pools and the vertical study each describe their cluster as pools plus
:class:`NodeSpec` rows, and :func:`build_state` turns that into a :class:`ClusterState`, looking
each node's GPU model up in the hardware catalogue once. A node of discovered or mixed devices (the
live inventory) lists its GPUs one by one (:class:`GPUSpec`). (The ``twin place`` cluster file, with
per-GPU validation, NVLink and existing partitions, still builds its own.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from twin.errors import TwinInputError
from twin.hardware import HardwareCatalog, HardwareProfile
from twin.resources import ZERO, GPUPhase, IsolationMode, Resource
from twin.state import DEFAULT_MAX_PARTITIONS, ClusterState, PoolState


@dataclass(frozen=True)
class Where:
    """Where a node's hardware name was written, for the error an unknown name raises."""

    file: str | None = None
    obj: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class GPUSpec:
    """One GPU given one by one (a node of mixed or discovered devices): its own profile and state."""

    index: int
    profile: HardwareProfile  # already resolved (a discovered device may match no catalogue entry)
    uid: str | None = None
    capacity: Resource | None = None  # None: the profile's
    isolation: IsolationMode | None = None
    phase: GPUPhase = GPUPhase.RUNNING
    used: Resource = ZERO  # taken by something the twin does not manage
    partitions: bool = True


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


@dataclass(frozen=True)
class ClusterDescription:
    """Pools (in order) and nodes (in order: node and GPU order fix every placement tie-break)."""

    pools: Sequence[PoolState]
    nodes: Sequence[NodeSpec]


def build_state(desc: ClusterDescription, catalog: HardwareCatalog) -> ClusterState:
    """The described cluster; an unknown hardware name raises :class:`TwinInputError` where it was written."""
    state = ClusterState()
    for pool in desc.pools:
        state.add_pool(pool)
    profiles: dict[str, HardwareProfile] = {}
    for node in desc.nodes:
        if node.gpu_list is not None:
            _add_listed(state, node, node.gpu_list)
            continue
        profile = profiles.get(node.hardware)
        if profile is None:
            try:
                profile = profiles[node.hardware] = catalog.get(node.hardware)
            except TwinInputError as err:
                w = node.where
                raise TwinInputError(err.message, file=w.file, obj=w.obj, field=w.field, value=node.hardware) from err
        _add_node(state, node)
        capacity = node.gpu_capacity or profile.capacity
        for j in range(node.gpus):
            if node.partitions:
                state.add_gpu(
                    node.name,
                    j,
                    model=profile.key,
                    vendor=profile.vendor,
                    capacity=capacity,
                    isolation=node.isolation,
                    templates=profile.mig_templates,
                    max_partitions=profile.max_partitions or DEFAULT_MAX_PARTITIONS,
                    placement_slots=profile.placement_slots,
                )
            else:
                state.add_gpu(
                    node.name, j, model=profile.key, vendor=profile.vendor, capacity=capacity, isolation=node.isolation
                )
    return state


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


def _add_listed(state: ClusterState, node: NodeSpec, gpus: tuple[GPUSpec, ...]) -> None:
    _add_node(state, node)
    for g in gpus:
        p = g.profile
        state.add_gpu(
            node.name,
            g.index,
            uid=g.uid,
            model=p.key,
            vendor=p.vendor,
            capacity=g.capacity or p.capacity,
            isolation=g.isolation,
            phase=g.phase,
            templates=p.mig_templates if g.partitions else (),
            max_partitions=p.max_partitions,
            placement_slots=p.placement_slots,
            used=g.used,
        )
