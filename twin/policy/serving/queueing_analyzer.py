"""WVA's "SLO-driven" queueing-model analyzer (v0.6-v0.8; parked in the latest release). Semantics 2.5.

WVA ``internal/engines/analyzers/queueingmodel/analyzer.go`` and ``docs/developer-guide/slo-queuemodel.md``.
Per variant, only pods with an arrival rate above 0 ("busy") count: I, O, TTFT and ITL are their
arrival-weighted means and the demand is the sum of their rates. One replica is the queue model
with N = the pod's max batch (default 256) and Q = 100; its capacity is the throughput at the rate
that meets the SLO, and ``desired = max(ceil(demand / capacity), 1)``.

The SLO comes from, in order: the per-model targets of ``wva-queueing-model-config``; targets
inferred from the variants' learned parameters with ``k = sloMultiplier`` (the largest over the
variants); or, with nothing learned yet (cold start), 1.5 x the observed TTFT/ITL capped at 10 s
and 500 ms. Parameters nobody supplied are guessed from the observed TTFT and ITL
(:func:`cold_start_guess`).

As coded, the analyzer builds its supply from the *desired* count, so the required capacity is
always 0 and the spare capacity below one replica: fed to the cost-aware optimizer it changes
nothing, which is why the latest engine refuses the path. The twin reproduces the maths (and the
quirk) for reference; it registers no autoscaler for it. The Extended Kalman filter that tunes
alpha, beta, gamma online is not modelled (docs/fidelity.md#serving says why).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from twin.errors import TwinInputError
from twin.policy.serving.observation import ModelObservation, ReplicaMetrics, VariantInfo
from twin.policy.serving.queue_model import InfeasibleTargetError, QueueModel, ServiceTimes, SizeTargets

DEFAULT_ALPHA = 5.0
DEFAULT_BETA = 0.05
DEFAULT_GAMMA = 0.00005
DEFAULT_SLO_MULTIPLIER = 3.0
QUEUE_SIZE = 100  # Q for this analyzer (era A uses 10 x N)
DEFAULT_MAX_BATCH = 256
FALLBACK_FACTOR = 1.5
FALLBACK_TTFT_CAP_MS = 10_000.0
FALLBACK_ITL_CAP_MS = 500.0


@dataclass(frozen=True, slots=True)
class PerfParams:
    """The current model's parameters (ms): alpha per iteration, beta compute and gamma KV per token."""

    alpha: float
    beta: float
    gamma: float


DEFAULT_PARAMS = PerfParams(DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_GAMMA)


def cold_start_guess(ttft_ms: float, itl_ms: float, input_tokens: float, output_tokens: float) -> PerfParams:
    """Initial parameters from one observation (the tuner's cold start):
    ``alpha = 0.9·ITL``; ``beta+gamma = (TTFT − alpha)/I``;
    ``gamma = ((ITL − alpha) − (beta+gamma)) / (I + (O+1)/2 − 1)``; ``beta = (beta+gamma) − gamma``.
    If any of the three is not above 0 (or cannot be computed) the code defaults are used instead.
    """
    alpha = 0.9 * itl_ms
    if input_tokens <= 0:
        return DEFAULT_PARAMS
    beta_gamma = (ttft_ms - alpha) / input_tokens
    denom = input_tokens + (output_tokens + 1.0) / 2.0 - 1.0
    if denom <= 0:
        return DEFAULT_PARAMS
    gamma = ((itl_ms - alpha) - beta_gamma) / denom
    beta = beta_gamma - gamma
    guess = (alpha, beta, gamma)
    if not all(math.isfinite(x) and x > 0 for x in guess):
        return DEFAULT_PARAMS
    return PerfParams(alpha, beta, gamma)


def inferred_slo(params: PerfParams, input_tokens: float, output_tokens: float, k: float) -> SizeTargets:
    """Targets from learned parameters at ``k = sloMultiplier`` (utilisation 1 − 1/k):
    ``TTFT = k·alpha + (beta+gamma)·I``, ``ITL = k·alpha + beta + gamma·(I + (O+1)/2)``."""
    a, b, g = params.alpha, params.beta, params.gamma
    ttft = k * a + (b + g) * input_tokens
    itl = k * a + b + g * (input_tokens + (output_tokens + 1.0) / 2.0)
    return SizeTargets(ttft_ms=ttft, itl_ms=itl)


def fallback_slo(observed_ttft_ms: float, observed_itl_ms: float) -> SizeTargets:
    """Cold start with no configured SLO: 1.5 x observed, capped at 10 s TTFT and 500 ms ITL."""
    return SizeTargets(
        ttft_ms=min(FALLBACK_FACTOR * observed_ttft_ms, FALLBACK_TTFT_CAP_MS),
        itl_ms=min(FALLBACK_FACTOR * observed_itl_ms, FALLBACK_ITL_CAP_MS),
    )


@dataclass(frozen=True, slots=True)
class BusyLoad:
    """Arrival-weighted means over a variant's busy pods, and their summed rate (req/s)."""

    arrival_rate: float
    input_tokens: float
    output_tokens: float
    ttft_ms: float
    itl_ms: float


