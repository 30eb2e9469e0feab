"""Request traffic for the serving simulation: Poisson, diurnal and burst patterns, or a CSV replay.

A trace is three numpy arrays (arrival time s, input tokens, output tokens), generated up front from
a seeded numpy Generator so every autoscaler in a scenario sees exactly the same requests.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twin import limits, yamlsafe
from twin.errors import TwinInputError


@dataclass(frozen=True)
class Trace:
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    # Optional shared prompt prefixes (a system prompt, a document): request i starts with the
    # ``prefix_len[i]`` tokens of prefix ``prefix_id[i]`` (-1: none). Used by prefix caching.
    prefix_id: np.ndarray | None = None
    prefix_len: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    def rate_between(self, start: float, end: float) -> float:
        n = np.count_nonzero((self.arrival_s >= start) & (self.arrival_s < end))
        return float(n) / (end - start) if end > start else 0.0


@dataclass(frozen=True)
class TokenDist:
    """Tokens per request: ``fixed`` (the mean), ``exponential`` or ``lognormal`` with a coefficient of variation."""

    mean: float
    dist: str = "fixed"
    cv: float = 0.5
    minimum: int = 1

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.dist == "fixed":
            values = np.full(n, self.mean)
        elif self.dist == "exponential":
            values = rng.exponential(self.mean, n)
        elif self.dist == "lognormal":
            sigma2 = math.log(1.0 + self.cv**2)
            values = rng.lognormal(math.log(self.mean) - sigma2 / 2.0, math.sqrt(sigma2), n)
        else:
            raise TwinInputError(
                "unknown distribution; use fixed, exponential or lognormal", field="dist", value=self.dist
            )
        return np.maximum(np.rint(values), self.minimum).astype(np.int64)


@dataclass(frozen=True)
class Burst:
    start_s: float
    duration_s: float
    extra_rps: float


@dataclass(frozen=True)
class RatePattern:
    """rate(t) = base * (1 + amplitude * sin(2 pi t / period)) + bursts; amplitude 0 is plain Poisson."""

    base_rps: float
    amplitude: float = 0.0
    period_s: float = 86400.0
    phase_s: float = 0.0
    bursts: tuple[Burst, ...] = ()

    def rate(self, t: np.ndarray) -> np.ndarray:
        r = self.base_rps * (1.0 + self.amplitude * np.sin(2.0 * np.pi * (t + self.phase_s) / self.period_s))
        for b in self.bursts:
            r = r + np.where((t >= b.start_s) & (t < b.start_s + b.duration_s), b.extra_rps, 0.0)
        return np.maximum(r, 0.0)

    def peak(self) -> float:
        return self.base_rps * (1.0 + abs(self.amplitude)) + sum(b.extra_rps for b in self.bursts)


def poisson_arrivals(pattern: RatePattern, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """A non-homogeneous Poisson process by thinning (Lewis-Shedler), vectorised in one pass."""
    peak = pattern.peak()
    if peak <= 0 or duration_s <= 0:
        return np.empty(0)
    n = rng.poisson(peak * duration_s)
    times = np.sort(rng.uniform(0.0, duration_s, n))
    keep = rng.uniform(0.0, peak, n) < pattern.rate(times)
    return times[keep]


@dataclass(frozen=True)
class PrefixSpec:
    """``groups`` shared prefixes of ``tokens`` tokens each; every request draws one uniformly."""

    groups: int
    tokens: int


def generate_trace(
    pattern: RatePattern,
    input_tokens: TokenDist,
    output_tokens: TokenDist,
    duration_s: float,
    rng: np.random.Generator,
    prefix: PrefixSpec | None = None,
) -> Trace:
    times = poisson_arrivals(pattern, duration_s, rng)
    inp, out = input_tokens.sample(rng, times.size), output_tokens.sample(rng, times.size)
    if prefix is None:
        return Trace(times, inp, out)
    # The prefix is part of the prompt: a prompt shorter than it is lengthened to the prefix plus one token.
    inp = np.maximum(inp, prefix.tokens + 1)
    ids = rng.integers(0, prefix.groups, times.size)
    return Trace(times, inp, out, ids.astype(np.int64), np.full(times.size, prefix.tokens, dtype=np.int64))


def load_csv_trace(path: Path) -> Trace:
    """Rows ``time,input_tokens,output_tokens`` (a header row is allowed); times in seconds, sorted here."""
    rows: list[tuple[float, int, int]] = []
    text = yamlsafe.read_text(path, what="traffic CSV", max_bytes=limits.FILE_MAX_BYTES)
    try:
        with io.StringIO(text, newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh), start=1):
                if not row or row[0].strip().startswith("#"):
                    continue
                if lineno == 1 and not _is_number(row[0]):
                    continue  # header
                if len(row) < 3:
                    raise TwinInputError(
                        "needs time,input_tokens,output_tokens", file=str(path), line=lineno, value=row
                    )
                try:
                    t, i, o = float(row[0]), int(row[1]), int(row[2])
                except ValueError as err:
                    raise TwinInputError(
                        "not a number", file=str(path), line=lineno, field="time/input/output", value=row
                    ) from err
                if not math.isfinite(t) or t < 0 or i < 0 or o < 1 or max(i, o) > 10**9:
                    raise TwinInputError(
                        "needs time >= 0, input >= 0, output >= 1", file=str(path), line=lineno, value=row
                    )
                rows.append((t, i, o))
    except csv.Error as err:
        raise TwinInputError(f"not a CSV file: {err}", file=str(path)) from None
    rows.sort(key=lambda r: r[0])
    arr = np.array(rows, dtype=float).reshape(-1, 3)
    return Trace(arr[:, 0], arr[:, 1].astype(np.int64), arr[:, 2].astype(np.int64))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
