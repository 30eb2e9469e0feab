"""Property tests: the recording format round-trips any sample; fake MIG layouts never overlap."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from live.backends.base import DeviceSample, Health, NodeSample, ProcessSample
from live.backends.fake import FakeBackend, MigError
from live.backends.jsonl import decode, encode

_opt_float = st.one_of(st.none(), st.floats(min_value=0, max_value=100, allow_nan=False))
_opt_int = st.one_of(st.none(), st.integers(min_value=0, max_value=1 << 40))

_process = st.builds(
    ProcessSample,
    pid=st.integers(min_value=1, max_value=1 << 22),
    memory_used=_opt_int,
    sm_util=_opt_float,
    gpu_instance_id=st.one_of(st.none(), st.integers(min_value=0, max_value=14)),
)
_device = st.builds(
    DeviceSample,
    uuid=st.text(min_size=1, max_size=12),
    index=st.integers(min_value=0, max_value=15),
    health=st.sampled_from(list(Health)),
    memory_used=_opt_int,
    memory_total=_opt_int,
    utilization_gpu=_opt_float,
    utilization_memory=_opt_float,
    sm_clock_mhz=st.one_of(st.none(), st.integers(min_value=0, max_value=3000)),
    mem_clock_mhz=st.one_of(st.none(), st.integers(min_value=0, max_value=3000)),
    power_w=_opt_float,
    temperature_c=_opt_float,
    processes=st.lists(_process, max_size=4).map(tuple),
    unsupported=st.lists(st.sampled_from(["power_w", "utilization_gpu", "temperature_c"]), unique=True)
    .map(sorted)
    .map(tuple),
)


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False), st.lists(_device, max_size=4))
@settings(max_examples=150, deadline=None)
def test_any_sample_round_trips_through_a_recording_line(t: float, devices: list[DeviceSample]) -> None:
    node = NodeSample(t=t, devices=tuple(devices))
    line = encode("sample", node)
    assert "\n" not in line
    assert decode(line) == node


_PROFILES = ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]


@given(st.lists(st.tuples(st.sampled_from(_PROFILES), st.one_of(st.none(), st.integers(0, 7))), max_size=12))
@settings(max_examples=150, deadline=None)
def test_fake_mig_instances_never_overlap_or_exceed_the_device(requests: list[tuple[str, int | None]]) -> None:
    fake = FakeBackend()
    uuid = fake.add_gpu("NVIDIA H100 80GB HBM3")
    fake.set_mig_mode(uuid, True)
    for profile, start in requests:
        # A refused request must leave the layout valid, which is checked below.
        with contextlib.suppress(MigError):
            fake.create_instance(uuid, profile, start)
    (dev,) = fake.devices()
    taken: set[int] = set()
    for inst in dev.mig_instances:
        slots = set(range(inst.placement_start, inst.placement_start + inst.slices))
        assert not slots & taken and max(slots) < 8
        taken |= slots
    assert sum(i.memory_total for i in dev.mig_instances) <= dev.memory_total
