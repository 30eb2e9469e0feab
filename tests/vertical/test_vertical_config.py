"""Enabling paths, label selectors, the external recommender and the registry."""

from __future__ import annotations

import pytest
from vertical_helpers import res, view

from twin.errors import TwinInputError
from twin.policy.vertical.config import (
    AutoScalingConfig,
    AutoSetResources,
    ExternalScalerConfig,
    VerticalScalingRule,
    first_matching_rule,
    resolve_config,
)
from twin.policy.vertical.external import (
    CallableScaler,
    ExternalRecommender,
    ExternalRequest,
    ExternalResponse,
    parse_quantity,
    resources_from_json,
)
from twin.policy.vertical.registry import get_recommender, recommender_names
from twin.policy.vertical.selector import LabelSelector, Requirement, SelectorOperator
from twin.policy.vertical.types import TargetResource
from twin.resources import GIB, Resource


def test_selector_operators() -> None:
    labels = {"team": "ml", "tier": "gold"}
    assert LabelSelector().matches(labels)
    assert LabelSelector(match_labels={"team": "ml"}).matches(labels)
    assert not LabelSelector(match_labels={"team": "web"}).matches(labels)
    assert Requirement("tier", SelectorOperator.IN, ("gold", "silver")).matches(labels)
    assert not Requirement("tier", SelectorOperator.NOT_IN, ("gold",)).matches(labels)
    assert Requirement("zone", SelectorOperator.NOT_IN, ("a",)).matches(labels)  # absent key passes NotIn
    assert Requirement("team", SelectorOperator.EXISTS).matches(labels)
    assert Requirement("zone", SelectorOperator.DOES_NOT_EXIST).matches(labels)
    both = LabelSelector(
        match_labels={"team": "ml"}, match_expressions=(Requirement("tier", SelectorOperator.IN, ("bronze",)),)
    )
    assert not both.matches(labels)
    with pytest.raises(TwinInputError):
        Requirement("x", SelectorOperator.IN)
    with pytest.raises(TwinInputError):
        Requirement("x", SelectorOperator.EXISTS, ("v",))


def test_annotation_enables_with_target() -> None:
    cfg = resolve_config(annotations={"tensor-fusion.ai/autoscale": "true"})
    assert cfg.enabled and cfg.target is TargetResource.ALL
    cfg = resolve_config(
        annotations={"tensor-fusion.ai/autoscale": "true", "tensor-fusion.ai/autoscale-target": "VRAM"}
    )
    assert cfg.target is TargetResource.VRAM
    assert not resolve_config(annotations={"tensor-fusion.ai/autoscale": "false"}).enabled
    with pytest.raises(TwinInputError, match="autoscale"):
        resolve_config(annotations={"tensor-fusion.ai/autoscale": "yes"}, obj="pod/nb")
    with pytest.raises(TwinInputError, match="compute, vram or all"):
        resolve_config(annotations={"tensor-fusion.ai/autoscale": "true", "tensor-fusion.ai/autoscale-target": "gpu"})


def test_profile_needs_enable_and_target() -> None:
    on = AutoScalingConfig(auto_set_resources=AutoSetResources(enable=True, target_resource=TargetResource.COMPUTE))
    assert resolve_config(workload_config=on).target is TargetResource.COMPUTE
    no_target = AutoScalingConfig(auto_set_resources=AutoSetResources(enable=True))
    assert not resolve_config(workload_config=no_target).enabled
    # the annotation supplies the missing target
    fixed = resolve_config(workload_config=no_target, annotations={"tensor-fusion.ai/autoscale": "true"})
    assert fixed.enabled and fixed.target is TargetResource.ALL


