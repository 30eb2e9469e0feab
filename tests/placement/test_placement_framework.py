"""The scheduling framework: Status, the quota pre-filter, profiles and the generic registry."""

from __future__ import annotations

import pytest
from placement_helpers import build, req, use

from twin.errors import TwinInputError
from twin.policy.framework import Code, Profile, QuotaPreFilter, Registry, Status, profile_of, quota_then_select
from twin.policy.placement import PlacementResult, get_strategy, strategy_names
from twin.policy.placement.tensorfusion import TensorFusionStrategy
from twin.policy.quota import QuotaStore
from twin.resources import GIB, QuotaSpec, Resource


def _tight_quota(tflops: float) -> QuotaStore:
    return QuotaStore({"default": QuotaSpec(namespace="default", total_requests=Resource(tflops, 1000 * GIB))})


def test_status_from_a_failed_placement_names_the_filter() -> None:
    state = build(1, 1)
    use(state, "n0-gpu0", 60, 1)
    result = get_strategy("CompactFirst").place(state, req("x", 10, 1))
    status = Status.of(result)
    assert status.code is Code.UNSCHEDULABLE and status.plugin == "Resource" and not status.ok
    assert status.message() == result.reason
    assert Status.of(get_strategy("CompactFirst").place(state, req("y", 1, 1))).ok
    unresolvable = Status.of(PlacementResult.fail("GPUModel: none", unresolvable=True))
    assert unresolvable.unresolvable and unresolvable.plugin == "GPUModel"
    assert Status(Code.UNSCHEDULABLE, "Quota", "too big").message() == "Quota: too big"


@pytest.mark.parametrize("name", ["CompactFirst", "fgd", "bestfit"])
def test_every_strategy_opens_with_the_same_quota_pre_filter(name: str) -> None:
    state = build(1, 2)
    quota = _tight_quota(5.0)
    strategy = get_strategy(name)
    refused = strategy.place(state, req("x", 10, 1), quota)
    status = QuotaPreFilter(quota).pre_filter(state, req("x", 10, 1))
    assert not refused.ok and refused.reason == status.reason and status.plugin == "GPUResourceQuota"
    assert refused.reason.startswith("quota ")
    # Within quota, place == the strategy's own select (the quota adds nothing but the check).
    fits = strategy.place(state, req("y", 4, 1), quota)
    assert fits.ok and fits.gpu_ids == get_strategy(name).select(state, req("y", 4, 1)).gpu_ids  # type: ignore[attr-defined]


def test_profile_runs_pre_filters_in_order_then_the_selector() -> None:
    state = build(2, 1)
    tf = TensorFusionStrategy(name="tf")
    profile = Profile("default", tf, pre_filters=(QuotaPreFilter(_tight_quota(5.0)),), filters=tf.filters)
    assert not profile.place(state, req("x", 10, 1)).ok
    assert profile.place(state, req("x", 4, 1)).node == "n0"
    assert profile.filters[0] == "IsolationPolicy" and "Resource" in profile.filters
    assert quota_then_select(tf, state, req("x", 4, 1), None).node == "n0"


def test_registry_is_one_generic_type_for_every_family() -> None:
    reg: Registry[int] = Registry("widget", field="widget")
    reg.register("one", lambda: 1)
    reg.register("two", lambda k=2: k)
    assert reg.names() == ["one", "two"] and "one" in reg and "three" not in reg
    assert reg.get("two", k=5) == 5
    with pytest.raises(TwinInputError, match=r"unknown widget; known: one, two") as err:
        reg.get("three")
    assert err.value.field == "widget" and err.value.value == "three"
    with pytest.raises(TwinInputError, match="bad parameters for widget one"):
        reg.get("one", nope=1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("one", lambda: 3)
    reg.unregister("one")
    assert reg.names() == ["two"]


def test_placement_recommenders_and_autoscalers_share_the_registry_type() -> None:
    from twin.policy.placement.registry import STRATEGIES
    from twin.policy.serving.autoscalers import AUTOSCALERS
    from twin.policy.vertical.registry import RECOMMENDERS

    assert all(isinstance(r, Registry) for r in (STRATEGIES, AUTOSCALERS, RECOMMENDERS))
    assert STRATEGIES.names() == strategy_names() and "fgd" in strategy_names()
    assert RECOMMENDERS.names() == ["percentile", "cron", "external"]  # their run order


@pytest.mark.parametrize("name", ["CompactFirst", "LowLoadFirst", "NodeCompactGPULowLoad", "fgd", "bestfit", "random"])
def test_each_strategy_is_expressed_as_a_profile_that_places_identically(name: str) -> None:
    state = build(3, 2)
    use(state, "n1-gpu0", 30, 10)
    quota = _tight_quota(40.0)
    profile = profile_of(get_strategy(name, seed=3) if name == "random" else get_strategy(name), quota)
    direct = get_strategy(name, seed=3) if name == "random" else get_strategy(name)
    assert profile.filters[:3] == ("IsolationPolicy", "Phase", "GPUIndex") and profile.score_weights
    assert [p.name for p in profile.pre_filters] == ["GPUResourceQuota"]
    for r in (req("a", 8, 2), req("b", 50, 2), req("c", 20, 4, count=2)):
        mine, theirs = profile.place(state, r), direct.place(state, r, quota)
        assert (mine.ok, mine.node, mine.gpu_ids, mine.reason) == (
            theirs.ok,
            theirs.node,
            theirs.gpu_ids,
            theirs.reason,
        )
