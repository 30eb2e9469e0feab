"""Autoscaling configuration and the three ways to turn it on (semantics 5.1).

1. Pod annotation ``tensor-fusion.ai/autoscale: "true"`` (+ ``autoscale-target``, default all).
2. ``WorkloadProfile.autoScalingConfig.autoSetResources`` with ``enable`` and a non-empty ``targetResource``.
3. The pool SchedulingConfigTemplate's ``verticalScalingRules``: the first rule whose selector matches
   the pod's labels is merged into the workload's config. The merge fills only fields the workload
   left unset (Go ``mergo.Merge`` default semantics; the twin's reading, see docs/fidelity.md#vertical).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

from twin.errors import TwinInputError
from twin.policy.vertical.selector import LabelSelector
from twin.policy.vertical.types import Resources, TargetResource

ANNOTATION_AUTOSCALE = "tensor-fusion.ai/autoscale"
ANNOTATION_AUTOSCALE_TARGET = "tensor-fusion.ai/autoscale-target"


@dataclass(frozen=True, slots=True)
class AutoSetResources:
    """``autoSetResources``. ``None`` fields take the code defaults (see PercentileConfig)."""

    enable: bool = False
    target_resource: TargetResource | None = None
    target_compute_percentile: float | None = None
    lower_bound_compute_percentile: float | None = None
    upper_bound_compute_percentile: float | None = None
    target_vram_percentile: float | None = None
    lower_bound_vram_percentile: float | None = None
    upper_bound_vram_percentile: float | None = None
    margin_fraction: float | None = None
    update_threshold: float | None = None
    history_data_period_s: float | None = None
    initial_delay_period_s: float | None = None
    interval_s: float | None = None
    min_compute_ratio: float | None = None
    max_compute_ratio: float | None = None
    min_vram_ratio: float | None = None
    max_vram_ratio: float | None = None

    @property
    def active(self) -> bool:
        return self.enable and self.target_resource is not None


@dataclass(frozen=True, slots=True)
class CronScalingRule:
    """``cronScalingRules[]``: between ``start`` and ``end`` (5-field cron) use ``desired``."""

    name: str
    start: str
    end: str
    desired: Resources
    enable: bool = True


@dataclass(frozen=True, slots=True)
class ExternalScalerConfig:
    """``externalScaler``: where the live adapter POSTs (the twin's simulation calls a Python object)."""

    enable: bool = False
    url: str = ""
    api_key_secret: str = ""
    initial_delay_period_s: float | None = None
    interval_s: float | None = None


@dataclass(frozen=True, slots=True)
class AutoScalingConfig:
    auto_set_resources: AutoSetResources | None = None
    cron_scaling_rules: tuple[CronScalingRule, ...] = ()
    external_scaler: ExternalScalerConfig | None = None

    @property
    def enabled(self) -> bool:
        return (
            (self.auto_set_resources is not None and self.auto_set_resources.active)
            or any(r.enable for r in self.cron_scaling_rules)
            or (self.external_scaler is not None and self.external_scaler.enable)
        )

    @property
    def target(self) -> TargetResource:
        """What the autoscaler may change; cron/external-only configs change both sides."""
        asr = self.auto_set_resources
        if asr is not None and asr.active and asr.target_resource is not None:
            return asr.target_resource
        return TargetResource.ALL


@dataclass(frozen=True, slots=True)
class VerticalScalingRule:
    """SchedulingConfigTemplate ``verticalScalingRules[]``."""

    selector: LabelSelector
    auto_scaling: AutoScalingConfig
    name: str = ""


def parse_target(value: str, *, obj: str | None = None, field: str = ANNOTATION_AUTOSCALE_TARGET) -> TargetResource:
    try:
        return TargetResource(value.strip().lower())
    except ValueError:
        raise TwinInputError(
            "autoscale target must be compute, vram or all", obj=obj, field=field, value=value
        ) from None


def _fill_unset(own: AutoSetResources, base: AutoSetResources) -> AutoSetResources:
    """Fields ``own`` leaves at their zero value (None/False) take ``base``'s value (mergo.Merge)."""
    changes = {}
    for f in fields(AutoSetResources):
        mine = getattr(own, f.name)
        if mine is None or mine is False:
            changes[f.name] = getattr(base, f.name)
    return replace(own, **changes)


def merge_config(own: AutoScalingConfig, base: AutoScalingConfig) -> AutoScalingConfig:
    """``own`` wins field by field; empty fields come from ``base``."""
    if own.auto_set_resources is None:
        asr = base.auto_set_resources
    elif base.auto_set_resources is None:
        asr = own.auto_set_resources
    else:
        asr = _fill_unset(own.auto_set_resources, base.auto_set_resources)
    return AutoScalingConfig(
        auto_set_resources=asr,
        cron_scaling_rules=own.cron_scaling_rules or base.cron_scaling_rules,
        external_scaler=own.external_scaler if own.external_scaler is not None else base.external_scaler,
    )


def first_matching_rule(rules: Sequence[VerticalScalingRule], labels: Mapping[str, str]) -> VerticalScalingRule | None:
    """The first rule (in list order) whose selector matches: later matches are ignored."""
    return next((r for r in rules if r.selector.matches(labels)), None)


def resolve_config(
    *,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    workload_config: AutoScalingConfig | None = None,
    template_rules: Sequence[VerticalScalingRule] = (),
    obj: str | None = None,
) -> AutoScalingConfig:
    """The effective config of a workload from its pod annotations, its profile and the pool rules.

    Precedence: the workload/profile config, then the pod annotation (it turns autoSetResources on
    when the profile did not), then the first matching pool rule fills what is still unset.
    """
    config = workload_config or AutoScalingConfig()
    ann = annotations or {}
    flag = ann.get(ANNOTATION_AUTOSCALE)
    if flag is not None:
        flag_value = flag.strip().lower()
        if flag_value not in ("true", "false"):
            raise TwinInputError(
                "autoscale annotation must be true or false",
                obj=obj,
                field=ANNOTATION_AUTOSCALE,
                value=flag,
                real_system_ignores=True,
            )
        if flag_value == "true":
            target = parse_target(ann.get(ANNOTATION_AUTOSCALE_TARGET, "all"), obj=obj)
            from_annotation = AutoScalingConfig(
                auto_set_resources=AutoSetResources(enable=True, target_resource=target)
            )
            config = merge_config(config, from_annotation)
    rule = first_matching_rule(template_rules, labels or {})
    if rule is not None:
        config = merge_config(config, rule.auto_scaling)
    return config
