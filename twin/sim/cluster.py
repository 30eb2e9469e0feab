"""Build the simulated cluster (twin.state.ClusterState) from a scenario's pools."""

from __future__ import annotations

from twin.cluster_desc import ClusterDescription, NodeSpec, Where, build_state
from twin.errors import TwinInputError
from twin.hardware import HardwareCatalog, HardwareProfile, default_catalog
from twin.resources import GIB, PlacementMode
from twin.scenario import PlacementConfig, Scenario
from twin.state import ClusterState, Oversubscription, PoolState

_MODES = {m.value: m for m in PlacementMode}


def pool_placement(scenario: Scenario, pool: str) -> PlacementConfig:
    """The placement config of a pool: its own, else the scenario's."""
    own = scenario.pools[pool].placement
    return own if own is not None else scenario.placement


def node_name(pool: str, index: int) -> str:
    """Nodes are named ``<pool>-<index>``; GPUs ``<node>-gpu<index>`` (twin.state's default)."""
    return f"{pool}-{index}"


def build_cluster(scenario: Scenario, catalog: HardwareCatalog) -> tuple[ClusterState, dict[str, HardwareProfile]]:
    """The cluster and, per pool, its (first node group's) hardware profile.

    A pool's nodes are its own ``count`` nodes, then each of its ``node_groups`` in order, named
    ``<pool>-<index>`` with one index across the groups; every GPU keeps its own model."""
    desc = describe(scenario, catalog)
    profiles: dict[str, HardwareProfile] = {}
    for name, pool in scenario.pools.items():
        try:
            profiles[name] = catalog.get(pool.hardware)
        except TwinInputError as err:
            raise TwinInputError(
                err.message, obj="scenario", field=f"pools.{name}.hardware", value=pool.hardware
            ) from err
    return build_state(desc, catalog), profiles


def describe(scenario: Scenario, catalog: HardwareCatalog | None = None) -> ClusterDescription:
    """The scenario's pools as the one cluster description (prices from ``catalog`` when given)."""
    pools: list[PoolState] = []
    nodes: list[NodeSpec] = []
    for name, pool in scenario.pools.items():
        placement = pool_placement(scenario, name)
        over = pool.oversubscription
        pools.append(
            PoolState(
                name=name,
                placement_mode=_MODES.get(placement.strategy, PlacementMode.NODE_COMPACT_GPU_LOW_LOAD),
                max_worker_per_node=pool.max_worker_per_node,
                default_isolation=pool.isolation,
                oversubscription=None
                if over is None
                else Oversubscription(
                    tflops_oversell_ratio=over.tflops_oversell_ratio,
                    vram_expand_to_host_mem=over.vram_expand_to_host_mem,
                    vram_expand_to_host_disk=over.vram_expand_to_host_disk,
                ),
                vram_weight=float(placement.params.get("vram_weight", 0.7)),
                tflops_weight=float(placement.params.get("tflops_weight", 0.3)),
            )
        )
        groups = [
            (
                pool.hardware,
                pool.count,
                pool.gpus_per_node,
                pool.cpu_per_node,
                pool.memory_gib_per_node,
                pool.cost_per_gpu_hour,
                Where(obj="scenario", field=f"pools.{name}.hardware"),
            )
        ]
        groups += [
            (
                g.hardware,
                g.count,
                g.gpus_per_node,
                g.cpu_per_node,
                g.memory_gib_per_node,
                g.cost_per_gpu_hour,
                Where(obj="scenario", field=f"pools.{name}.node_groups.{k}.hardware"),
            )
            for k, g in enumerate(pool.node_groups)
        ]
        i = 0
        for hardware, count, gpus, cpu, memory_gib, price, where in groups:
            for _ in range(count):
                nodes.append(
                    NodeSpec(
                        node_name(name, i),
                        name,
                        hardware,
                        gpus,
                        cpu_milli=int(round(cpu * 1000)),
                        memory=int(round(memory_gib * GIB)),
                        cost_per_hour=_price(hardware, price, catalog, where) * gpus,
                        ram_bytes=int(round(pool.host_ram_gib_per_node * GIB)),
                        data_disk_bytes=int(round(pool.host_disk_gib_per_node * GIB)),
                        labels={"tensor-fusion.ai/pool": name},
                        isolation=pool.isolation,
                        where=where,
                    )
                )
                i += 1
    return ClusterDescription(pools, nodes)


def _price(hardware: str, override: float | None, catalog: HardwareCatalog | None, where: Where) -> float:
    if override is not None:
        return override
    try:
        return (catalog or default_catalog()).get(hardware).cost_per_hour
    except TwinInputError as err:
        raise TwinInputError(err.message, obj=where.obj, field=where.field, value=hardware) from err
