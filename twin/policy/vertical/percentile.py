"""The percentile recommender (``recommender/percentile_recommender.go``, semantics 5.3).

Steps, in this order (each one is a function below so tests can check it alone):

1. estimate ``est_p = histogram.percentile(p) * (1 + margin)``, truncated (TFLOPs to an integer,
   VRAM to whole bytes);
2. request by QoS (critical: upper bound, high: target, low/medium: lower bound); limit = upper bound;
3. raise request and limit to the minimum (1 TFLOPs, 1 GiB);
4. clamp the request into ``[origReq*minRatio, origReq*maxRatio]`` and the limit into
   ``[origLim*minRatio, origLim*maxRatio]`` (compute [0.1, 10], VRAM [0.2, 5]);
5. compute only: the limit never goes below the original (user's) limit;
6. if both requests are within ``updateThreshold`` (10%) of the current ones: nothing to apply
   (reason ``InsideUpdateThreshold``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twin.errors import TwinInputError
from twin.policy.vertical.aggregator import WorkloadUsageAggregator
from twin.policy.vertical.capacity import quantity_text
from twin.policy.vertical.config import AutoSetResources
from twin.policy.vertical.types import RecResult, Resources, WorkloadView
from twin.resources import GIB, QoS, Resource
from twin.units import format_bytes

MIN_TFLOPS = 1.0
MIN_VRAM = GIB
INSIDE_UPDATE_THRESHOLD = "InsideUpdateThreshold"
MAX_HISTORY_S = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class Estimate:
    lower: float
    target: float
    upper: float


@dataclass(frozen=True, slots=True)
class PercentileConfig:
    """Code defaults (the API doc comments disagree; the code wins, semantics 5.3)."""

    target_compute_percentile: float = 0.95
    lower_bound_compute_percentile: float = 0.5
    upper_bound_compute_percentile: float = 0.99
    target_vram_percentile: float = 0.98
    lower_bound_vram_percentile: float = 0.5
    upper_bound_vram_percentile: float = 0.99
    margin_fraction: float = 0.15
    update_threshold: float = 0.1
    min_compute_ratio: float = 0.1
    max_compute_ratio: float = 10.0
    min_vram_ratio: float = 0.2
    max_vram_ratio: float = 5.0
    history_data_period_s: float = 2 * 3600.0
    initial_delay_period_s: float = 30 * 60.0

    def __post_init__(self) -> None:
        for name in (
            "target_compute_percentile",
            "lower_bound_compute_percentile",
            "upper_bound_compute_percentile",
            "target_vram_percentile",
            "lower_bound_vram_percentile",
            "upper_bound_vram_percentile",
        ):
            p = getattr(self, name)
            if not (0.0 < p <= 1.0):
                raise TwinInputError("a percentile must be in (0, 1]", obj="autoSetResources", field=name, value=p)
        for name in ("margin_fraction", "update_threshold", "initial_delay_period_s"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise TwinInputError("must be finite and not negative", obj="autoSetResources", field=name, value=v)
        if not (self.history_data_period_s > 0):
            raise TwinInputError(
                "must be positive", obj="autoSetResources", field="historyDataPeriod", value=self.history_data_period_s
            )
        for lo, hi in (("min_compute_ratio", "max_compute_ratio"), ("min_vram_ratio", "max_vram_ratio")):
            a, b = getattr(self, lo), getattr(self, hi)
            if not (0 <= a <= b) or not math.isfinite(b):
                raise TwinInputError("need 0 <= min ratio <= max ratio", obj="autoSetResources", field=hi, value=(a, b))

    @property
    def history_s(self) -> float:
        """historyDataPeriod, capped at 30 days as the loader does."""
        return min(self.history_data_period_s, MAX_HISTORY_S)

    @property
    def half_life_s(self) -> float:
        return self.history_s / 2

    @staticmethod
    def from_auto_set(asr: AutoSetResources | None) -> PercentileConfig:
        if asr is None:
            return PercentileConfig()
        base = PercentileConfig()
        pairs = {
            "target_compute_percentile": asr.target_compute_percentile,
            "lower_bound_compute_percentile": asr.lower_bound_compute_percentile,
            "upper_bound_compute_percentile": asr.upper_bound_compute_percentile,
            "target_vram_percentile": asr.target_vram_percentile,
            "lower_bound_vram_percentile": asr.lower_bound_vram_percentile,
            "upper_bound_vram_percentile": asr.upper_bound_vram_percentile,
            "margin_fraction": asr.margin_fraction,
            "update_threshold": asr.update_threshold,
            "min_compute_ratio": asr.min_compute_ratio,
            "max_compute_ratio": asr.max_compute_ratio,
            "min_vram_ratio": asr.min_vram_ratio,
            "max_vram_ratio": asr.max_vram_ratio,
            "history_data_period_s": asr.history_data_period_s,
            "initial_delay_period_s": asr.initial_delay_period_s,
        }
        values = {k: (v if v is not None else getattr(base, k)) for k, v in pairs.items()}
        return PercentileConfig(**values)


def estimates(usage: WorkloadUsageAggregator, cfg: PercentileConfig) -> tuple[Estimate, Estimate]:
    """(TFLOPs, VRAM) estimates: percentile times (1 + margin), truncated."""
    m = 1.0 + cfg.margin_fraction
    t, v = usage.tflops, usage.vram
    compute = Estimate(
        lower=float(int(t.percentile(cfg.lower_bound_compute_percentile) * m)),
        target=float(int(t.percentile(cfg.target_compute_percentile) * m)),
        upper=float(int(t.percentile(cfg.upper_bound_compute_percentile) * m)),
    )
    vram = Estimate(
        lower=float(int(v.percentile(cfg.lower_bound_vram_percentile) * m)),
        target=float(int(v.percentile(cfg.target_vram_percentile) * m)),
        upper=float(int(v.percentile(cfg.upper_bound_vram_percentile) * m)),
    )
    return compute, vram


def request_for_qos(est: Estimate, qos: QoS) -> float:
    if qos is QoS.CRITICAL:
        return est.upper
    if qos is QoS.HIGH:
        return est.target
    return est.lower


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def clamp_recommendation(request: Resource, limit: Resource, original: Resources, cfg: PercentileConfig) -> Resources:
    """Steps 3-5: minimums, ratio clamps against the original spec, the compute-limit floor."""
    req_t = max(request.tflops, MIN_TFLOPS)
    lim_t = max(limit.tflops, MIN_TFLOPS)
    req_v = max(request.vram, MIN_VRAM)
    lim_v = max(limit.vram, MIN_VRAM)
    o_req, o_lim = original.request, original.limit
    req_t = _clamp(req_t, o_req.tflops * cfg.min_compute_ratio, o_req.tflops * cfg.max_compute_ratio)
    lim_t = _clamp(lim_t, o_lim.tflops * cfg.min_compute_ratio, o_lim.tflops * cfg.max_compute_ratio)
    req_v = int(_clamp(req_v, int(o_req.vram * cfg.min_vram_ratio), int(o_req.vram * cfg.max_vram_ratio)))
    lim_v = int(_clamp(lim_v, int(o_lim.vram * cfg.min_vram_ratio), int(o_lim.vram * cfg.max_vram_ratio)))
    lim_t = max(lim_t, o_lim.tflops)
    return Resources(Resource(tflops=req_t, vram=req_v), Resource(tflops=lim_t, vram=lim_v))


def inside_update_threshold(rec: Resources, current: Resources, threshold: float) -> bool:
    """True when both requests moved by at most ``threshold`` times the current request."""
    cur, new = current.request, rec.request
    return abs(new.tflops - cur.tflops) <= threshold * cur.tflops and abs(new.vram - cur.vram) <= threshold * cur.vram


class PercentileRecommender:
    name = "percentile"

    def recommend(self, view: WorkloadView, now_s: float) -> RecResult | None:
        asr = view.config.auto_set_resources
        if asr is None or not asr.active or view.usage is None:
            return None
        if view.usage.tflops.is_empty() and view.usage.vram.is_empty():
            return None  # no samples yet: nothing to estimate from
        cfg = PercentileConfig.from_auto_set(asr)
        return recommend_from_usage(view, view.usage, cfg)


def recommend_from_usage(view: WorkloadView, usage: WorkloadUsageAggregator, cfg: PercentileConfig) -> RecResult:
    compute, vram = estimates(usage, cfg)
    request = Resource(tflops=request_for_qos(compute, view.qos), vram=int(request_for_qos(vram, view.qos)))
    limit = Resource(tflops=compute.upper, vram=int(vram.upper))
    rec = clamp_recommendation(request, limit, view.original, cfg)
    if inside_update_threshold(rec, view.current, cfg.update_threshold):
        return RecResult("percentile", rec, has_applied=True, reason=INSIDE_UPDATE_THRESHOLD)
    if rec == view.current:
        return RecResult("percentile", rec, has_applied=True, reason="unchanged")
    return RecResult("percentile", rec, reason=scaled_message(view.current, rec))


def scaled_message(current: Resources, rec: Resources) -> str:
    """The recommender's condition in TensorFusion's words ("Compute scaled", "VRAM scaled",
    ``percentile_recommender.go``), with the twin's request/limit values beside them."""
    parts = []
    if (rec.request.tflops, rec.limit.tflops) != (current.request.tflops, current.limit.tflops):
        parts.append(
            f"Compute scaled: request {quantity_text(current.request.tflops)} -> {quantity_text(rec.request.tflops)}"
            f" TFLOPs, limit {quantity_text(current.limit.tflops)} -> {quantity_text(rec.limit.tflops)} TFLOPs"
        )
    if (rec.request.vram, rec.limit.vram) != (current.request.vram, current.limit.vram):
        parts.append(
            f"VRAM scaled: request {format_bytes(current.request.vram)} -> {format_bytes(rec.request.vram)},"
            f" limit {format_bytes(current.limit.vram)} -> {format_bytes(rec.limit.vram)}"
        )
    return "; ".join(parts) + " (percentile estimate outside the update threshold)"
