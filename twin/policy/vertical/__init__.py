"""TensorFusion's vertical autoscaler as pure policy (semantics 5): histograms, recommenders, merge, cap.

Entry points: :func:`resolve_config` (is autoscaling on, with what settings), a
:class:`WorkloadUsageAggregator` per workload fed with 1-minute usage samples, and :func:`decide`
with recommenders from :func:`get_recommender`. docs/vertical-autoscaling.md walks through it.
"""

from twin.policy.vertical.aggregator import UsageSample, WorkloadUsageAggregator
from twin.policy.vertical.capacity import cap_scale_up, max_allowed
from twin.policy.vertical.config import (
    AutoScalingConfig,
    AutoSetResources,
    CronScalingRule,
    ExternalScalerConfig,
    VerticalScalingRule,
    first_matching_rule,
    merge_config,
    resolve_config,
)
from twin.policy.vertical.cron import CronExpression, CronRecommender, active_rule, rule_is_active
from twin.policy.vertical.decide import Decision, decide, filter_target
from twin.policy.vertical.external import (
    CallableScaler,
    ExternalRecommender,
    ExternalRequest,
    ExternalResponse,
    ExternalScaler,
)
from twin.policy.vertical.histogram import DecayingHistogram, ExponentialBuckets, Histogram
from twin.policy.vertical.merge import merge_results
from twin.policy.vertical.percentile import PercentileConfig, PercentileRecommender
from twin.policy.vertical.registry import get_recommender, recommender_names
from twin.policy.vertical.selector import LabelSelector, Requirement, SelectorOperator
from twin.policy.vertical.types import (
    Recommender,
    RecResult,
    Resources,
    TargetResource,
    WorkerPlacement,
    WorkloadView,
)

__all__ = [
    "AutoScalingConfig",
    "AutoSetResources",
    "CallableScaler",
    "CronExpression",
    "CronRecommender",
    "CronScalingRule",
    "DecayingHistogram",
    "Decision",
    "ExponentialBuckets",
    "ExternalRecommender",
    "ExternalRequest",
    "ExternalResponse",
    "ExternalScaler",
    "ExternalScalerConfig",
    "Histogram",
    "LabelSelector",
    "PercentileConfig",
    "PercentileRecommender",
    "RecResult",
    "Recommender",
    "Requirement",
    "Resources",
    "SelectorOperator",
    "TargetResource",
    "UsageSample",
    "VerticalScalingRule",
    "WorkerPlacement",
    "WorkloadUsageAggregator",
    "WorkloadView",
    "active_rule",
    "cap_scale_up",
    "decide",
    "filter_target",
    "first_matching_rule",
    "get_recommender",
    "max_allowed",
    "merge_config",
    "merge_results",
    "recommender_names",
    "resolve_config",
    "rule_is_active",
]
