"""Convert what users wrote (twin.spec models of WorkloadProfile / SchedulingConfigTemplate) into
the autoscaler's plain config types. The spec layer validates quantities; this only maps fields.
"""

from __future__ import annotations

from twin.policy.vertical.config import (
    AutoScalingConfig,
    AutoSetResources,
    CronScalingRule,
    ExternalScalerConfig,
    VerticalScalingRule,
)
from twin.policy.vertical.selector import LabelSelector, Requirement, SelectorOperator
from twin.policy.vertical.types import Resources, TargetResource
from twin.spec import selectors as spec_selectors
from twin.spec import tensorfusion as tf
from twin.spec.base import ResourcesSpec


def resources_from_spec(spec: ResourcesSpec) -> Resources:
    return Resources(spec.requests.to_resource(), spec.limits.to_resource())


def _auto_set(spec: tf.AutoSetResources) -> AutoSetResources:
    return AutoSetResources(
        enable=spec.enable,
        target_resource=TargetResource(spec.target_resource) if spec.target_resource else None,
        target_compute_percentile=spec.target_compute_percentile,
        lower_bound_compute_percentile=spec.lower_bound_compute_percentile,
        upper_bound_compute_percentile=spec.upper_bound_compute_percentile,
        target_vram_percentile=spec.target_vram_percentile,
        lower_bound_vram_percentile=spec.lower_bound_vram_percentile,
        upper_bound_vram_percentile=spec.upper_bound_vram_percentile,
        margin_fraction=spec.margin_fraction,
        update_threshold=spec.update_threshold,
        history_data_period_s=spec.history_data_period,
        initial_delay_period_s=spec.initial_delay_period,
        interval_s=spec.interval,
    )


def config_from_spec(spec: tf.AutoScalingConfig | None) -> AutoScalingConfig:
    """A WorkloadProfile's ``autoScalingConfig`` (None: nothing configured)."""
    if spec is None:
        return AutoScalingConfig()
    external = spec.external_scaler
    return AutoScalingConfig(
        auto_set_resources=_auto_set(spec.auto_set_resources) if spec.auto_set_resources is not None else None,
        cron_scaling_rules=tuple(
            CronScalingRule(
                name=r.name, start=r.start, end=r.end, desired=resources_from_spec(r.desired_resources), enable=r.enable
            )
            for r in spec.cron_scaling_rules
        ),
        external_scaler=None
        if external is None
        else ExternalScalerConfig(
            enable=external.enable,
            url=external.url,
            initial_delay_period_s=external.initial_delay_period,
            interval_s=external.interval,
        ),
    )


def selector_from_spec(spec: spec_selectors.LabelSelector) -> LabelSelector:
    return LabelSelector(
        match_labels=dict(spec.match_labels),
        match_expressions=tuple(
            Requirement(e.key, SelectorOperator(e.operator), tuple(e.values)) for e in spec.match_expressions
        ),
    )


def rules_from_template(template: tf.SchedulingConfigTemplate) -> tuple[VerticalScalingRule, ...]:
    """The template's ``verticalScalingRules`` in order (first match wins at resolve time)."""
    return tuple(
        VerticalScalingRule(selector_from_spec(r.selector), config_from_spec(r.auto_scaling), r.name)
        for r in template.spec.vertical_scaling_rules
    )
