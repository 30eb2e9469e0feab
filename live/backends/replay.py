"""Plays a recording back through the GpuBackend interface.

Two paces: as fast as possible (default: tests, parity runs, ``twin live fork``), or at the
recorded timestamps (``realtime=True``, optionally ``speed`` times faster) for demos of the agent.
``devices()`` answers with the device list that was current at the last sample returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from live.backends.base import BackendError, BackendInfo, DeviceInfo, NodeSample
from live.backends.jsonl import DevicesRecord, RecordingHeader, read_records
from twin.errors import TwinInputError


class ReplayFinished(BackendError):
    """The recording has no more samples."""


class ReplayBackend:
    def __init__(
        self,
        path: str | Path,
        *,
        realtime: bool = False,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if speed <= 0:
            raise TwinInputError("replay speed must be positive", field="speed", value=speed)
        self.path = Path(path)
        header: RecordingHeader | None = None
        # (devices current at that sample, sample) in file order
        self._steps: list[tuple[tuple[DeviceInfo, ...], NodeSample]] = []
        devices: tuple[DeviceInfo, ...] = ()
        self._initial_devices: tuple[DeviceInfo, ...] | None = None
        for _line, rec in read_records(self.path):
            if isinstance(rec, RecordingHeader):
                header = rec
            elif isinstance(rec, DevicesRecord):
                devices = rec.devices
                if self._initial_devices is None:
                    self._initial_devices = devices
            else:
                self._steps.append((devices, rec))
        if header is None:
            raise TwinInputError("empty recording (no header line)", file=str(self.path))
        self.header = header
        self._pos = 0
        self._realtime = realtime
        self._speed = speed
        self._clock = clock
        self._sleep = sleep
        self._wall_start: float | None = None

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def remaining(self) -> int:
        return len(self._steps) - self._pos

    def info(self) -> BackendInfo:
        h = self.header
        return BackendInfo(
            backend="replay", driver_version=h.driver_version, nvml_version=h.nvml_version, hostname=h.hostname
        )

    def devices(self) -> tuple[DeviceInfo, ...]:
        if self._pos > 0:
            return self._steps[self._pos - 1][0]
        return self._initial_devices or ()

    def sample(self) -> NodeSample:
        if self._pos >= len(self._steps):
            raise ReplayFinished(f"{self.path}: no more samples ({len(self._steps)} played)")
        node = self._steps[self._pos][1]
        if self._realtime:
            first_t = self._steps[0][1].t
            if self._wall_start is None:
                self._wall_start = self._clock()
            wait = self._wall_start + (node.t - first_t) / self._speed - self._clock()
            if wait > 0:
                self._sleep(wait)
        self._pos += 1
        return node

    def samples(self) -> Iterator[NodeSample]:
        """Every remaining sample, in order."""
        while self._pos < len(self._steps):
            yield self.sample()

    def rewind(self) -> None:
        self._pos = 0
        self._wall_start = None

    def close(self) -> None:
        self._pos = len(self._steps)
