"""Named serving autoscalers, one registry: each turns one model's observation into HPA metric signals.

| name            | mirrors                                     | signal to the HPA                          |
|-----------------|---------------------------------------------|--------------------------------------------|
| model-based     | WVA era A: queue model + inferno solver     | External ``wva_desired_replicas``, target 1 |
| saturation-v1   | WVA v0.5-v0.8: KV %/queue spare, +-1        | same                                       |
| saturation-v2   | WVA >= v0.9: token capacity, cost-aware     | same                                       |
| hpa-kv          | plain HPA on ``vllm:kv_cache_usage_perc``    | Pods metric, average target (0.7)          |
| hpa-queue       | plain HPA on ``vllm:num_requests_waiting``   | Pods metric, average target (2)            |
| static          | a fixed replica count                       | External, the fixed count                  |

Every autoscaler ticks at ``interval_s`` (WVA's cycle); the HPA layer then applies tolerance,
stabilisation and policies at its own sync period.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from twin.errors import TwinInputError
from twin.policy.serving.hpa import MetricSignal
from twin.policy.serving.inferno import Allocation, ServerCandidates, ServerLoad, create_allocation, solve_unlimited
from twin.policy.serving.observation import ModelObservation
from twin.policy.serving.saturation import (
    SaturationConfig,
    SaturationV2Analyzer,
    ScaleToZeroConfig,
    enforce_scale_to_zero,
)
from twin.policy.serving.saturation_v1 import V1Decision, V1Rules, decide_v1


class Autoscaler(Protocol):
    name: str
    interval_s: float

    def decide(self, now: float, obs: ModelObservation) -> dict[str, int]:
        """Desired replicas per variant of this model (WVA's emitted value)."""
        ...

    def signals(self, obs: ModelObservation, desired: dict[str, int]) -> dict[str, list[MetricSignal]]:
        """What the HPA of each variant reads, given the last desired values."""
        ...


def _external(desired: dict[str, int]) -> dict[str, list[MetricSignal]]:
    return {name: [MetricSignal(float(n), 1.0)] for name, n in desired.items()}


@dataclass
class ModelBasedAutoscaler:
    """Era A: per variant, size replicas with the queue model on its labelled accelerator
    (KeepAccelerator), pick by the unlimited solver; an infeasible SLO keeps the last value."""

    interval_s: float = 60.0
    scale_to_zero: bool = False
    integer_tokens: bool = True
    name: str = "model-based"
    _last: dict[str, int] = field(default_factory=dict)

    def decide(self, now: float, obs: ModelObservation) -> dict[str, int]:
        servers = []
        for v in obs.variants:
            if v.perf is None:
                continue
            # Era A queries by model_name: a variant's load is the model's unless given per variant.
            rate = obs.variant_arrival.get(v.name, obs.arrival_rate)
            load = ServerLoad(rate * 60.0, obs.input_tokens, obs.output_tokens)
            min_rep = 0 if self.scale_to_zero else max(v.min_replicas, 1)
            cand = create_allocation(
                load, v.perf, v.cost, v.targets, min_replicas=min_rep, integer_tokens=self.integer_tokens
            )
            if cand is None:
                continue
            current = Allocation(v.perf.name, v.current, v.cost * v.perf.acc_count * v.current)
            servers.append(ServerCandidates(v.name, (cand,), current=current))
        chosen = solve_unlimited(servers)
        out: dict[str, int] = {}
        for v in obs.variants:
            key = f"{obs.key}|{v.name}"
            if v.name in chosen:
                n = min(chosen[v.name].replicas, v.max_replicas)
                out[v.name] = n if self.scale_to_zero else max(n, v.min_replicas)
            else:
                out[v.name] = self._last.get(key, v.current)  # safety net: re-emit the previous value
            self._last[key] = out[v.name]
        return out

    def signals(self, obs: ModelObservation, desired: dict[str, int]) -> dict[str, list[MetricSignal]]:
        return _external(desired)


@dataclass
class SaturationV1Autoscaler:
    """V1; ``rules`` picks the WVA release's transition test and base count ("latest" or "v0.5").
    ``last_decisions`` keeps each model's last :class:`V1Decision` (which pods, which spare values)."""

    interval_s: float = 30.0
    config: SaturationConfig = field(default_factory=SaturationConfig)
    scale_to_zero: ScaleToZeroConfig = field(default_factory=ScaleToZeroConfig)
    rules: V1Rules = V1Rules.LATEST
    name: str = "saturation-v1"
    last_decisions: dict[str, V1Decision] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.rules = V1Rules(self.rules)
        except ValueError:
            known = ", ".join(r.value for r in V1Rules)
            raise TwinInputError(f"unknown V1 rules; known: {known}", field="rules", value=self.rules) from None

    def decide(self, now: float, obs: ModelObservation) -> dict[str, int]:
        decision = decide_v1(obs, self.config, self.rules)
        self.last_decisions[obs.key] = decision
        return enforce_scale_to_zero(obs, decision.targets, self.scale_to_zero)

    def signals(self, obs: ModelObservation, desired: dict[str, int]) -> dict[str, list[MetricSignal]]:
        return _external(desired)


@dataclass
class SaturationV2Autoscaler:
    interval_s: float = 15.0
    config: SaturationConfig = field(default_factory=SaturationConfig)
    scale_to_zero: ScaleToZeroConfig = field(default_factory=ScaleToZeroConfig)
    name: str = "saturation-v2"
    _analyzer: SaturationV2Analyzer | None = None

    def decide(self, now: float, obs: ModelObservation) -> dict[str, int]:
        if self._analyzer is None:
            self._analyzer = SaturationV2Analyzer(self.config)
        return enforce_scale_to_zero(obs, self._analyzer.targets(obs), self.scale_to_zero)

    def signals(self, obs: ModelObservation, desired: dict[str, int]) -> dict[str, list[MetricSignal]]:
        return _external(desired)


@dataclass
class PodMetricAutoscaler:
    """A plain HPA on a per-pod vLLM metric (the benchmark's "HPA on saturation metrics")."""

    metric: str = "kv_usage"
    target: float = 0.7
    interval_s: float = 15.0
    name: str = "hpa-kv"

    def decide(self, now: float, obs: ModelObservation) -> dict[str, int]:
        return {v.name: v.current for v in obs.variants}

    def signals(self, obs: ModelObservation, desired: dict[str, int]) -> dict[str, list[MetricSignal]]:
        out: dict[str, list[MetricSignal]] = {}
        for v in obs.variants:
            reps = obs.replicas_of(v.name)
            usage = sum(float(getattr(r, self.metric)) for r in reps)
            out[v.name] = [MetricSignal(usage, self.target, len(reps))]
        return out


@dataclass
class StaticAutoscaler:
    replicas: int = 2
    interval_s: float = 60.0
    name: str = "static"

    def decide(self, now: float, obs: ModelObservation) -> dict[str, int]:
        return {v.name: self.replicas for v in obs.variants}

    def signals(self, obs: ModelObservation, desired: dict[str, int]) -> dict[str, list[MetricSignal]]:
        return _external(desired)


def decide_models(
    scaler: Autoscaler, now: float, observations: Sequence[ModelObservation]
) -> dict[str, dict[str, int]]:
    """One cycle over several models: each ``modelID|namespace`` group analysed on its own, in key order."""
    keys = [o.key for o in observations]
    if len(set(keys)) != len(keys):
        raise TwinInputError("each model (modelID|namespace) must appear once", field="observations", value=keys)
    return {o.key: scaler.decide(now, o) for o in sorted(observations, key=lambda o: o.key)}


def _hpa_kv(**params: Any) -> Autoscaler:
    return PodMetricAutoscaler(**{"metric": "kv_usage", "target": 0.7, "name": "hpa-kv", **params})


def _hpa_queue(**params: Any) -> Autoscaler:
    return PodMetricAutoscaler(**{"metric": "waiting", "target": 2.0, "name": "hpa-queue", **params})


def _saturation_config(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    if isinstance(out.get("config"), dict):
        out["config"] = SaturationConfig(**out["config"])
    if isinstance(out.get("scale_to_zero"), dict):
        out["scale_to_zero"] = ScaleToZeroConfig(**out["scale_to_zero"])
    return out


_REGISTRY: dict[str, Callable[..., Autoscaler]] = {
    "model-based": ModelBasedAutoscaler,
    "saturation-v1": lambda **p: SaturationV1Autoscaler(**_saturation_config(p)),
    "saturation-v2": lambda **p: SaturationV2Autoscaler(**_saturation_config(p)),
    "hpa-kv": _hpa_kv,
    "hpa-queue": _hpa_queue,
    "static": StaticAutoscaler,
}


def autoscaler_names() -> list[str]:
    return list(_REGISTRY)


def get_autoscaler(name: str, **params: Any) -> Autoscaler:
    """A fresh autoscaler by registry name; parameters are its dataclass fields."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise TwinInputError(f"unknown autoscaler; known: {', '.join(_REGISTRY)}", field="autoscaler", value=name)
    try:
        return factory(**params)
    except TypeError as err:
        raise TwinInputError(f"bad parameters for autoscaler {name}: {err}", field="params", value=params) from err
