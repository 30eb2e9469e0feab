"""Building blocks of the fluid serving model: token-count shapes, the step-time model, numeric helpers.

Pure: no simpy, no I/O, no clock. The step-time function is a plain callable
``step_ms(prefill_tokens, decode_seqs, kv_tokens) -> ms`` so an architecture-based step model can
replace :class:`LinearStep` (vLLM's alpha + beta*tokens + gamma*KV form, as in ``twin.sim.serving``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol, runtime_checkable

import numpy as np

from twin.errors import TwinInputError

StepFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``step_ms(prefill_tokens, decode_seqs, kv_tokens)``: one engine iteration in ms, elementwise over
numpy arrays of one shape (the model evaluates many states at once). ``kv_tokens`` counts the
decodes' context plus a prefill chunk's end position, as the simulator's alpha/beta/gamma step does."""


@runtime_checkable
class BatchStep(Protocol):
    """A richer step model that needs the prefill chunk's start and the decodes' context apart
    (``fluid_arch.ArchStep`` wraps the architecture-based ``StepModel`` this way)."""

    def batch_ms(
        self, prefill_tokens: np.ndarray, prefill_start: np.ndarray, decode_seqs: np.ndarray, decode_ctx: np.ndarray
    ) -> np.ndarray: ...


_STD = NormalDist()
DISTS = ("fixed", "exponential", "lognormal")
TAIL_EDGES = (0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0)


@dataclass(frozen=True)
class LinearStep:
    """``alpha + beta*(prefill_tokens + decode_seqs) + gamma*kv_tokens`` ms (WVA's current parameters)."""

    alpha: float
    beta: float
    gamma: float

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise TwinInputError("must be a finite number >= 0", obj="fluid step model", field=name, value=value)
        if self.alpha + self.beta + self.gamma <= 0:
            raise TwinInputError("gives a zero step time", obj="fluid step model", field="alpha", value=self.alpha)

    def __call__(self, prefill_tokens: np.ndarray, decode_seqs: np.ndarray, kv_tokens: np.ndarray) -> np.ndarray:
        return self.alpha + self.beta * (prefill_tokens + decode_seqs) + self.gamma * kv_tokens


@dataclass(frozen=True)
class TokenShape:
    """Tokens per request: ``fixed`` (always the mean), ``exponential`` or ``lognormal`` with a CV.

    Matches ``twin.sim.serving_traffic.TokenDist`` (values below ``minimum`` are raised to it).
    """

    mean: float
    dist: str = "fixed"
    cv: float = 0.5
    minimum: int = 1

    def __post_init__(self) -> None:
        if not math.isfinite(self.mean) or not 1 <= self.mean <= 1e6:
            raise TwinInputError("must be between 1 and 1e6 tokens", obj="fluid tokens", field="mean", value=self.mean)
        if self.dist not in DISTS:
            raise TwinInputError(
                "use fixed, exponential or lognormal", obj="fluid tokens", field="dist", value=self.dist
            )
        if not math.isfinite(self.cv) or not 0 < self.cv <= 10:
            raise TwinInputError("must be in (0, 10]", obj="fluid tokens", field="cv", value=self.cv)

    def second_moment(self) -> float:
        """E[X^2] of the continuous distribution: strata means lose the variance inside each stratum,
        which matters for heavy tails (length-biased contexts, prefill noise)."""
        m = max(self.mean, float(self.minimum))
        if self.dist == "fixed":
            return m * m
        if self.dist == "exponential":
            return 2.0 * m * m
        return m * m * (1.0 + self.cv**2)

    def nodes(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Strata of the distribution, each represented by its conditional mean (so the mean is exact):
        ``count`` equal ones up to the 90th percentile, then finer ones in the tail, which sets the p95/p99
        of the latencies (a prompt in the top 5 % takes its own long prefill step)."""
        if self.dist == "fixed" or count <= 1:
            return np.array([max(float(self.mean), float(self.minimum))]), np.array([1.0])  # float: never int64
        edges = [0.9 * j / count for j in range(count)] + list(TAIL_EDGES)
        values = []
        if self.dist == "exponential":
            # E[X; a<X<b] for Exp(mean m): [x e^{-x/m} + m e^{-x/m}] between the quantiles.
            m = self.mean
            qs = [(-m * math.log(1.0 - u) if u < 1 else math.inf) for u in edges]
            for a, b in itertools.pairwise(qs):
                values.append((a + m) * math.exp(-a / m) - ((b + m) * math.exp(-b / m) if math.isfinite(b) else 0.0))
        else:
            sigma = math.sqrt(math.log(1.0 + self.cv**2))
            zs = [(_STD.inv_cdf(u) if 0 < u < 1 else (-math.inf if u == 0 else math.inf)) for u in edges]
            # E[X; za<Z<zb] = mean * (Phi(zb - sigma) - Phi(za - sigma)) for a lognormal with that mean.
            for za, zb in itertools.pairwise(zs):
                values.append(self.mean * (_cdf(zb - sigma) - _cdf(za - sigma)))
        weights = np.diff(np.array(edges))
        arr = np.maximum(np.array(values) / weights, float(self.minimum))
        return arr, weights


def _cdf(z: float) -> float:
    if z == math.inf:
        return 1.0
    if z == -math.inf:
        return 0.0
    return _STD.cdf(z)


def norm_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF, vectorised (numpy has no erf): Abramowitz-Stegun 7.1.26, |error| < 1.5e-7."""
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(z) * erf)


def gamma_cdf(x: np.ndarray, shape: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Gamma CDF: exact for shape 1 (exponential), Wilson-Hilferty's cube-root normal form above."""
    xr = np.maximum(x, 0.0) * rate
    expo = 1.0 - np.exp(-xr)
    s = np.maximum(shape, 1.0)
    wh = norm_cdf((np.cbrt(xr / s) - (1.0 - 1.0 / (9.0 * s))) / np.sqrt(1.0 / (9.0 * s)))
    return np.where(shape <= 1.0, expo, wh)


def percentiles_from_cdf(cdf: Callable[[np.ndarray], np.ndarray], hi: float, probs: tuple[float, ...]) -> list[float]:
    """Invert a CDF on [0, hi]: a 129-point grid, then twice a 33-point grid inside the bracketing cell,
    then linear interpolation (the range can be wide when a queue forms, the body narrow)."""
    out = []
    grid = np.linspace(0.0, hi, 129)
    f_all = np.maximum.accumulate(np.clip(cdf(grid), 0.0, 1.0))
    for p in probs:
        g, f = grid, f_all
        for level in range(3):
            idx = int(np.searchsorted(f, p))
            if idx >= g.size:
                value = float(g[-1])
                break
            if idx == 0:
                value = float(g[0])
                break
            if level == 2:
                f0, f1 = f[idx - 1], f[idx]
                frac = (p - f0) / (f1 - f0) if f1 > f0 else 0.0
                value = float(g[idx - 1] + frac * (g[idx] - g[idx - 1]))
                break
            g = np.linspace(g[idx - 1], g[idx], 33)
            f = np.maximum.accumulate(np.clip(cdf(g), 0.0, 1.0))
        out.append(value)
    return out
