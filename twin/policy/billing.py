"""Worker and node cost, as TensorFusion's metrics recorder computes it (semantics 3, billing).

Per worker, per second::

    [reqT·pT + (limT - reqT)·pT·r + reqV·pV + (limV - reqV)·pV·r] · gpu_count

with ``pT``/``pV`` the per-hour unit prices of the worker's QoS divided by 3600, ``r`` that QoS's
``limitsOverRequests`` and VRAM in GiB. While a non-critical worker's eviction protection lasts
(``now < created_at + protection``) the cost is multiplied by the pool's eviction-protection ratio.
A node's raw cost is the sum of its GPUs' catalogue prices. Pure: ``now`` is an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from twin.errors import TwinInputError
from twin.hardware import HardwareCatalog
from twin.resources import GIB, AllocRequest, QoS

DEFAULT_TFLOPS_PER_HOUR = 0.0069228  # GPUPool qosConfig.pricing[].requests.perFP16TFlopsPerHour default
DEFAULT_VRAM_GIB_PER_HOUR = 0.01548  # ... perGBOfVRAMPerHour default
DEFAULT_EVICTION_PROTECTION_RATIO = 1.2  # qosConfig.evictionProtectionPriceRatio default
SAMPLE_LIMITS_OVER_REQUESTS: Mapping[QoS, float] = MappingProxyType(
    {QoS.LOW: 0.1, QoS.MEDIUM: 0.3, QoS.HIGH: 0.6, QoS.CRITICAL: 1.0}
)  # config/samples tensorfusioncluster: how much of the limit-above-request is billed, per QoS


@dataclass(frozen=True)
class QoSPrice:
    """One ``qosConfig.pricing`` entry."""

    tflops_per_hour: float = DEFAULT_TFLOPS_PER_HOUR
    vram_gib_per_hour: float = DEFAULT_VRAM_GIB_PER_HOUR
    limits_over_requests: float = 1.0  # CRD default "1"

    def __post_init__(self) -> None:
        for name in ("tflops_per_hour", "vram_gib_per_hour", "limits_over_requests"):
            value = getattr(self, name)
            if value < 0:
                raise TwinInputError("price must not be negative", obj="qosConfig.pricing", field=name, value=value)


@dataclass(frozen=True)
class PricingTable:
    """A pool's ``qosConfig`` pricing. A QoS missing from ``prices`` costs nothing (as in TensorFusion)."""

    prices: Mapping[QoS, QoSPrice] = field(default_factory=dict)
    eviction_protection_price_ratio: float = DEFAULT_EVICTION_PROTECTION_RATIO

    @staticmethod
    def sample() -> PricingTable:
        """Default unit prices with the sample ratios (low 0.1, medium 0.3, high 0.6, critical 1.0)."""
        return PricingTable({q: QoSPrice(limits_over_requests=r) for q, r in SAMPLE_LIMITS_OVER_REQUESTS.items()})

    @property
    def protection_multiplier(self) -> float:
        """The eviction-protection multiplier; a ratio below 1 is replaced by the default 1.2."""
        ratio = self.eviction_protection_price_ratio
        return ratio if ratio >= 1 else DEFAULT_EVICTION_PROTECTION_RATIO


def parse_price(text: str | float, *, obj: str = "qosConfig.pricing", field_name: str = "price") -> float:
    """A price as written in a GPUPool (``"$0.0069228"`` or ``0.0069228``) as a float of dollars."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        raw = text.strip().removeprefix("$").strip()
        try:
            value = float(raw)
        except ValueError:
            raise TwinInputError("not a price", obj=obj, field=field_name, value=text) from None
    if value < 0 or value != value:
        raise TwinInputError("price must be a non-negative number", obj=obj, field=field_name, value=text)
    return value


def eviction_protected(qos: QoS, now: float, created_at: float, protection_s: float) -> bool:
    """True while a non-critical worker is inside its ``eviction-protection`` window."""
    return qos is not QoS.CRITICAL and protection_s > 0 and now < created_at + protection_s


def worker_cost_per_second(req: AllocRequest, pricing: PricingTable, *, capacity_tflops: float | None = None) -> float:
    """Dollars per second for one worker, before eviction protection.

    A request or limit given as compute percent is converted to TFLOPs with ``capacity_tflops``
    (the recorder reports ``tflops_*`` derived from the percent). The part of the limit above the
    request is billed at ratio ``r``; a limit below the request (including 0 = "unlimited") adds
    nothing rather than a negative surcharge.
    """
    price = pricing.prices.get(req.qos)
    if price is None:
        return 0.0
    req_t = _tflops(req.request.tflops, req.request.compute_percent, capacity_tflops, req.uid)
    lim_t = _tflops(req.limit.tflops, req.limit.compute_percent, capacity_tflops, req.uid)
    req_v = req.request.vram / GIB
    lim_v = req.limit.vram / GIB
    p_t = price.tflops_per_hour / 3600.0
    p_v = price.vram_gib_per_hour / 3600.0
    r = price.limits_over_requests
    per_gpu = req_t * p_t + max(0.0, lim_t - req_t) * p_t * r + req_v * p_v + max(0.0, lim_v - req_v) * p_v * r
    return per_gpu * req.gpu_count


def worker_cost(
    req: AllocRequest,
    seconds: float,
    pricing: PricingTable,
    *,
    now: float = 0.0,
    created_at: float = 0.0,
    eviction_protection_s: float = 0.0,
    capacity_tflops: float | None = None,
) -> float:
    """Dollars one worker costs over ``seconds`` ending at tick ``now`` (one recorder tick).

    As in the recorder, protection is decided once per tick from ``now``, not prorated inside it.
    """
    cost = worker_cost_per_second(req, pricing, capacity_tflops=capacity_tflops) * seconds
    if eviction_protected(req.qos, now, created_at, eviction_protection_s):
        cost *= pricing.protection_multiplier
    return cost


def node_raw_cost(gpu_models: Iterable[str], seconds: float, catalog: HardwareCatalog) -> float:
    """Sum over a node's GPUs of the catalogue ``costPerHour``·seconds/3600."""
    return sum(catalog.get(model).cost_per_hour for model in gpu_models) * seconds / 3600.0


def _tflops(tflops: float, percent: float, capacity: float | None, uid: str) -> float:
    if tflops > 0 or percent <= 0:
        return tflops
    if capacity is None:
        raise ValueError(f"worker {uid!r} uses compute percent: pass capacity_tflops to price it")
    return percent * capacity / 100.0
