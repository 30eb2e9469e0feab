"""WVA's queueing model of one vLLM replica: a state-dependent M/M/1/K birth-death queue.

Semantics 2.1-2.3 (llm-inferno ``queue-analysis``, WVA ``pkg/analyzer``). One replica holds up to
``N`` requests in its running batch and ``Q`` more in its waiting queue (``K = N + Q``). With ``n``
requests in service the batch takes ``T_req(n) = Prefill(n) + D * Decode(n)`` ms per request, so the
service rate is ``mu(n) = n / T_req(n)`` (``mu(N)`` beyond the batch). Rates inside are per ms, rates at
the interface per second; times are ms, as WVA reports them.

Two generations of service-time functions exist (:class:`ServiceTimes`):

* ``current`` (PR #727, Feb 2026 onwards): alpha = per-iteration overhead, beta = compute ms per
  token, gamma = KV memory-access ms per token; I and O are float averages.
* ``era-a`` (v0.0.x): ITL = alpha + beta*n (decode), prefill = gamma + delta*I*n; I, O integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from twin.errors import TwinInputError

# Semantics 2.1: the stable range is [0.001*mu(1), 0.999*mu(N)].
MIN_RATE_FRACTION = 0.001
MAX_RATE_FRACTION = 0.999
# Semantics 2.1: bisection on each target to 1e-6 relative, at most 100 halvings.
SIZE_TOLERANCE = 1e-6
SIZE_MAX_ITERATIONS = 100
# A TPS target contributes 0.9 * lambda_max (its value is not used, as in WVA).
TPS_RATE_FRACTION = 0.9


class Generation(StrEnum):
    CURRENT = "current"
    ERA_A = "era-a"


class InfeasibleTargetError(ValueError):
    """An SLO target below what the replica reaches even at the lowest rate ("below the bounded region")."""


@dataclass(frozen=True, slots=True)
class ServiceTimes:
    """Per-batch service-time functions of one accelerator and one request shape (I, O tokens)."""

    alpha: float
    beta: float
    gamma: float
    input_tokens: float
    output_tokens: float
    delta: float = 0.0
    generation: Generation = Generation.CURRENT

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma", "delta", "input_tokens", "output_tokens"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise TwinInputError("must be a finite number >= 0", obj="queue model", field=name, value=value)

    @property
    def decodes(self) -> float:
        """D: decode iterations per request."""
        if self.generation is Generation.CURRENT:
            return self.output_tokens
        if self.input_tokens == 0 and self.output_tokens == 1:
            return 1.0  # era-A special case
        return max(self.output_tokens - 1.0, 0.0)

    def iteration_ms(self, n: float) -> float:
        """Current model: T_it(n) = alpha + n*(beta*(I+O)/(O+1) + gamma*(I + O/2))."""
        i, o = self.input_tokens, self.output_tokens
        return self.alpha + n * (self.beta * (i + o) / (o + 1.0) + self.gamma * (i + o / 2.0))

    def prefill_ms(self, n: float) -> float:
        if self.input_tokens == 0:
            return 0.0
        if self.generation is Generation.CURRENT:
            return self.iteration_ms(n) + (self.beta + self.gamma) * self.input_tokens
        return self.gamma + self.delta * self.input_tokens * n

    def decode_ms(self, n: float) -> float:
        if self.generation is Generation.CURRENT:
            return self.iteration_ms(n) + self.beta + self.gamma * (self.input_tokens + self.output_tokens / 2.0)
        return self.alpha + self.beta * n

    def service_ms(self, n: float) -> float:
        """T_req(n) = Prefill(n) + D*Decode(n)."""
        return self.prefill_ms(n) + self.decodes * self.decode_ms(n)


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """What ``analyze`` returns. Rates in req/s, times in ms."""

    rate: float
    throughput: float
    avg_resp_ms: float
    wait_ms: float
    service_ms: float
    avg_num_in_service: float
    avg_num_in_system: float
    prefill_ms: float
    ttft_ms: float
    itl_ms: float
    rho: float
    max_rate: float
    blocking_probability: float


@dataclass(frozen=True, slots=True)
class SizeTargets:
    """SLO targets for ``size``; 0 means "not set". TTFT and ITL in ms, TPS in tokens/s."""

    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    tps: float = 0.0


@dataclass(frozen=True, slots=True)
class SizeResult:
    """``size`` output: the per-target rates, the chosen rate and the metrics there.

    ``capacity`` is the throughput at the chosen rate (semantics 2.1), slightly below ``rate``
    near saturation because of blocking.
    """

    rate_ttft: float | None
    rate_itl: float | None
    rate_tps: float | None
    rate: float
    capacity: float
    metrics: QueueMetrics


class QueueModel:
    """One replica: max batch ``N``, max queue ``Q``, service times. ``analyze`` and ``size``."""

    def __init__(self, service: ServiceTimes, max_batch: int, max_queue: int) -> None:
        if max_batch < 1:
            raise TwinInputError("must be at least 1", obj="queue model", field="max_batch", value=max_batch)
        if max_queue < 0:
            raise TwinInputError("must not be negative", obj="queue model", field="max_queue", value=max_queue)
        if service.generation is Generation.CURRENT and service.output_tokens < 1:
            # The service-time functions accept O = 0 (upstream tests do), the queue model does not.
            raise TwinInputError(
                "the current model needs at least one output token",
                obj="queue model",
                field="output_tokens",
                value=service.output_tokens,
            )
        if service.service_ms(1.0) <= 0:
            raise TwinInputError(
                "the parameters give a zero service time; set alpha, beta or gamma above 0",
                obj="queue model",
                field="alpha",
                value=service.alpha,
            )
        self.service = service
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.capacity_k = max_batch + max_queue
        n = np.arange(1, max_batch + 1, dtype=float)
        service_ms = np.array([service.service_ms(float(k)) for k in n])
        mu_batch = n / service_ms  # per ms
        # mu(n) for n = 1..K; beyond the batch the server runs at mu(N) and the rest waits.
        self._mu = np.concatenate([mu_batch, np.full(max_queue, mu_batch[-1])])
        self._n = np.arange(0, self.capacity_k + 1, dtype=float)
        self._in_service = np.minimum(self._n, float(max_batch))
        self.min_rate = MIN_RATE_FRACTION * float(self._mu[0]) * 1000.0
        self.max_rate = MAX_RATE_FRACTION * float(mu_batch[-1]) * 1000.0

    def _probabilities(self, rate_per_ms: float) -> np.ndarray:
        # Work in logs: p(n) ~ prod lambda/mu(k) overflows float64 for large K near saturation.
        log_terms = np.log(rate_per_ms) - np.log(self._mu)
        log_p = np.concatenate([[0.0], np.cumsum(log_terms)])
        log_p -= log_p.max()
        p = np.exp(log_p)
        return p / p.sum()

    def analyze(self, rate: float) -> QueueMetrics:
        """Steady-state metrics at an arrival rate in req/s (0 < rate <= max_rate)."""
        if not math.isfinite(rate) or rate <= 0:
            raise TwinInputError("the arrival rate must be > 0", obj="queue model", field="rate", value=rate)
        if rate > self.max_rate:
            raise TwinInputError(
                f"the arrival rate is above the stable range (max {self.max_rate:.6g} req/s)",
                obj="queue model",
                field="rate",
                value=rate,
            )
        lam = rate / 1000.0
        p = self._probabilities(lam)
        p_block = float(p[-1])
        x = lam * (1.0 - p_block)
        num_in_system = float(np.dot(self._n, p))
        num_in_service = float(np.dot(self._in_service, p))
        resp = num_in_system / x
        serv = num_in_service / x
        wait = max(resp - serv, 0.0)
        st = self.service
        if st.generation is Generation.CURRENT:
            prefill = st.prefill_ms(num_in_service)
            itl = (serv - prefill) / st.output_tokens
            ttft = wait + prefill + itl
        else:
            slope = st.delta * st.input_tokens + st.beta * (st.output_tokens - 1.0)
            base = st.gamma + st.alpha * (st.output_tokens - 1.0)
            n_eff = (serv - base) / slope if slope > 0 else 0.0
            n_eff = min(max(n_eff, 0.0), float(self.max_batch))
            prefill = st.prefill_ms(n_eff)
            itl = st.alpha + st.beta * n_eff
            ttft = wait + prefill
        return QueueMetrics(
            rate=rate,
            throughput=x * 1000.0,
            avg_resp_ms=resp,
            wait_ms=wait,
            service_ms=serv,
            avg_num_in_service=num_in_service,
            avg_num_in_system=num_in_system,
            prefill_ms=prefill,
            ttft_ms=ttft,
            itl_ms=itl,
            rho=min(max(num_in_service / self.max_batch, 0.0), 1.0),
            max_rate=self.max_rate,
            blocking_probability=p_block,
        )

    def _rate_for(self, target: float, metric: str) -> float:
        def f(rate: float) -> float:
            return float(getattr(self.analyze(rate), metric))

        lo, hi = self.min_rate, self.max_rate
        f_lo, f_hi = f(lo), f(hi)
        if target < f_lo:
            raise InfeasibleTargetError(
                f"{metric} target {target:g} ms is below the bounded region (best {f_lo:.6g} ms at the lowest rate)"
            )
        if target >= f_hi:
            return hi  # semantics 2.1: a target above the range is met at the maximum rate
        mid = lo
        for _ in range(SIZE_MAX_ITERATIONS):
            mid = 0.5 * (lo + hi)
            value = f(mid)
            if abs(value - target) <= SIZE_TOLERANCE * target:
                break
            if value < target:
                lo = mid
            else:
                hi = mid
        return mid

    def size(self, targets: SizeTargets) -> SizeResult:
        """The largest arrival rate meeting every non-zero target; raises InfeasibleTargetError."""
        rate_ttft = self._rate_for(targets.ttft_ms, "ttft_ms") if targets.ttft_ms > 0 else None
        rate_itl = self._rate_for(targets.itl_ms, "itl_ms") if targets.itl_ms > 0 else None
        rate_tps = TPS_RATE_FRACTION * self.max_rate if targets.tps > 0 else None
        candidates = [r for r in (rate_ttft, rate_itl, rate_tps) if r is not None]
        rate = min(candidates) if candidates else self.max_rate
        metrics = self.analyze(rate)
        return SizeResult(rate_ttft, rate_itl, rate_tps, rate, metrics.throughput, metrics)
