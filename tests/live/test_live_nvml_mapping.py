"""NvmlBackend's translation of NVML structs and errors, with pynvml's functions replaced.

The replacements return the real ctypes structs and raise the real ``pynvml.NVMLError`` subclasses
(``NVMLError(code)`` builds the right subclass without the library), so every mapping is checked
on a machine without a GPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pynvml
import pytest

from live.backends.base import Health, NoGpuError
from live.backends.nvml import NvmlBackend, nvml_available

GIB = 1 << 30


class NvmlStub:
    """One H100 (optionally MIG) behind pynvml's function names; counts calls per function."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[str] = Counter()
        self.errors: dict[str, int] = {}  # function name -> NVML error code to raise
        self.mig = False
        self.proc_samples: list[Any] = [
            pynvml.c_nvmlProcessUtilizationSample_t(pid=100, timeStamp=5_000, smUtil=30, memUtil=10),
            pynvml.c_nvmlProcessUtilizationSample_t(pid=100, timeStamp=6_000, smUtil=35, memUtil=11),
        ]
        self.seen_ts: list[int] = []
        self._patch(monkeypatch)

    def _fn(self, name: str, result: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self.calls[name] += 1
            if name in self.errors:
                raise pynvml.NVMLError(self.errors[name])
            return result(*args)

        return call

    def _patch(self, mp: pytest.MonkeyPatch) -> None:
        mem = pynvml.c_nvmlMemory_t(total=80 * GIB, free=70 * GIB, used=10 * GIB)

        def procs(_h: Any) -> list[Any]:
            info = pynvml.c_nvmlProcessInfo_v3_t(
                pid=100, usedGpuMemory=6 * GIB, gpuInstanceId=1 if self.mig else 0xFFFFFFFF, computeInstanceId=0
            )
            other = pynvml.c_nvmlProcessInfo_v3_t(
                pid=200, usedGpuMemory=4 * GIB, gpuInstanceId=1 if self.mig else 0xFFFFFFFF, computeInstanceId=0
            )
            out = [pynvml.nvmlStructToFriendlyObject(other), pynvml.nvmlStructToFriendlyObject(info)]
            out[0].usedGpuMemory = None  # NVML: not available for this process
            return out

        def proc_util(_h: Any, ts: int) -> list[Any]:
            self.seen_ts.append(ts)
            fresh = [s for s in self.proc_samples if s.timeStamp > ts]
            if not fresh:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
            return fresh

        def mig_handle(_h: Any, slot: int) -> Any:
            if slot != 0:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
            return "mig0"

        gi_info = pynvml.c_nvmlGpuInstanceInfo_t(id=1, profileId=9)
        gi_info.placement.start = 4
        gi_info.placement.size = 4
        profile = pynvml.c_nvmlGpuInstanceProfileInfo_v2_t()
        profile.id = 9
        profile.name = b"MIG 3g.40gb"
        funcs: dict[str, Callable[..., Any]] = {
            "nvmlInit": lambda: None,
            "nvmlShutdown": lambda: None,
            "nvmlDeviceGetCount": lambda: 1,
            "nvmlDeviceGetHandleByIndex": lambda i: f"dev{i}",
            "nvmlDeviceGetUUID": lambda h: "GPU-0000" if h == "dev0" else "MIG-1111",
            "nvmlDeviceGetName": lambda h: "NVIDIA H100 80GB HBM3",
            "nvmlDeviceGetMemoryInfo": lambda h: mem if h == "dev0" else pynvml.c_nvmlMemory_t(total=40 * GIB),
            "nvmlDeviceGetMigMode": lambda h: [1 if self.mig else 0, 0],
            "nvmlDeviceGetUtilizationRates": lambda h: pynvml.c_nvmlUtilization_t(gpu=42, memory=17),
            "nvmlDeviceGetClockInfo": lambda h, t: 1980 if t == pynvml.NVML_CLOCK_SM else 2619,
            "nvmlDeviceGetPowerUsage": lambda h: 350_500,
            "nvmlDeviceGetTemperatureV": lambda h, s: 61,
            "nvmlDeviceGetTemperature": lambda h, s: 60,
            "nvmlDeviceGetComputeRunningProcesses": procs,
            "nvmlDeviceGetProcessUtilization": proc_util,
            "nvmlDeviceGetMaxMigDeviceCount": lambda h: 7,
            "nvmlDeviceGetMigDeviceHandleByIndex": mig_handle,
            "nvmlDeviceGetGpuInstanceId": lambda h: 1,
            "nvmlDeviceGetGpuInstanceById": lambda h, i: "gi1",
            "nvmlGpuInstanceGetInfo": lambda gi: gi_info,
            "nvmlDeviceGetGpuInstanceProfileInfoById": lambda h, pid: profile,
            "nvmlSystemGetDriverVersion": lambda: "550.54.15",
            "nvmlSystemGetNVMLVersion": lambda: "12.550.54.15",
        }
        for name, result in funcs.items():
            mp.setattr(pynvml, name, self._fn(name, result))


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> NvmlStub:
    return NvmlStub(monkeypatch)


def test_this_machine_without_a_driver_gets_a_clear_message() -> None:
    if nvml_available():
        pytest.skip("a GPU is present")
    with pytest.raises(NoGpuError) as err:
        NvmlBackend()
    assert err.value.reason == "library-not-found"
    assert "no NVIDIA driver found" in str(err.value)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "library-not-found"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "driver-not-loaded"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "version-mismatch"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "no-permission"),
    ],
)
def test_init_errors_map_to_reasons(stub: NvmlStub, code: int, reason: str) -> None:
    stub.errors["nvmlInit"] = code
    with pytest.raises(NoGpuError) as err:
        NvmlBackend()
    assert err.value.reason == reason


