"""The fake backend's scripting, MIG rules and fault injection."""

from __future__ import annotations

import pytest

from live.backends.base import Health, NoGpuError
from live.backends.fake import FakeBackend, MigError, demo_node
from twin.resources import GIB

H100 = "NVIDIA H100 80GB HBM3"
A100_40 = "NVIDIA A100-SXM4-40GB"


def _mig_h100() -> tuple[FakeBackend, str]:
    fake = FakeBackend()
    uuid = fake.add_gpu(H100)
    fake.set_mig_mode(uuid, True)
    return fake, uuid


def test_memory_comes_from_the_hardware_profile_and_usage_from_processes() -> None:
    fake = FakeBackend()
    uuid = fake.add_gpu(H100)
    fake.add_process(uuid, 10, 3 * GIB, sm_util=30)
    fake.add_process(uuid, 11, 1 * GIB)
    fake.set_usage(uuid, utilization_gpu=45, power_w=300)
    (dev,) = fake.sample().devices
    assert dev.memory_total == 80 * GIB
    assert dev.memory_used == 4 * GIB
    assert dev.utilization_gpu == 45.0 and dev.power_w == 300.0
    assert [(p.pid, p.sm_util) for p in dev.processes] == [(10, 30), (11, None)]


def test_unknown_name_needs_explicit_memory() -> None:
    fake = FakeBackend()
    with pytest.raises(ValueError, match="memory_total"):
        fake.add_gpu("NVIDIA Imaginary 9000")
    uuid = fake.add_gpu("NVIDIA Imaginary 9000", memory_total=24 * GIB)
    assert fake.devices()[0].uuid == uuid and fake.devices()[0].mig_enabled is None


def test_clock_moves_only_when_advanced() -> None:
    fake = demo_node()
    assert fake.sample().t == 0.0
    fake.advance(2.5)
    assert fake.sample().t == 2.5
    with pytest.raises(ValueError):
        fake.advance(-1)


@pytest.mark.parametrize("reason", ["library-not-found", "driver-not-loaded"])
def test_missing_driver_raises_a_human_message(reason: str) -> None:
    with pytest.raises(NoGpuError) as err:
        FakeBackend(driver_missing=reason)
    assert err.value.reason == reason
    assert "driver" in err.value.message and "Traceback" not in err.value.message


def test_lost_gpu_reports_lost_without_numbers() -> None:
    fake = FakeBackend()
    a = fake.add_gpu(H100)
    b = fake.add_gpu(H100)
    fake.add_process(a, 1, GIB)
    fake.lose(a)
    lost, ok = fake.sample().devices
    assert lost.health is Health.LOST and lost.memory_used is None and lost.processes == ()
    assert ok.health is Health.OK and ok.uuid == b


def test_not_supported_fields_are_none_and_listed() -> None:
    fake = FakeBackend()
    uuid = fake.add_gpu(H100)
    fake.mark_unsupported(uuid, "power_w", "temperature_c")
    (dev,) = fake.sample().devices
    assert dev.power_w is None and dev.temperature_c is None
    assert dev.unsupported == ("power_w", "temperature_c")


def test_mig_profiles_follow_h100_placement_rules() -> None:
    fake, uuid = _mig_h100()
    big = fake.create_instance(uuid, "3g.40gb")
    assert (big.placement_start, big.slices, big.memory_total) == (0, 4, 40 * GIB)
    second = fake.create_instance(uuid, "3g.40gb")
    assert second.placement_start == 4
    with pytest.raises(MigError, match="at most 2"):
        fake.create_instance(uuid, "3g.40gb")
    with pytest.raises(MigError, match="no free placement"):
        fake.create_instance(uuid, "1g.10gb")
    fake.destroy_instance(uuid, second.gpu_instance_id)
    small = [fake.create_instance(uuid, "1g.10gb") for _ in range(3)]
    assert [i.placement_start for i in small] == [4, 5, 6]
    # 7 x 1g.10gb slots exist on an 8-slot H100: slot 7 is never a 1g start.
    with pytest.raises(MigError):
        fake.create_instance(uuid, "1g.10gb")


def test_mig_rejects_bad_placements_and_unknown_profiles() -> None:
    fake, uuid = _mig_h100()
    with pytest.raises(MigError, match="may start at slots"):
        fake.create_instance(uuid, "2g.20gb", placement_start=1)
    with pytest.raises(MigError, match="has no MIG profile"):
        fake.create_instance(uuid, "5g.60gb")
    inst = fake.create_instance(uuid, "mig-2g.20gb", placement_start=2)
    assert inst.profile == "2g.20gb" and inst.placement_start == 2


def test_mig_on_a100_40gb_uses_its_own_family() -> None:
    fake = FakeBackend()
    uuid = fake.add_gpu(A100_40)
    fake.set_mig_mode(uuid, True)
    inst = fake.create_instance(uuid, "1g.5gb")
    assert inst.memory_total == 5 * GIB


def test_mig_mode_needs_an_idle_device_and_no_instances_to_turn_off() -> None:
    fake = FakeBackend()
    uuid = fake.add_gpu(H100)
    fake.add_process(uuid, 7, GIB)
    with pytest.raises(MigError, match="processes run"):
        fake.set_mig_mode(uuid, True)
    fake.remove_process(uuid, 7)
    fake.set_mig_mode(uuid, True)
    inst = fake.create_instance(uuid, "7g.80gb")
    with pytest.raises(MigError, match="destroy"):
        fake.set_mig_mode(uuid, False)
    fake.add_process(uuid, 8, GIB, gpu_instance_id=inst.gpu_instance_id)
    with pytest.raises(MigError, match="in use"):
        fake.destroy_instance(uuid, inst.gpu_instance_id)


def test_mig_makes_utilisation_unsupported_like_nvml() -> None:
    fake, uuid = _mig_h100()
    inst = fake.create_instance(uuid, "1g.10gb")
    fake.add_process(uuid, 3, GIB, sm_util=50, gpu_instance_id=inst.gpu_instance_id)
    (dev,) = fake.sample().devices
    assert dev.utilization_gpu is None
    assert {"utilization_gpu", "process_utilization"} <= set(dev.unsupported)
    assert dev.processes[0].sm_util is None and dev.processes[0].gpu_instance_id == inst.gpu_instance_id


def test_mig_not_supported_on_consumer_cards() -> None:
    fake = FakeBackend()
    uuid = fake.add_gpu("NVIDIA GeForce RTX 4090")
    with pytest.raises(MigError, match="does not support MIG"):
        fake.set_mig_mode(uuid, True)
