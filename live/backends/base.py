"""The GpuBackend protocol and the plain data it speaks (never NVML's own structs).

A backend answers two questions: which devices are here (:meth:`GpuBackend.devices`) and what
are they doing now (:meth:`GpuBackend.sample`). Everything it returns is a frozen dataclass, so the
recorder can write it as JSON and the replay backend can read it back bit for bit.

Conventions:
* memory in bytes, utilisation in percent 0-100, clocks in MHz, power in W, temperature in °C;
* a reading the device cannot give (NVML ``NotSupported``) is ``None`` and its field name is
  listed in ``DeviceSample.unsupported``, so a capability gap is visible, not silently zero;
* a device that fell off the bus is reported with ``health=LOST``; sampling never raises for it;
* no usable driver raises :class:`NoGpuError` with a sentence a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from twin.errors import TwinEnvironmentError


class Health(StrEnum):
    OK = "ok"
    LOST = "lost"  # NVML GpuIsLost: the device fell off the bus; stop trusting its numbers


class NoGpuError(TwinEnvironmentError):
    """No usable NVIDIA driver or device on this machine. ``reason`` is a short code for scripts."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)


class BackendError(RuntimeError):
    """A backend failed in a way that is neither "no GPU" nor a lost device (bad recording, NVML bug)."""


@dataclass(frozen=True, slots=True)
class MigInstance:
    """One MIG GPU instance. ``placement_start``/``slices`` locate it on the device's slot row."""

    gpu_instance_id: int
    profile: str  # NVIDIA profile name, e.g. "1g.10gb"
    placement_start: int
    slices: int
    memory_total: int
    uuid: str = ""  # the MIG device UUID ("MIG-..."), empty where the backend cannot name it


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What does not change while the driver is loaded: identity, size, MIG layout.

    ``mig_enabled`` is None where the device has no MIG (NVML NotSupported), not False.
    """

    index: int
    uuid: str
    name: str
    memory_total: int
    mig_enabled: bool | None = None
    mig_instances: tuple[MigInstance, ...] = ()


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One process using a device. ``sm_util`` is None when NVML had no sample for it this period."""

    pid: int
    memory_used: int | None
    sm_util: float | None = None
    gpu_instance_id: int | None = None  # MIG instance the process runs in; None when not MIG


@dataclass(frozen=True, slots=True)
class DeviceSample:
    """One reading of one device."""

    uuid: str
    index: int
    health: Health = Health.OK
    memory_used: int | None = None
    memory_total: int | None = None
    utilization_gpu: float | None = None
    utilization_memory: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    power_w: float | None = None
    temperature_c: float | None = None
    processes: tuple[ProcessSample, ...] = ()
    unsupported: tuple[str, ...] = ()  # names of fields the device cannot report (sorted)


@dataclass(frozen=True, slots=True)
class NodeSample:
    """All devices at one instant. ``t`` is the backend's clock in seconds (replay: the recorded time)."""

    t: float
    devices: tuple[DeviceSample, ...]

    def device(self, uuid: str) -> DeviceSample | None:
        return next((d for d in self.devices if d.uuid == uuid), None)


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """Where the numbers come from; goes into a recording's header."""

    backend: str  # "nvml", "fake", "replay"
    driver_version: str = ""
    nvml_version: str = ""
    hostname: str = ""


@runtime_checkable
class GpuBackend(Protocol):
    """The one seam between the live bridge and a GPU driver (real, fake or recorded)."""

    def info(self) -> BackendInfo: ...

    def devices(self) -> tuple[DeviceInfo, ...]: ...

    def sample(self) -> NodeSample: ...

    def close(self) -> None: ...


SAMPLE_FIELDS = (
    "memory_used",
    "memory_total",
    "utilization_gpu",
    "utilization_memory",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "power_w",
    "temperature_c",
    "processes",
)

# One wording for "no GPU here", shared by every backend, so fakes and NVML say the same thing.
NO_GPU_MESSAGES = {
    "not-installed": "the NVML bindings are not installed: pip install nvidia-ml-py",
    "library-not-found": (
        "no NVIDIA driver found (libnvidia-ml.so.1 is missing): this machine has no NVIDIA GPU driver, or this "
        "container was started without the NVIDIA runtime (NVIDIA_VISIBLE_DEVICES)"
    ),
    "driver-not-loaded": "the NVIDIA driver library is installed but the kernel module is not loaded (try nvidia-smi)",
    "version-mismatch": "the NVIDIA driver was upgraded without reloading the kernel module: reboot or reload it",
    "no-permission": "no permission to open the NVIDIA devices (/dev/nvidia*): run as a user in the video group",
    "no-devices": "the NVIDIA driver is loaded but reports no GPU devices",
}


def no_gpu(reason: str, detail: str = "") -> NoGpuError:
    """The :class:`NoGpuError` for ``reason`` (a key of :data:`NO_GPU_MESSAGES`)."""
    message = NO_GPU_MESSAGES.get(reason, f"NVML failed: {reason}")
    return NoGpuError(reason, f"{message} ({detail})" if detail else message)