def test_no_devices_is_no_gpu(stub: NvmlStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 0)
    with pytest.raises(NoGpuError) as err:
        NvmlBackend()
    assert err.value.reason == "no-devices"


def test_structs_become_dataclasses_in_our_units(stub: NvmlStub) -> None:
    b = NvmlBackend(clock=lambda: 12.0)
    (info,) = b.devices()
    assert (info.uuid, info.name, info.memory_total, info.mig_enabled) == (
        "GPU-0000",
        "NVIDIA H100 80GB HBM3",
        80 * GIB,
        False,
    )
    node = b.sample()
    (dev,) = node.devices
    assert node.t == 12.0
    assert (dev.memory_used, dev.utilization_gpu, dev.utilization_memory) == (10 * GIB, 42.0, 17.0)
    assert (dev.sm_clock_mhz, dev.mem_clock_mhz, dev.power_w, dev.temperature_c) == (1980, 2619, 350.5, 61.0)
    # Latest sample per pid wins; a process without samples has sm_util None; NVML "N/A" memory is None.
    assert [(p.pid, p.memory_used, p.sm_util, p.gpu_instance_id) for p in dev.processes] == [
        (100, 6 * GIB, 35.0, None),
        (200, None, None, None),
    ]
    assert b.info().driver_version == "550.54.15"


def test_process_utilisation_reads_incrementally_and_not_found_means_idle(stub: NvmlStub) -> None:
    b = NvmlBackend()
    b.sample()
    second = b.sample()
    assert stub.seen_ts == [0, 6_000]
    assert all(p.sm_util is None for p in second.devices[0].processes)
    assert second.devices[0].health is Health.OK


def test_not_supported_is_cached_and_reported(stub: NvmlStub) -> None:
    stub.errors["nvmlDeviceGetPowerUsage"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    stub.errors["nvmlDeviceGetTemperatureV"] = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
    b = NvmlBackend()
    first = b.sample().devices[0]
    b.sample()
    assert first.power_w is None and "power_w" in first.unsupported
    assert first.temperature_c == 60.0  # fell back to the deprecated call on an old driver
    assert "temperature_v" not in first.unsupported
    assert stub.calls["nvmlDeviceGetPowerUsage"] == 1
    assert stub.calls["nvmlDeviceGetTemperatureV"] == 1


def test_transient_errors_read_as_missing_for_one_tick(stub: NvmlStub) -> None:
    stub.errors["nvmlDeviceGetClockInfo"] = pynvml.NVML_ERROR_UNKNOWN
    b = NvmlBackend()
    dev = b.sample().devices[0]
    assert dev.sm_clock_mhz is None and "sm_clock_mhz" not in dev.unsupported
    del stub.errors["nvmlDeviceGetClockInfo"]
    assert b.sample().devices[0].sm_clock_mhz == 1980


def test_lost_gpu_is_reported_and_not_polled_again(stub: NvmlStub) -> None:
    b = NvmlBackend()
    b.devices()
    stub.errors["nvmlDeviceGetUtilizationRates"] = pynvml.NVML_ERROR_GPU_IS_LOST
    lost = b.sample().devices[0]
    assert lost.health is Health.LOST and lost.memory_used is None
    calls = sum(stub.calls.values())
    assert b.sample().devices[0].health is Health.LOST
    assert b.devices()[0].name == "NVIDIA H100 80GB HBM3"  # cached identity
    assert sum(stub.calls.values()) == calls


def test_mig_instances_are_enumerated_with_profile_and_placement(stub: NvmlStub) -> None:
    stub.mig = True
    stub.errors["nvmlDeviceGetUtilizationRates"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    stub.errors["nvmlDeviceGetProcessUtilization"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    b = NvmlBackend()
    (info,) = b.devices()
    assert info.mig_enabled is True
    (inst,) = info.mig_instances
    assert (inst.gpu_instance_id, inst.profile, inst.placement_start, inst.slices) == (1, "3g.40gb", 4, 4)
    assert inst.memory_total == 40 * GIB and inst.uuid == "MIG-1111"
    dev = b.sample().devices[0]
    assert dev.utilization_gpu is None
    assert {"utilization_gpu", "utilization_memory", "process_utilization"} <= set(dev.unsupported)
    assert {p.gpu_instance_id for p in dev.processes} == {1}


def test_mig_mode_not_supported_means_no_mig(stub: NvmlStub) -> None:
    stub.errors["nvmlDeviceGetMigMode"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    (info,) = NvmlBackend().devices()
    assert info.mig_enabled is None and info.mig_instances == ()


def test_missing_bindings_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import live.backends.nvml as mod

    monkeypatch.setattr(mod, "pynvml", None)
    with pytest.raises(NoGpuError, match="pip install nvidia-ml-py"):
        NvmlBackend()


def test_gpu_lost_before_identification_is_left_out_of_the_inventory(stub: NvmlStub) -> None:
    from live.agent import LiveAgent

    stub.errors["nvmlDeviceGetName"] = pynvml.NVML_ERROR_GPU_IS_LOST
    b = NvmlBackend()
    agent = LiveAgent(b)
    agent.step()
    assert agent.inventory is not None and agent.inventory.gpus == ()
    assert "lost before it could be identified" in agent.inventory.warnings[0]
    assert agent.last_sample is not None and agent.last_sample.devices[0].health is Health.LOST
