"""Build the simulated cluster (twin.state.ClusterState) from a scenario's pools."""

from __future__ import annotations

from twin.errors import TwinInputError
from twin.hardware import HardwareCatalog, HardwareProfile
from twin.resources import GIB, PlacementMode
from twin.scenario import PlacementConfig, Scenario
from twin.state import DEFAULT_MAX_PARTITIONS, ClusterState, Oversubscription, PoolState

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
    state = ClusterState()
    profiles: dict[str, HardwareProfile] = {}
    for name, pool in scenario.pools.items():
        try:
            profile = catalog.get(pool.hardware)
        except TwinInputError as err:
            raise TwinInputError(
                err.message, obj="scenario", field=f"pools.{name}.hardware", value=pool.hardware
            ) from err
        profiles[name] = profile
        placement = pool_placement(scenario, name)
        vram_weight = float(placement.params.get("vram_weight", 0.7))
        tflops_weight = float(placement.params.get("tflops_weight", 0.3))
        over = pool.oversubscription
        state.add_pool(
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
                vram_weight=vram_weight,
                tflops_weight=tflops_weight,
            )
        )
        groups = [
            (
                profile,
                pool.count,
                pool.gpus_per_node,
                pool.cpu_per_node,
                pool.memory_gib_per_node,
                pool.cost_per_gpu_hour,
            )
        ]
        for k, g in enumerate(pool.node_groups):
            try:
                group_profile = catalog.get(g.hardware)
            except TwinInputError as err:
                raise TwinInputError(
                    err.message, obj="scenario", field=f"pools.{name}.node_groups.{k}.hardware", value=g.hardware
                ) from err
            groups.append(
                (group_profile, g.count, g.gpus_per_node, g.cpu_per_node, g.memory_gib_per_node, g.cost_per_gpu_hour)
            )
        i = 0
        for hw, count, gpus, cpu, memory_gib, price_override in groups:
            price = price_override if price_override is not None else hw.cost_per_hour
            for _ in range(count):
                node = node_name(name, i)
                i += 1
                state.add_node(
                    node,
                    name,
                    cpu_milli=int(round(cpu * 1000)),
                    memory=int(round(memory_gib * GIB)),
                    cost_per_hour=price * gpus,
                    ram_bytes=int(round(pool.host_ram_gib_per_node * GIB)),
                    data_disk_bytes=int(round(pool.host_disk_gib_per_node * GIB)),
                    labels={"tensor-fusion.ai/pool": name},
                )
                for j in range(gpus):
                    state.add_gpu(
                        node,
                        j,
                        model=hw.key,
                        vendor=hw.vendor,
                        capacity=hw.capacity,
                        isolation=pool.isolation,
                        templates=hw.mig_templates,
                        max_partitions=hw.max_partitions or DEFAULT_MAX_PARTITIONS,
                        placement_slots=hw.placement_slots,
                    )
    return state, profiles
