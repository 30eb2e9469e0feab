"""Shared builders for the live tests (imported by the test modules of this folder)."""

from __future__ import annotations

from pathlib import Path

from live.backends.fake import FakeBackend, demo_node
from live.backends.recorder import record
from live.backends.replay import ReplayBackend

DATA = Path(__file__).resolve().parents[1] / "data"
SYNTHETIC_RECORDING = DATA / "live_synthetic_node.jsonl"


def recorded_demo(path: Path, samples: int = 5, interval_s: float = 0.5) -> Path:
    """A recording of :func:`demo_node` whose fake clock advances one interval per sample."""
    fake = demo_node()
    record(fake, path, interval_s=interval_s, count=samples, sleep=fake.advance, clock=fake.clock)
    return path


def replay_of_demo(tmp_path: Path) -> ReplayBackend:
    return ReplayBackend(recorded_demo(tmp_path / "demo.jsonl"))


def fake_demo() -> FakeBackend:
    return demo_node()
