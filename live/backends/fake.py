"""An in-memory, scriptable GPU node: devices, processes, MIG instances and faults.

Tests and demos drive it by hand (``set_usage``, ``add_process``, ``advance``) and read it through
the same :class:`~live.backends.base.GpuBackend` interface as the real NVML backend.

It imitates what NVML does where our policies care:
* MIG follows the device's hardware profile (``hw_profiles/``): a profile exists on the model,
  at most ``max_instances`` of it, it starts at one of its ``placement_starts`` and takes ``slots``
  consecutive free slots; enabling MIG needs an idle device, disabling it needs no instances.
* with MIG enabled, device and per-process utilisation are NotSupported (NVML's documented gap);
* a lost device (GpuIsLost) reports ``health=lost`` and no numbers;
* ``driver_missing`` makes construction fail like ``nvmlInit`` does (LibraryNotFound / DriverNotLoaded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from live.backends.base import (
    BackendError,
    BackendInfo,
    DeviceInfo,
    DeviceSample,
    Health,
    MigInstance,
    NodeSample,
    ProcessSample,
    no_gpu,
)
from twin.hardware import HardwareProfile, MigTemplate, default_catalog
from twin.resources import GIB


class MigError(BackendError):
    """A MIG request NVML would refuse (InvalidArgument, InUse, InsufficientResources, NotSupported)."""


@dataclass
class _Process:
    pid: int
    memory_used: int | None
    sm_util: float | None
    gpu_instance_id: int | None


@dataclass
class _Gpu:
    index: int
    uuid: str
    name: str
    memory_total: int
    profile: HardwareProfile | None
    mig_enabled: bool | None
    utilization_gpu: float = 0.0
    utilization_memory: float = 0.0
    sm_clock_mhz: int = 1410
    mem_clock_mhz: int = 1593
    power_w: float = 60.0
    temperature_c: float = 32.0
    processes: dict[int, _Process] = field(default_factory=dict)
    instances: list[MigInstance] = field(default_factory=list)
    lost: bool = False
    unsupported: set[str] = field(default_factory=set)


def fake_uuid(hostname: str, index: int) -> str:
    """A stable, realistic-looking device UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."""
    h = hashlib.sha256(f"{hostname}/{index}".encode()).hexdigest()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class ManualClock:
    """A clock that moves only when told to: deterministic time for fakes and replays."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> float:
        if dt < 0:
            raise ValueError(f"time cannot go backwards (advance by {dt})")
        self.now += dt
        return self.now