def test_template_rules_first_match_fills_unset_fields() -> None:
    gold = VerticalScalingRule(
        selector=LabelSelector(match_labels={"tier": "gold"}),
        auto_scaling=AutoScalingConfig(
            auto_set_resources=AutoSetResources(
                enable=True, target_resource=TargetResource.ALL, margin_fraction=0.3, update_threshold=0.2
            )
        ),
        name="gold",
    )
    everyone = VerticalScalingRule(
        selector=LabelSelector(),
        auto_scaling=AutoScalingConfig(external_scaler=ExternalScalerConfig(enable=True, url="http://x")),
        name="all",
    )
    rules = [gold, everyone]
    assert first_matching_rule(rules, {"tier": "gold"}) is gold
    assert first_matching_rule(rules, {"tier": "bronze"}) is everyone
    own = AutoScalingConfig(auto_set_resources=AutoSetResources(margin_fraction=0.05))
    cfg = resolve_config(workload_config=own, labels={"tier": "gold"}, template_rules=rules)
    asr = cfg.auto_set_resources
    assert asr is not None and asr.enable and asr.margin_fraction == 0.05 and asr.update_threshold == 0.2
    assert cfg.external_scaler is None  # only the first match merges
    other = resolve_config(labels={"tier": "bronze"}, template_rules=rules)
    assert other.enabled and other.external_scaler is not None and other.auto_set_resources is None


def test_external_payloads_and_recommender() -> None:
    req = ExternalRequest("nb", "ml", res(10, 8, 20, 8))
    assert req.to_json() == {
        "workloadName": "nb",
        "namespace": "ml",
        "currentResources": {
            "requests": {"tflops": "10", "vram": str(8 * GIB)},
            "limits": {"tflops": "20", "vram": str(8 * GIB)},
        },
    }
    reply = ExternalResponse.from_json(
        {
            "needScaleUp": True,
            "reason": "queue",
            "recommendedResources": {"requests": {"tflops": "1500m", "vram": "2Gi"}, "limits": {"vram": "3G"}},
        }
    )
    assert reply.recommended is not None
    assert reply.recommended.request == Resource(tflops=1.5, vram=2 * GIB)
    assert reply.recommended.limit == Resource(tflops=0.0, vram=3_000_000_000)
    with pytest.raises(TwinInputError, match="quantity"):
        parse_quantity("12 apples", obj="x", field="vram", milli_ok=False)
    with pytest.raises(TwinInputError):
        resources_from_json({"requests": {"vram": "5m"}}, obj="x")

    seen: list[ExternalRequest] = []

    def scaler(r: ExternalRequest) -> ExternalResponse:
        seen.append(r)
        return ExternalResponse(True, False, "grow", res(30, 8, 30, 8))

    cfg = AutoScalingConfig(external_scaler=ExternalScalerConfig(enable=True))
    rec = ExternalRecommender(CallableScaler(scaler))
    out = rec.recommend(view(original=res(10, 8, 20, 8), config=cfg), 0.0)
    assert out is not None and out.resources == res(30, 8, 30, 8) and out.reason == "grow"
    assert seen == [ExternalRequest("nb", "ml", res(10, 8, 20, 8))]
    # same as current: applied; no scaling needed: nothing
    assert rec.recommend(view(original=res(30, 8, 30, 8), config=cfg), 0.0).has_applied  # type: ignore[union-attr]
    quiet = ExternalRecommender(CallableScaler(lambda r: ExternalResponse(False, False, "", None)))
    assert quiet.recommend(view(original=res(10, 8, 20, 8), config=cfg), 0.0) is None
    assert rec.recommend(view(original=res(10, 8, 20, 8)), 0.0) is None  # not configured


def test_registry() -> None:
    assert recommender_names() == ["percentile", "cron", "external"]
    assert get_recommender("percentile").name == "percentile"
    assert get_recommender("cron").name == "cron"
    with pytest.raises(TwinInputError, match="unknown recommender"):
        get_recommender("vpa")
    with pytest.raises(TwinInputError, match="bad parameters"):
        get_recommender("external")
    with pytest.raises(TwinInputError):
        get_recommender("percentile", margin=0.2)
