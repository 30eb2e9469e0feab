"""The real backend: NVML through nvidia-ml-py. The only module of the project that imports ``pynvml``.

Error mapping (ecosystem 1.3):
* ``nvmlInit`` failing: LibraryNotFound / DriverNotLoaded / LibRmVersionMismatch / NoPermission,
  or no devices at all, becomes :class:`~live.backends.base.NoGpuError` with a human sentence;
* ``NotSupported`` and ``FunctionNotFound`` (driver older than the bindings) mark the field
  unsupported for that device, and the answer is cached so it is not asked again every tick;
* ``NotFound`` from the per-process utilisation query means "no new samples since last time";
* ``GpuIsLost`` turns the device's sample into ``health=lost`` and the device is not polled again.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

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

try:
    import pynvml
except ImportError:  # the extra is not installed; NvmlBackend() says so
    pynvml = None

T = TypeVar("T")

_MIG_NOT_IN_INSTANCE = 0xFFFFFFFF  # gpuInstanceId of a process on a non-MIG device
# Capability names used only for caching, not reported as sample fields.
_INTERNAL_FIELDS = frozenset({"name", "memory_total", "mig_mode", "mig_instances", "temperature_v"})


class _Lost(Exception):
    """Internal: the device raised GpuIsLost during this sample."""


class _Unsupported(Exception):
    """Internal: the field is NotSupported (or the function is missing) on this device."""


def _init_reason(err: Exception) -> str:
    assert pynvml is not None
    code = getattr(err, "value", None)
    return {
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: "library-not-found",
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED: "driver-not-loaded",
        pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH: "version-mismatch",
        pynvml.NVML_ERROR_NO_PERMISSION: "no-permission",
    }.get(code, f"nvmlInit failed: {err}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlBackend:
    """Reads the GPUs of this machine. Raises NoGpuError on construction when there are none."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        if pynvml is None:
            raise no_gpu("not-installed")
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as err:
            raise no_gpu(_init_reason(err), str(err)) from None
        self._clock = clock
        try:
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as err:
            pynvml.nvmlShutdown()
            raise no_gpu(_init_reason(err), str(err)) from None
        if count == 0:
            pynvml.nvmlShutdown()
            raise no_gpu("no-devices")
        self._handles: list[Any] = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self._uuids = [_text(pynvml.nvmlDeviceGetUUID(h)) for h in self._handles]
        self._unsupported: dict[str, set[str]] = {u: set() for u in self._uuids}
        self._lost: set[str] = set()
        self._last_process_ts: dict[str, int] = dict.fromkeys(self._uuids, 0)
        self._profile_names: dict[tuple[str, int], str] = {}
        self._device_cache: dict[str, DeviceInfo] = {}
        self._open = True

    # ------------------------------------------------------------------ helpers

    def _call(self, uuid: str, field: str, fn: Callable[..., T], *args: Any) -> T:
        """Call NVML for ``field`` of device ``uuid``; map its errors to the internal signals."""
        assert pynvml is not None
        if field in self._unsupported[uuid]:
            raise _Unsupported(field)
        try:
            return fn(*args)
        except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
            self._unsupported[uuid].add(field)
            raise _Unsupported(field) from None
        except pynvml.NVMLError_GpuIsLost:
            self._lost.add(uuid)
            raise _Lost(uuid) from None

    def _optional(self, uuid: str, field: str, fn: Callable[..., T], *args: Any) -> T | None:
        """Like :meth:`_call`, but an unsupported field or a transient NVML error reads as None."""
        assert pynvml is not None
        try:
            return self._call(uuid, field, fn, *args)
        except _Unsupported:
            return None
        except pynvml.NVMLError:
            return None  # transient (Unknown, Timeout): a missing reading this tick, not a capability gap

    # ------------------------------------------------------------------ GpuBackend

    def info(self) -> BackendInfo:
        assert pynvml is not None
        driver = nvml_version = ""
        try:
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
            nvml_version = _text(pynvml.nvmlSystemGetNVMLVersion())
        except pynvml.NVMLError:
            pass  # a header without versions is still a valid recording
        return BackendInfo(
            backend="nvml", driver_version=driver, nvml_version=nvml_version, hostname=socket.gethostname()
        )

    def devices(self) -> tuple[DeviceInfo, ...]:
        self._check_open()
        return tuple(self._device(i, h) for i, h in enumerate(self._handles))

    def _device(self, index: int, handle: Any) -> DeviceInfo:
        assert pynvml is not None
        uuid = self._uuids[index]
        cached = self._device_cache.get(uuid)
        if uuid in self._lost and cached is not None:
            return cached
        try:
            name = _text(self._call(uuid, "name", pynvml.nvmlDeviceGetName, handle))
            memory_total = int(self._call(uuid, "memory_total", pynvml.nvmlDeviceGetMemoryInfo, handle).total)
            mig: bool | None
            try:
                current, _pending = self._call(uuid, "mig_mode", pynvml.nvmlDeviceGetMigMode, handle)
                mig = current == pynvml.NVML_DEVICE_MIG_ENABLE
            except _Unsupported:
                mig = None
            instances = self._mig_instances(uuid, handle) if mig else ()
        except _Lost:
            return cached or DeviceInfo(index=index, uuid=uuid, name="", memory_total=0)
        info = DeviceInfo(
            index=index, uuid=uuid, name=name, memory_total=memory_total, mig_enabled=mig, mig_instances=instances
        )
        self._device_cache[uuid] = info
        return info

    def _mig_instances(self, uuid: str, handle: Any) -> tuple[MigInstance, ...]:
        assert pynvml is not None
        seen: dict[int, MigInstance] = {}
        count = self._call(uuid, "mig_instances", pynvml.nvmlDeviceGetMaxMigDeviceCount, handle)
        for slot in range(count):
            try:
                mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except pynvml.NVMLError_NotFound:
                continue  # an empty MIG slot, not an error
            gi_id = int(pynvml.nvmlDeviceGetGpuInstanceId(mig))
            if gi_id in seen:
                continue  # several compute instances share one GPU instance
            gi_info = pynvml.nvmlGpuInstanceGetInfo(pynvml.nvmlDeviceGetGpuInstanceById(handle, gi_id))
            seen[gi_id] = MigInstance(
                gpu_instance_id=gi_id,
                profile=self._profile_name(uuid, handle, int(gi_info.profileId)),
                placement_start=int(gi_info.placement.start),
                slices=int(gi_info.placement.size),
                memory_total=int(pynvml.nvmlDeviceGetMemoryInfo(mig).total),
                uuid=_text(pynvml.nvmlDeviceGetUUID(mig)),
            )
        return tuple(sorted(seen.values(), key=lambda i: i.placement_start))

    def _profile_name(self, uuid: str, handle: Any, profile_id: int) -> str:
        assert pynvml is not None
        key = (uuid, profile_id)
        if key not in self._profile_names:
            info = pynvml.nvmlDeviceGetGpuInstanceProfileInfoById(handle, profile_id)
            name = _text(info.name)
            self._profile_names[key] = name.removeprefix("MIG ").strip()
        return self._profile_names[key]

    def sample(self) -> NodeSample:
        self._check_open()
        t = self._clock() if self._clock is not None else time.monotonic()
        return NodeSample(t=float(t), devices=tuple(self._sample(i, h) for i, h in enumerate(self._handles)))

    def _sample(self, index: int, handle: Any) -> DeviceSample:
        assert pynvml is not None
        uuid = self._uuids[index]
        if uuid in self._lost:
            return DeviceSample(uuid=uuid, index=index, health=Health.LOST)
        try:
            mem = self._optional(uuid, "memory_used", pynvml.nvmlDeviceGetMemoryInfo, handle)
            util = self._optional(uuid, "utilization_gpu", pynvml.nvmlDeviceGetUtilizationRates, handle)
            sm = self._optional(uuid, "sm_clock_mhz", pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_SM)
            mclk = self._optional(uuid, "mem_clock_mhz", pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_MEM)
            power_mw = self._optional(uuid, "power_w", pynvml.nvmlDeviceGetPowerUsage, handle)
            temp = self._temperature(uuid, handle)
            processes = self._processes(uuid, handle)
        except _Lost:
            return DeviceSample(uuid=uuid, index=index, health=Health.LOST)
        unsupported = set(self._unsupported[uuid])
        if "utilization_gpu" in unsupported:
            unsupported.add("utilization_memory")
        return DeviceSample(
            uuid=uuid,
            index=index,
            memory_used=None if mem is None else int(mem.used),
            memory_total=None if mem is None else int(mem.total),
            utilization_gpu=None if util is None else float(util.gpu),
            utilization_memory=None if util is None else float(util.memory),
            sm_clock_mhz=None if sm is None else int(sm),
            mem_clock_mhz=None if mclk is None else int(mclk),
            power_w=None if power_mw is None else power_mw / 1000.0,  # NVML reports mW
            temperature_c=temp,
            processes=processes,
            unsupported=tuple(sorted(unsupported - _INTERNAL_FIELDS)),
        )

    def _temperature(self, uuid: str, handle: Any) -> float | None:
        assert pynvml is not None
        # nvmlDeviceGetTemperature is deprecated (removed in CUDA 14); older drivers lack the V form.
        value = self._optional(
            uuid, "temperature_v", pynvml.nvmlDeviceGetTemperatureV, handle, pynvml.NVML_TEMPERATURE_GPU
        )
        if value is None and "temperature_v" in self._unsupported[uuid]:
            value = self._optional(
                uuid, "temperature_c", pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU
            )
        return None if value is None else float(value)

    def _processes(self, uuid: str, handle: Any) -> tuple[ProcessSample, ...]:
        assert pynvml is not None
        procs = self._optional(uuid, "processes", pynvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
        sm_by_pid: dict[int, tuple[int, float]] = {}
        if "process_utilization" not in self._unsupported[uuid]:
            try:
                samples = self._call(
                    uuid,
                    "process_utilization",
                    pynvml.nvmlDeviceGetProcessUtilization,
                    handle,
                    self._last_process_ts[uuid],
                )
            except _Unsupported:
                samples = []
            except pynvml.NVMLError_NotFound:
                samples = []  # no samples since the last read: no activity, not a failure
            except pynvml.NVMLError:
                samples = []
            for s in samples:
                ts = int(s.timeStamp)
                self._last_process_ts[uuid] = max(self._last_process_ts[uuid], ts)
                previous = sm_by_pid.get(int(s.pid))
                if previous is None or ts >= previous[0]:
                    sm_by_pid[int(s.pid)] = (ts, float(s.smUtil))
        out = []
        for p in procs:
            gi = getattr(p, "gpuInstanceId", _MIG_NOT_IN_INSTANCE)
            used = p.usedGpuMemory
            sm = sm_by_pid.get(int(p.pid))
            out.append(
                ProcessSample(
                    pid=int(p.pid),
                    memory_used=None if used is None else int(used),
                    sm_util=None if sm is None else sm[1],
                    gpu_instance_id=None if gi in (None, _MIG_NOT_IN_INSTANCE) else int(gi),
                )
            )
        return tuple(sorted(out, key=lambda p: p.pid))

    def close(self) -> None:
        if self._open and pynvml is not None:
            self._open = False
            # Shutting down a driver that went away is not worth an error.
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()

    def _check_open(self) -> None:
        if not self._open:
            raise BackendError("the NVML backend is closed")


def nvml_available() -> bool:
    """True if NVML initialises and sees at least one device (used to skip GPU-only tests)."""
    try:
        backend = NvmlBackend()
    except Exception:
        return False
    backend.close()
    return True
