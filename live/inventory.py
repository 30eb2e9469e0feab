"""Devices seen through a backend become GPUs of the twin's ClusterState.

Each device is matched to a hardware profile by its NVML name
(``twin.hardware.default_catalog().match_nvml_name``). The profile gives the dense FP16 TFLOPs and
the MIG templates; VRAM is taken from NVML, which is what the device really has (profiles carry
nominal GiB). A model the catalogue does not know gets a warning and a profile built from NVML:
its VRAM, and ``UNKNOWN_MODEL_TFLOPS`` TFLOPs unless the caller gives the real number, so that
compute-percent requests still work (1 TFLOP then reads as 1 % of the device).

GPU ids in the state are the device UUIDs, as in TensorFusion (the GPU CR's name is the UUID).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from live.backends.base import DeviceInfo, Health, NodeSample
from twin.cluster_desc import ClusterDescription, GPUSpec, NodeSpec
from twin.cluster_desc import build_state as build_described
from twin.hardware import HardwareCatalog, HardwareProfile, default_catalog
from twin.resources import GPUPhase, IsolationMode, Resource
from twin.state import ClusterState, PoolState

log = logging.getLogger(__name__)

UNKNOWN_MODEL_TFLOPS = 100.0
DEFAULT_POOL = "local"


@dataclass(frozen=True, slots=True)
class InventoryGpu:
    """One device, with the profile it matched (``known=False``: built from NVML)."""

    device: DeviceInfo
    profile: HardwareProfile
    known: bool

    @property
    def uuid(self) -> str:
        return self.device.uuid

    @property
    def capacity(self) -> Resource:
        return Resource(tflops=self.profile.fp16_tflops, vram=self.device.memory_total)


@dataclass(frozen=True, slots=True)
class Inventory:
    node: str
    pool: str
    gpus: tuple[InventoryGpu, ...]
    warnings: tuple[str, ...] = ()

    def gpu(self, uuid: str) -> InventoryGpu | None:
        return next((g for g in self.gpus if g.uuid == uuid), None)

    def by_index(self) -> dict[int, InventoryGpu]:
        return {g.device.index: g for g in self.gpus}


def _key_from_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name.removeprefix("NVIDIA ")).strip("_") or "unknown"


def profile_from_nvml(device: DeviceInfo, tflops: float | None = None) -> HardwareProfile:
    """A stand-in profile for a model the catalogue does not know, from what NVML reports."""
    return HardwareProfile(
        key=_key_from_name(device.name),
        nvml_name=device.name,
        vendor="NVIDIA",
        fp16_tflops=tflops if tflops is not None else UNKNOWN_MODEL_TFLOPS,
        vram_bytes=device.memory_total,
        mem_bandwidth_gbps=0.0,
        cost_per_hour=0.0,
        max_partitions=0,
        placement_slots=0,
        mig_templates=(),
        aliases=(),
        notes="built by the live bridge from NVML; not in hw_profiles/",
    )


def build_inventory(
    devices: Sequence[DeviceInfo],
    *,
    node: str,
    pool: str = DEFAULT_POOL,
    catalog: HardwareCatalog | None = None,
    tflops_overrides: Mapping[str, float] | None = None,
) -> Inventory:
    """Match every device to a profile. ``tflops_overrides`` maps an NVML name to its real TFLOPs."""
    cat = catalog if catalog is not None else default_catalog()
    overrides = dict(tflops_overrides or {})
    gpus: list[InventoryGpu] = []
    warnings: list[str] = []
    for dev in sorted(devices, key=lambda d: d.index):
        if dev.memory_total <= 0:
            # NVML lost the device before it could be identified: nothing to book on it.
            message = f"GPU {dev.index} ({dev.uuid}) was lost before it could be identified; left out"
            log.warning("%s", message)
            warnings.append(message)
            continue
        profile = cat.match_nvml_name(dev.name) if dev.name else None
        if profile is not None:
            gpus.append(InventoryGpu(dev, profile, known=True))
            continue
        given = overrides.get(dev.name)
        message = (
            f"GPU {dev.index} ({dev.uuid}): model {dev.name!r} is not in hw_profiles/; using "
            + (
                f"{given} TFLOPs from the workers file"
                if given is not None
                else f"{UNKNOWN_MODEL_TFLOPS:g} TFLOPs (so 1 TFLOP = 1 %), give the real value under tflops: in the "
                "workers file"
            )
            + f" and {dev.memory_total} bytes of VRAM from NVML"
        )
        log.warning("%s", message)
        warnings.append(message)
        gpus.append(InventoryGpu(dev, profile_from_nvml(dev, given), known=False))
    return Inventory(node=node, pool=pool, gpus=tuple(gpus), warnings=tuple(warnings))


def to_cluster_state(
    inventory: Inventory,
    *,
    sample: NodeSample | None = None,
    external_vram: Mapping[str, int] | None = None,
    isolation: IsolationMode | None = None,
    pool: PoolState | None = None,
) -> ClusterState:
    """A ClusterState with one node holding the inventory's GPUs.

    ``external_vram`` (uuid -> bytes) is memory used by processes that belong to no known worker:
    it lowers what the twin can hand out, as the hypervisor's discovery does. GPUs reported lost in
    ``sample`` are added in phase Unknown, so no placement picks them.
    """
    external = dict(external_vram or {})
    gpus: list[GPUSpec] = []
    for g in inventory.gpus:
        lost = False
        if sample is not None:
            s = sample.device(g.uuid)
            lost = s is not None and s.health is Health.LOST
        used = min(external.get(g.uuid, 0), g.device.memory_total)
        gpus.append(
            GPUSpec(
                g.device.index,
                g.profile,
                uid=g.uuid,
                capacity=g.capacity,
                # A MIG-enabled device only runs work inside its instances: partitioned requests only.
                isolation=IsolationMode.PARTITIONED if g.device.mig_enabled else isolation,
                phase=GPUPhase.UNKNOWN if lost else GPUPhase.RUNNING,
                used=Resource(vram=used),
                partitions=bool(g.device.mig_enabled),
            )
        )
    pool_state = pool if pool is not None else PoolState(inventory.pool, default_isolation=IsolationMode.SOFT)
    node = NodeSpec(inventory.node, inventory.pool, "", 0, gpu_list=tuple(gpus))
    return build_described(ClusterDescription([pool_state], [node]), default_catalog())
