"""Recorder durability and replay fidelity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from live_fixtures import recorded_demo

from live.backends.base import Health
from live.backends.fake import FakeBackend, demo_node
from live.backends.jsonl import read_records
from live.backends.recorder import RecordingBackend, record
from live.backends.replay import ReplayBackend, ReplayFinished
from twin.errors import TwinInputError
from twin.resources import GIB


def test_replay_returns_exactly_what_was_recorded(tmp_path: Path) -> None:
    fake = demo_node()
    rec = RecordingBackend(fake, tmp_path / "r.jsonl", interval_s=1.0)
    seen = []
    for _ in range(4):
        seen.append((fake.devices(), rec.sample()))
        fake.advance(1.0)
    rec.close()
    replay = ReplayBackend(tmp_path / "r.jsonl")
    assert replay.header.synthetic is True and replay.header.backend == "fake"
    assert len(replay) == 4
    for devices, node in seen:
        assert replay.sample() == node
        assert replay.devices() == devices
    with pytest.raises(ReplayFinished):
        replay.sample()


def test_device_changes_are_recorded_when_they_happen(tmp_path: Path) -> None:
    fake = FakeBackend()
    uuid = fake.add_gpu("NVIDIA H100 80GB HBM3")
    rec = RecordingBackend(fake, tmp_path / "r.jsonl", interval_s=1.0)
    rec.sample()
    fake.set_mig_mode(uuid, True)
    fake.create_instance(uuid, "2g.20gb")
    fake.advance(1)
    rec.sample()
    fake.advance(1)
    rec.sample()
    fake.lose(uuid)
    fake.advance(1)
    rec.sample()
    rec.close()
    kinds = [type(r).__name__ for _, r in read_records(tmp_path / "r.jsonl")]
    assert kinds == [
        "RecordingHeader",
        "DevicesRecord",
        "NodeSample",
        "DevicesRecord",
        "NodeSample",
        "NodeSample",
        "NodeSample",
    ]
    replay = ReplayBackend(tmp_path / "r.jsonl")
    replay.sample()
    assert replay.devices()[0].mig_enabled is False
    replay.sample()
    assert replay.devices()[0].mig_instances[0].profile == "2g.20gb"
    replay.sample()
    assert replay.sample().devices[0].health is Health.LOST


def test_torn_last_line_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = recorded_demo(tmp_path / "r.jsonl", samples=3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # cut the last sample in the middle
    replay = ReplayBackend(path)
    assert len(replay) == 2
    assert "torn last line" in caplog.text


def test_a_bad_line_in_the_middle_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = recorded_demo(tmp_path / "r.jsonl", samples=3)
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:20]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TwinInputError) as err:
        ReplayBackend(path)
    assert err.value.line == 3 and str(path) in str(err.value)


def test_a_recording_must_start_with_its_header(tmp_path: Path) -> None:
    path = recorded_demo(tmp_path / "r.jsonl", samples=2)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(TwinInputError, match="header"):
        ReplayBackend(path)


def test_realtime_replay_waits_for_recorded_timestamps(tmp_path: Path) -> None:
    path = recorded_demo(tmp_path / "r.jsonl", samples=4, interval_s=2.0)
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    replay = ReplayBackend(path, realtime=True, speed=2.0, clock=lambda: now[0], sleep=sleep)
    times = [n.t for n in replay.samples()]
    assert times == [0.0, 2.0, 4.0, 6.0]
    assert slept == [1.0, 1.0, 1.0]  # 2 s of recording per 1 s at speed 2


def test_record_schedules_on_absolute_deadlines(tmp_path: Path) -> None:
    fake = FakeBackend()
    fake.add_gpu("NVIDIA L4")
    now = [0.0]
    sleeps: list[float] = []

    def clock() -> float:
        return now[0]

    def sleep(s: float) -> None:
        sleeps.append(round(s, 6))
        now[0] += s

    def slow_sample(_node: object) -> None:
        now[0] += 0.3  # each sample costs 0.3 s: the next sleep shrinks, the cadence holds

    n = record(
        fake, tmp_path / "r.jsonl", interval_s=1.0, duration_s=3.0, sleep=sleep, clock=clock, on_sample=slow_sample
    )
    assert n == 4
    assert sleeps == [0.7, 0.7, 0.7]


_KILLED_RECORDER = """
import sys
from live.backends.fake import FakeBackend
from live.backends.recorder import record
fake = FakeBackend()
uuid = fake.add_gpu("NVIDIA H100 80GB HBM3")
for pid in range(50):
    fake.add_process(uuid, 1000 + pid, 1 << 28, sm_util=1.0)
print("ready", flush=True)
record(fake, sys.argv[1], interval_s=0.01, note="x" * 2000)
"""


def test_a_killed_recorder_leaves_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RECORDER, str(path)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not path.exists() or path.read_text().count("\n") < 20):
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    replay = ReplayBackend(path)
    assert len(replay) >= 19
    for line in path.read_text().splitlines()[:-1]:
        json.loads(line)  # every line but possibly the last is complete


def test_recording_stays_compact(tmp_path: Path) -> None:
    fake = FakeBackend()
    uuid = fake.add_gpu("NVIDIA H100 80GB HBM3")
    fake.add_process(uuid, 1, GIB)
    path = tmp_path / "r.jsonl"
    record(fake, path, interval_s=1.0, count=10, sleep=fake.advance, clock=fake.clock)
    sample_line = path.read_text().splitlines()[-1]
    assert len(sample_line) < 400
    assert "null" not in sample_line