class FakeBackend:
    """A fake node. ``clock`` defaults to a :class:`ManualClock` at 0 (see :meth:`advance`)."""

    def __init__(
        self,
        *,
        hostname: str = "fake-node",
        clock: Callable[[], float] | None = None,
        driver_missing: str | None = None,
        driver_version: str = "550.54.15",
    ) -> None:
        if driver_missing is not None:
            raise no_gpu(driver_missing, "fake backend")
        self.hostname = hostname
        self._manual: ManualClock | None = None
        if clock is None:
            self._manual = ManualClock()
            clock = self._manual
        self._clock: Callable[[], float] = clock
        self._driver_version = driver_version
        self._gpus: list[_Gpu] = []
        self._closed = False

    # ------------------------------------------------------------------ scripting

    def add_gpu(self, name: str, *, memory_total: int | None = None, uuid: str | None = None) -> str:
        """Add a device named as NVML would name it; memory defaults to the matching hardware profile."""
        profile = default_catalog().match_nvml_name(name)
        if memory_total is None:
            if profile is None:
                raise ValueError(f"unknown GPU name {name!r}: give memory_total")
            memory_total = profile.vram_bytes
        index = len(self._gpus)
        gpu = _Gpu(
            index=index,
            uuid=uuid or fake_uuid(self.hostname, index),
            name=name,
            memory_total=memory_total,
            profile=profile,
            mig_enabled=False if profile is not None and profile.mig_templates else None,
        )
        self._gpus.append(gpu)
        return gpu.uuid

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def advance(self, dt: float) -> float:
        if self._manual is None:
            raise ValueError("this fake uses an external clock; advance that clock instead")
        return self._manual.advance(dt)

    def set_usage(
        self,
        uuid: str,
        *,
        utilization_gpu: float | None = None,
        utilization_memory: float | None = None,
        sm_clock_mhz: int | None = None,
        mem_clock_mhz: int | None = None,
        power_w: float | None = None,
        temperature_c: float | None = None,
    ) -> None:
        gpu = self._gpu(uuid)
        for name, value in (
            ("utilization_gpu", utilization_gpu),
            ("utilization_memory", utilization_memory),
            ("sm_clock_mhz", sm_clock_mhz),
            ("mem_clock_mhz", mem_clock_mhz),
            ("power_w", power_w),
            ("temperature_c", temperature_c),
        ):
            if value is not None:
                setattr(gpu, name, value)

    def add_process(
        self,
        uuid: str,
        pid: int,
        memory_used: int | None,
        *,
        sm_util: float | None = None,
        gpu_instance_id: int | None = None,
    ) -> None:
        gpu = self._gpu(uuid)
        if gpu.mig_enabled:
            if gpu_instance_id is None or all(i.gpu_instance_id != gpu_instance_id for i in gpu.instances):
                raise MigError(f"{uuid}: a process on a MIG device must run in an existing GPU instance")
        elif gpu_instance_id is not None:
            raise MigError(f"{uuid}: MIG is not enabled, so a process has no GPU instance")
        gpu.processes[pid] = _Process(pid, memory_used, sm_util, gpu_instance_id)

    def set_process(self, uuid: str, pid: int, *, memory_used: int | None = None, sm_util: float | None = None) -> None:
        proc = self._gpu(uuid).processes[pid]
        if memory_used is not None:
            proc.memory_used = memory_used
        if sm_util is not None:
            proc.sm_util = sm_util

    def remove_process(self, uuid: str, pid: int) -> None:
        self._gpu(uuid).processes.pop(pid, None)

    def lose(self, uuid: str) -> None:
        """The device falls off the bus (NVML GpuIsLost from now on)."""
        self._gpu(uuid).lost = True

    def mark_unsupported(self, uuid: str, *fields: str) -> None:
        """These fields raise NotSupported on this device from now on (e.g. power on some boards)."""
        self._gpu(uuid).unsupported.update(fields)

    def set_mig_mode(self, uuid: str, enabled: bool) -> None:
        gpu = self._gpu(uuid)
        if gpu.mig_enabled is None:
            raise MigError(f"{uuid} ({gpu.name}) does not support MIG (NVML NotSupported)")
        if enabled and gpu.processes:
            raise MigError(f"{uuid}: cannot enable MIG while processes run on the device (NVML InUse)")
        if not enabled and gpu.instances:
            raise MigError(f"{uuid}: destroy the {len(gpu.instances)} MIG instances before disabling MIG (NVML InUse)")
        gpu.mig_enabled = enabled

    def create_instance(self, uuid: str, profile: str, placement_start: int | None = None) -> MigInstance:
        """Create a GPU instance like ``nvmlDeviceCreateGpuInstance[WithPlacement]``.

        Without a placement, the lowest free valid start slot is taken (a documented tie-break;
        the real driver's choice is not specified).
        """
        gpu = self._gpu(uuid)
        if not gpu.mig_enabled or gpu.profile is None:
            raise MigError(f"{uuid}: MIG mode is not enabled (NVML InvalidArgument)")
        template = gpu.profile.template(profile)
        if template is None:
            names = ", ".join(t.name for t in gpu.profile.mig_templates)
            raise MigError(f"{uuid}: {gpu.name} has no MIG profile {profile!r}; it has {names}")
        same = sum(1 for i in gpu.instances if i.profile == template.name)
        if same >= template.max_instances:
            raise MigError(
                f"{uuid}: at most {template.max_instances} instances of {template.name} (NVML InsufficientResources)"
            )
        starts = template.placement_starts if placement_start is None else (placement_start,)
        if placement_start is not None and placement_start not in template.placement_starts:
            raise MigError(
                f"{uuid}: {template.name} may start at slots {list(template.placement_starts)}, "
                f"not {placement_start} (NVML InvalidArgument)"
            )
        start = next((s for s in starts if self._slots_free(gpu, s, template)), None)
        if start is None:
            raise MigError(f"{uuid}: no free placement for {template.name} (NVML InsufficientResources)")
        gi_id = min(set(range(1, 64)) - {i.gpu_instance_id for i in gpu.instances})
        instance = MigInstance(
            gpu_instance_id=gi_id,
            profile=template.name,
            placement_start=start,
            slices=template.slots,
            memory_total=int(round(template.memory_gib * GIB)),
            uuid="MIG-" + fake_uuid(uuid, gi_id)[4:],
        )
        gpu.instances.append(instance)
        gpu.instances.sort(key=lambda i: i.placement_start)
        return instance

    def destroy_instance(self, uuid: str, gpu_instance_id: int) -> None:
        gpu = self._gpu(uuid)
        if any(p.gpu_instance_id == gpu_instance_id for p in gpu.processes.values()):
            raise MigError(f"{uuid}: GPU instance {gpu_instance_id} is in use (NVML InUse)")
        before = len(gpu.instances)
        gpu.instances = [i for i in gpu.instances if i.gpu_instance_id != gpu_instance_id]
        if len(gpu.instances) == before:
            raise MigError(f"{uuid}: no GPU instance {gpu_instance_id} (NVML NotFound)")

    @staticmethod
    def _slots_free(gpu: _Gpu, start: int, template: MigTemplate) -> bool:
        assert gpu.profile is not None
        end = start + template.slots
        if end > gpu.profile.placement_slots:
            return False
        return all(end <= i.placement_start or start >= i.placement_start + i.slices for i in gpu.instances)

    def _gpu(self, uuid: str) -> _Gpu:
        for gpu in self._gpus:
            if gpu.uuid == uuid:
                return gpu
        raise KeyError(f"no fake GPU {uuid}; known: {[g.uuid for g in self._gpus]}")

    # ------------------------------------------------------------------ GpuBackend

    def info(self) -> BackendInfo:
        return BackendInfo(
            backend="fake", driver_version=self._driver_version, nvml_version="12.550.54.15", hostname=self.hostname
        )

    def devices(self) -> tuple[DeviceInfo, ...]:
        self._check_open()
        return tuple(
            DeviceInfo(
                index=g.index,
                uuid=g.uuid,
                name=g.name,
                memory_total=g.memory_total,
                mig_enabled=g.mig_enabled,
                mig_instances=tuple(g.instances) if g.mig_enabled else (),
            )
            for g in self._gpus
        )

    def sample(self) -> NodeSample:
        self._check_open()
        return NodeSample(t=float(self._clock()), devices=tuple(self._sample(g) for g in self._gpus))

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("the fake backend is closed")

    @staticmethod
    def _sample(gpu: _Gpu) -> DeviceSample:
        if gpu.lost:
            return DeviceSample(uuid=gpu.uuid, index=gpu.index, health=Health.LOST)
        unsupported = set(gpu.unsupported)
        if gpu.mig_enabled:
            unsupported.update(("process_utilization", "utilization_gpu", "utilization_memory"))

        def value(name: str) -> float | int | None:
            return None if name in unsupported else getattr(gpu, name)

        per_process_util = "process_utilization" not in unsupported
        processes = tuple(
            ProcessSample(
                pid=p.pid,
                memory_used=p.memory_used,
                sm_util=p.sm_util if per_process_util else None,
                gpu_instance_id=p.gpu_instance_id,
            )
            for p in sorted(gpu.processes.values(), key=lambda p: p.pid)
        )
        used = sum(p.memory_used or 0 for p in gpu.processes.values())
        util_gpu = value("utilization_gpu")
        util_mem = value("utilization_memory")
        sm_clock = value("sm_clock_mhz")
        mem_clock = value("mem_clock_mhz")
        power = value("power_w")
        temp = value("temperature_c")
        return DeviceSample(
            uuid=gpu.uuid,
            index=gpu.index,
            memory_used=None if "memory_used" in unsupported else used,
            memory_total=gpu.memory_total,
            utilization_gpu=None if util_gpu is None else float(util_gpu),
            utilization_memory=None if util_mem is None else float(util_mem),
            sm_clock_mhz=None if sm_clock is None else int(sm_clock),
            mem_clock_mhz=None if mem_clock is None else int(mem_clock),
            power_w=None if power is None else float(power),
            temperature_c=None if temp is None else float(temp),
            processes=processes,
            unsupported=tuple(sorted(unsupported)),
        )


