"""Random draws for the engine: arrival times, distributions, and per-worker usage over time.

All randomness comes from numpy Generators the caller derives with ``twin.seeding.component_rng``;
arrival times are drawn up front, vectorised, so the event loop only walks an array.
"""

from __future__ import annotations

import csv
import io
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twin import limits, yamlsafe
from twin.errors import TwinInputError
from twin.scenario import Arrival, Distribution, UsageProfile

DAY = 86400.0


def sample(dist: Distribution, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` draws from ``dist`` (all non-negative)."""
    if dist.kind == "fixed":
        return np.full(n, float(dist.value or 0.0))
    if dist.kind == "exponential":
        return rng.exponential(float(dist.mean or 0.0), n)
    if dist.kind == "lognormal":
        median = float(dist.median or 0.0)
        mu = math.log(median) if median > 0 else -math.inf
        return np.exp(rng.normal(mu, float(dist.sigma or 0.0), n)) if median > 0 else np.zeros(n)
    return rng.uniform(float(dist.low or 0.0), float(dist.high or 0.0), n)


@dataclass(frozen=True, slots=True)
class ReplayRows:
    times: np.ndarray
    lifetimes: np.ndarray | None
    work: np.ndarray | None


def read_replay(path: Path) -> ReplayRows:
    """A replay CSV: column ``time`` (seconds), optional ``lifetime`` (s) and ``work_tflop``."""
    rows = _csv_rows(path, "replay file")
    if not rows or "time" not in rows[0]:
        raise TwinInputError("a replay CSV needs a header with a time column", file=str(path))

    def column(name: str) -> np.ndarray | None:
        if name not in rows[0]:
            return None
        out = np.empty(len(rows))
        for i, row in enumerate(rows):
            try:
                out[i] = float(row[name])
            except (TypeError, ValueError) as err:
                raise TwinInputError("not a number", file=str(path), line=i + 2, field=name, value=row[name]) from err
            if not math.isfinite(out[i]) or out[i] < 0:
                raise TwinInputError(
                    "must be finite and not negative", file=str(path), line=i + 2, field=name, value=row[name]
                )
        return out

    times = column("time")
    assert times is not None
    order = np.argsort(times, kind="stable")
    lifetimes, work = column("lifetime"), column("work_tflop")
    return ReplayRows(
        times[order], None if lifetimes is None else lifetimes[order], None if work is None else work[order]
    )


def arrival_times(
    arrival: Arrival, horizon: float, rng: np.random.Generator, replay: ReplayRows | None = None
) -> np.ndarray:
    """Sorted arrival times in ``[start, min(stop, horizon))``, at most ``max_count`` of them."""
    start = arrival.start
    end = min(arrival.stop if arrival.stop is not None else horizon, horizon)
    if end <= start:
        return np.zeros(0)
    rate = arrival.rate_per_hour / 3600.0
    if arrival.process == "constant":
        times = np.arange(start, end, 1.0 / rate)
    elif arrival.process == "poisson":
        times = _poisson(rate, start, end, rng)
    elif arrival.process == "diurnal":
        # Thinning (Lewis-Shedler): draw at the peak rate, keep each point with p = rate(t)/peak.
        peak = rate * (1.0 + arrival.amplitude)
        cand = _poisson(peak, start, end, rng)
        lam = rate * (1.0 + arrival.amplitude * np.cos(2.0 * math.pi * (cand - arrival.peak_at) / DAY))
        keep = rng.random(cand.size) * peak < lam
        times = cand[keep]
    elif arrival.process == "bursts":
        ticks = np.arange(start, end, arrival.burst_every)
        times = np.repeat(ticks, arrival.burst_size)
    else:
        assert replay is not None
        times = replay.times[(replay.times >= start) & (replay.times < end)]
    if arrival.max_count is not None:
        times = times[: arrival.max_count]
    return times


def _poisson(rate: float, start: float, end: float, rng: np.random.Generator) -> np.ndarray:
    expected = (end - start) * rate
    chunks: list[np.ndarray] = []
    t = start
    # Draw in chunks sized to the expected count so one call almost always suffices.
    size = max(16, int(expected * 1.1 + 6.0 * math.sqrt(expected + 1.0)))
    while t < end:
        gaps = rng.exponential(1.0 / rate, size)
        pts = t + np.cumsum(gaps)
        chunks.append(pts)
        t = float(pts[-1])
    times = np.concatenate(chunks) if chunks else np.zeros(0)
    return times[times < end]


class UsageSeries:
    """One worker's usage (compute fraction or VRAM GiB) as a function of its running time.

    Moving profiles are re-read every ``profile.step`` seconds; a random walk keeps its own state and
    draws from the rng handed in (one per worker, derived from the run seed and the worker uid).
    """

    __slots__ = ("_rng", "_trace", "_value", "high", "profile")

    def __init__(
        self,
        profile: UsageProfile,
        default: float,
        high: float,
        rng: np.random.Generator | None,
        trace: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        self.profile = profile
        self.high = high if profile.high is None else min(profile.high, high)
        self._rng = rng
        self._trace = trace
        start = profile.value if profile.value is not None else profile.mean
        self._value = self._clip(default if start is None else start)

    @property
    def moving(self) -> bool:
        return self.profile.kind != "constant"

    def _clip(self, v: float) -> float:
        return min(max(v, self.profile.low), self.high)

    def value(self, run_time: float, now: float) -> float:
        """The value for a worker that has run ``run_time`` seconds, at simulated time ``now``."""
        return self.at(now if self.profile.uses_simulation_clock else run_time)

    def at(self, t: float) -> float:
        """The value at ``t`` on the profile's own clock (call with increasing ``t``)."""
        p = self.profile
        if p.kind == "constant":
            return self._value
        if p.kind == "periodic":
            mean = p.mean if p.mean is not None else (p.value or 0.0)
            return self._clip(mean + p.amplitude * math.sin(2.0 * math.pi * (t + p.phase) / p.period))
        if p.kind == "random_walk":
            if t > 0 and self._rng is not None and p.sigma > 0:
                self._value = self._clip(self._value + float(self._rng.normal(0.0, p.sigma)))
            return self._value
        assert self._trace is not None
        times, values = self._trace
        span = times[-1] if times[-1] > 0 else 1.0
        idx = bisect_right(times, t % span if t >= span else t) - 1
        return self._clip(values[max(idx, 0)])


def read_usage_trace(path: Path) -> tuple[list[float], list[float]]:
    """A recorded usage trace: CSV columns ``time,value`` (seconds since start, usage)."""
    rows = _csv_rows(path, "usage trace")
    if not rows or "time" not in rows[0] or "value" not in rows[0]:
        raise TwinInputError("a usage trace CSV needs the columns time,value", file=str(path))
    pairs: list[tuple[float, float]] = []
    for i, row in enumerate(rows):
        try:
            pair = (float(row["time"]), float(row["value"]))
        except (TypeError, ValueError) as err:
            raise TwinInputError("not a number", file=str(path), line=i + 2, value=row) from err
        if not all(math.isfinite(v) for v in pair):
            raise TwinInputError("not a finite number", file=str(path), line=i + 2, value=row)
        pairs.append(pair)
    pairs.sort(key=lambda p: p[0])
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _csv_rows(path: Path, what: str) -> list[dict[str, str]]:
    """Every row of a CSV with a header, read with the size cap and a clear error for binary or non-UTF-8 files."""
    text = yamlsafe.read_text(path, what=what, max_bytes=limits.FILE_MAX_BYTES)
    try:
        return list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise TwinInputError(f"not a CSV file: {err}", file=str(path)) from None