def busy_load(replicas: Sequence[ReplicaMetrics]) -> BusyLoad | None:
    """None when no pod of the variant has an arrival rate above 0."""
    busy = [r for r in replicas if r.arrival_rate > 0]
    total = sum(r.arrival_rate for r in busy)
    if not busy or total <= 0:
        return None

    def mean(attr: str) -> float:
        return sum(float(getattr(r, attr)) * r.arrival_rate for r in busy) / total

    return BusyLoad(total, mean("input_tokens"), mean("output_tokens"), mean("ttft_ms"), mean("itl_ms"))


@dataclass(frozen=True, slots=True)
class QueueingVariantResult:
    name: str
    params: PerfParams
    load: BusyLoad | None
    per_replica_capacity: float  # req/s at the SLO
    desired: int
    total_capacity: float  # desired x per-replica capacity, as coded
    required: float  # RC = max(0, demand − total capacity): 0 by construction
    spare: float  # SC = max(0, total capacity − demand): below one replica


@dataclass(frozen=True, slots=True)
class QueueingAnalysis:
    slo: SizeTargets
    slo_source: str  # "configured", "inferred" or "fallback"
    variants: tuple[QueueingVariantResult, ...]


@dataclass
class QueueingModelAnalyzer:
    """The analyzer with its per-variant parameters (learned elsewhere, or the cold-start guess).

    ``slo`` is the configured per-model target (both TTFT and ITL, or neither); ``params`` maps
    variant names to known parameters.
    """

    slo: SizeTargets | None = None
    slo_multiplier: float = DEFAULT_SLO_MULTIPLIER
    params: dict[str, PerfParams] | None = None

    def __post_init__(self) -> None:
        if self.slo is not None and (self.slo.ttft_ms > 0) != (self.slo.itl_ms > 0):
            raise TwinInputError(
                "set both targetTTFT and targetITL, or neither", field="targetTTFT", value=self.slo.ttft_ms
            )
        if not self.slo_multiplier > 1.0:
            raise TwinInputError("must be above 1", field="sloMultiplier", value=self.slo_multiplier)

    def _params_for(self, v: VariantInfo, load: BusyLoad | None) -> PerfParams:
        known = (self.params or {}).get(v.name)
        if known is not None:
            return known
        if load is None:
            return DEFAULT_PARAMS
        return cold_start_guess(load.ttft_ms, load.itl_ms, load.input_tokens, load.output_tokens)

    def resolve_slo(self, loads: dict[str, BusyLoad | None]) -> tuple[SizeTargets, str]:
        if self.slo is not None and self.slo.ttft_ms > 0:
            return self.slo, "configured"
        learned = [(name, p) for name, p in sorted((self.params or {}).items()) if loads.get(name) is not None]
        if learned:
            targets = []
            for name, p in learned:
                load = loads[name]
                assert load is not None  # filtered above
                targets.append(inferred_slo(p, load.input_tokens, load.output_tokens, self.slo_multiplier))
            return SizeTargets(max(t.ttft_ms for t in targets), max(t.itl_ms for t in targets)), "inferred"
        observed = [load for load in loads.values() if load is not None]
        if not observed:
            return SizeTargets(FALLBACK_TTFT_CAP_MS, FALLBACK_ITL_CAP_MS), "fallback"
        total = sum(load.arrival_rate for load in observed)
        ttft = sum(load.ttft_ms * load.arrival_rate for load in observed) / total
        itl = sum(load.itl_ms * load.arrival_rate for load in observed) / total
        return fallback_slo(ttft, itl), "fallback"

    def analyze(self, obs: ModelObservation) -> QueueingAnalysis:
        loads = {v.name: busy_load(obs.replicas_of(v.name)) for v in obs.variants}
        slo, source = self.resolve_slo(loads)
        results = []
        for v in obs.variants:
            load = loads[v.name]
            params = self._params_for(v, load)
            if load is None or load.output_tokens < 1:
                results.append(QueueingVariantResult(v.name, params, load, 0.0, max(v.current, 1), 0.0, 0.0, 0.0))
                continue
            batch = v.max_num_seqs if v.max_num_seqs > 0 else DEFAULT_MAX_BATCH
            service = ServiceTimes(params.alpha, params.beta, params.gamma, load.input_tokens, load.output_tokens)
            try:
                capacity = QueueModel(service, batch, QUEUE_SIZE).size(slo).capacity
            except InfeasibleTargetError:
                results.append(QueueingVariantResult(v.name, params, load, 0.0, v.current, 0.0, 0.0, 0.0))
                continue
            desired = max(math.ceil(load.arrival_rate / capacity), 1)
            total = desired * capacity
            required = max(0.0, load.arrival_rate - total)
            spare = max(0.0, total - load.arrival_rate)
            results.append(QueueingVariantResult(v.name, params, load, capacity, desired, total, required, spare))
        return QueueingAnalysis(slo, source, tuple(results))