def demo_node(clock: Callable[[], float] | None = None, hostname: str = "demo-node") -> FakeBackend:
    """Two H100s and an A100 with a few processes: what ``--backend fake`` shows."""
    fake = FakeBackend(hostname=hostname, clock=clock)
    h0 = fake.add_gpu("NVIDIA H100 80GB HBM3")
    h1 = fake.add_gpu("NVIDIA H100 80GB HBM3")
    a0 = fake.add_gpu("NVIDIA A100-SXM4-80GB")
    fake.set_usage(h0, utilization_gpu=62, utilization_memory=35, power_w=410, temperature_c=58)
    fake.add_process(h0, 4101, 30 * GIB, sm_util=40)
    fake.add_process(h0, 4102, 12 * GIB, sm_util=22)
    fake.set_usage(h1, utilization_gpu=5, utilization_memory=2, power_w=90, temperature_c=36)
    fake.add_process(h1, 4201, 6 * GIB, sm_util=5)
    fake.set_mig_mode(a0, True)
    inst = fake.create_instance(a0, "3g.40gb")
    fake.create_instance(a0, "1g.10gb")
    fake.add_process(a0, 4301, 20 * GIB, gpu_instance_id=inst.gpu_instance_id)
    fake.set_usage(a0, power_w=180, temperature_c=44)
    return fake


def fake_from_names(names: Iterable[str], hostname: str = "fake-node") -> FakeBackend:
    """A fake with one idle device per NVML name (for quick tests and ``--backend fake``)."""
    fake = FakeBackend(hostname=hostname)
    for name in names:
        fake.add_gpu(name)
    return fake
