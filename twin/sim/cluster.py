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
    """The cluster and, per pool, its hardware profile."""
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
        price = pool.cost_per_gpu_hour if pool.cost_per_gpu_hour is not None else profile.cost_per_hour
        for i in range(pool.count):
            node = node_name(name, i)
            state.add_node(
                node,
                name,
                cpu_milli=int(round(pool.cpu_per_node * 1000)),
                memory=int(round(pool.memory_gib_per_node * GIB)),
                cost_per_hour=price * pool.gpus_per_node,
                ram_bytes=int(round(pool.host_ram_gib_per_node * GIB)),
                data_disk_bytes=int(round(pool.host_disk_gib_per_node * GIB)),
                labels={"tensor-fusion.ai/pool": name},
            )
            for j in range(pool.gpus_per_node):
                state.add_gpu(
                    node,
                    j,
                    model=profile.key,
                    vendor=profile.vendor,
                    capacity=profile.capacity,
                    isolation=pool.isolation,
                    templates=profile.mig_templates,
                    max_partitions=profile.max_partitions or DEFAULT_MAX_PARTITIONS,
                    placement_slots=profile.placement_slots,
                )
    return state, profiles
