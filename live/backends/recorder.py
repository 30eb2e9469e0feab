"""A backend wrapper that writes everything it reads to a JSON Lines recording.

Durability: each sample is written, flushed and fsync'ed before :meth:`RecordingBackend.sample`
returns, so a recorder killed at any moment loses at most the sample being written; the reader
skips that torn last line (see :mod:`live.backends.jsonl`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from live.backends.base import BackendInfo, DeviceInfo, GpuBackend, NodeSample
from live.backends.jsonl import DevicesRecord, RecordingHeader, encode


class RecordingBackend:
    """Wraps ``inner`` (any :class:`GpuBackend`) and appends what it returns to ``path``.

    ``synthetic`` marks recordings made from a fake backend; it is written into the header.
    """

    def __init__(
        self,
        inner: GpuBackend,
        path: str | Path,
        *,
        interval_s: float = 1.0,
        synthetic: bool | None = None,
        note: str = "",
    ) -> None:
        self.inner = inner
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        info = inner.info()
        self.header = RecordingHeader(
            backend=info.backend,
            driver_version=info.driver_version,
            nvml_version=info.nvml_version,
            hostname=info.hostname,
            interval_s=interval_s,
            synthetic=info.backend != "nvml" if synthetic is None else synthetic,
            note=note,
        )
        self._fh: IO[str] | None = self.path.open("w", encoding="utf-8")
        self._last_devices: tuple[DeviceInfo, ...] | None = None
        self._write("header", self.header)
        self.samples_written = 0

    def _write(self, kind: str, payload: object) -> None:
        if self._fh is None:
            raise ValueError(f"recording {self.path} is closed")
        self._fh.write(encode(kind, payload) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def info(self) -> BackendInfo:
        return self.inner.info()

    def devices(self) -> tuple[DeviceInfo, ...]:
        return self.inner.devices()

    def sample(self) -> NodeSample:
        # The device list is re-read every sample so MIG changes and lost devices are recorded too.
        devices = self.inner.devices()
        node = self.inner.sample()
        if devices != self._last_devices:
            self._write("devices", DevicesRecord(t=node.t, devices=devices))
            self._last_devices = devices
        self._write("sample", node)
        self.samples_written += 1
        return node

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.inner.close()


def record(
    backend: GpuBackend,
    path: str | Path,
    *,
    interval_s: float,
    duration_s: float | None = None,
    count: int | None = None,
    synthetic: bool | None = None,
    note: str = "",
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_sample: Callable[[NodeSample], None] | None = None,
) -> int:
    """Sample ``backend`` every ``interval_s`` until ``duration_s`` or ``count`` samples; return the count.

    Ticks are scheduled on absolute deadlines (start + k·interval), so a slow sample does not
    make the recording drift. Closes the backend at the end.
    """
    if interval_s <= 0:
        raise ValueError(f"interval must be positive, got {interval_s}")
    rec = RecordingBackend(backend, path, interval_s=interval_s, synthetic=synthetic, note=note)
    start = clock()
    # Sample k is taken at start + k·interval for k = 0 .. floor(duration / interval) (epsilon: float noise).
    last = None if duration_s is None else math.floor(duration_s / interval_s + 1e-9)
    k = 0
    try:
        while (count is None or k < count) and (last is None or k <= last):
            node = rec.sample()
            if on_sample is not None:
                on_sample(node)
            k += 1
            wait = start + k * interval_s - clock()
            if (count is None or k < count) and (last is None or k <= last) and wait > 0:
                sleep(wait)
    finally:
        rec.close()
    return rec.samples_written
