"""One contract for every GpuBackend: fake, replay, the recorder wrapper and (on a GPU machine) NVML."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live_fixtures import fake_demo, replay_of_demo

from live.backends.base import SAMPLE_FIELDS, BackendInfo, DeviceInfo, GpuBackend, Health, NodeSample
from live.backends.nvml import NvmlBackend, nvml_available
from live.backends.recorder import RecordingBackend


@pytest.fixture(
    params=[
        "fake",
        "replay",
        "recorder",
        pytest.param("nvml", marks=pytest.mark.gpu),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GpuBackend]:
    kind = request.param
    b: GpuBackend
    if kind == "fake":
        b = fake_demo()
    elif kind == "replay":
        b = replay_of_demo(tmp_path)
    elif kind == "recorder":
        b = RecordingBackend(fake_demo(), tmp_path / "contract.jsonl")
    else:
        if not nvml_available():
            pytest.skip("no NVIDIA driver or GPU on this machine")
        b = NvmlBackend()
    yield b
    b.close()


def _check_sample(devices: tuple[DeviceInfo, ...], node: NodeSample) -> None:
    assert [(d.index, d.uuid) for d in node.devices] == [(d.index, d.uuid) for d in devices]
    for info, dev in zip(devices, node.devices, strict=True):
        if dev.health is Health.LOST:
            assert all(getattr(dev, f) in (None, ()) for f in SAMPLE_FIELDS)
            continue
        for name in dev.unsupported:
            if name in SAMPLE_FIELDS and name != "processes":
                assert getattr(dev, name) is None, name
        assert list(dev.unsupported) == sorted(dev.unsupported)
        for name in ("utilization_gpu", "utilization_memory"):
            value = getattr(dev, name)
            assert value is None or 0.0 <= value <= 100.0
        if dev.memory_used is not None and dev.memory_total is not None:
            assert 0 <= dev.memory_used <= dev.memory_total
        if dev.memory_total is not None:
            assert dev.memory_total == info.memory_total
        pids = [p.pid for p in dev.processes]
        assert pids == sorted(set(pids))
        for p in dev.processes:
            assert p.memory_used is None or p.memory_used >= 0
            assert p.sm_util is None or 0.0 <= p.sm_util <= 100.0
        if info.mig_enabled:
            # NVML: device utilisation is not supported on MIG devices.
            assert dev.utilization_gpu is None and "utilization_gpu" in dev.unsupported
            gi_ids = {i.gpu_instance_id for i in info.mig_instances}
            assert all(p.gpu_instance_id in gi_ids for p in dev.processes)
        else:
            assert all(p.gpu_instance_id is None for p in dev.processes)


def test_info_names_the_backend(backend: GpuBackend) -> None:
    info = backend.info()
    assert isinstance(info, BackendInfo)
    assert info.backend in {"fake", "replay", "nvml"}
    assert info.hostname or info.backend == "replay"


def test_devices_are_indexed_and_unique(backend: GpuBackend) -> None:
    devices = backend.devices()
    assert len(devices) >= 1
    assert [d.index for d in devices] == list(range(len(devices)))
    assert len({d.uuid for d in devices}) == len(devices)
    for d in devices:
        assert d.name and d.memory_total > 0
        assert d.uuid.startswith("GPU-")
        if not d.mig_enabled:
            assert d.mig_instances == ()


def test_mig_instances_do_not_overlap(backend: GpuBackend) -> None:
    for d in backend.devices():
        taken: set[int] = set()
        for inst in d.mig_instances:
            slots = set(range(inst.placement_start, inst.placement_start + inst.slices))
            assert not slots & taken
            taken |= slots
            assert inst.memory_total > 0 and inst.memory_total <= d.memory_total


def test_samples_match_devices_and_time_moves_forward(backend: GpuBackend) -> None:
    times = []
    for _ in range(3):
        devices = backend.devices()
        node = backend.sample()
        _check_sample(devices, node)
        times.append(node.t)
    assert times == sorted(times)


def test_sample_is_immutable(backend: GpuBackend) -> None:
    node = backend.sample()
    with pytest.raises(AttributeError):
        node.t = 0.0  # type: ignore[misc]
    assert isinstance(backend, GpuBackend)
