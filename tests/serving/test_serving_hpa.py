"""The HPA layer (semantics 4.4): tolerance, stabilisation windows, rate policies, KEDA zero handling."""

from __future__ import annotations

import pytest

from twin.errors import TwinInputError
from twin.policy.serving.hpa import (
    HPABehavior,
    HPAController,
    HPASpec,
    KedaScaler,
    MetricSignal,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    scale_from_zero,
)

FAST = HPABehavior(
    ScalingRules(0, SelectPolicy.MAX, (ScalingPolicy(PolicyType.PODS, 10, 15),)),
    ScalingRules(0, SelectPolicy.MAX, (ScalingPolicy(PolicyType.PODS, 10, 15),)),
)


def ext(desired: float) -> list[MetricSignal]:
    return [MetricSignal(desired, 1.0)]


def test_external_average_value_target_one() -> None:
    hpa = HPAController(HPASpec(1, 20, FAST))
    assert hpa.reconcile(0, 2, ext(5)) == 5


def test_ten_percent_tolerance_ignores_one_replica_at_ten() -> None:
    hpa = HPAController(HPASpec(1, 20, FAST))
    assert hpa.reconcile(0, 10, ext(11)) == 10  # ratio 1.1 is not > 1.1
    assert hpa.reconcile(15, 10, ext(12)) == 12
    assert HPAController(HPASpec(1, 20, FAST)).reconcile(0, 5, ext(6)) == 6


def test_default_behavior_scale_down_waits_five_minutes() -> None:
    hpa = HPAController(HPASpec(1, 20))
    assert hpa.reconcile(0, 8, ext(8)) == 8
    for t in range(15, 300, 15):
        assert hpa.reconcile(t, 8, ext(2)) == 8  # the 8 recorded at t=0 is still inside the window
    assert hpa.reconcile(300, 8, ext(2)) == 2


def test_new_hpa_history_starts_with_the_current_count() -> None:
    """Kubernetes ``pkg/controller/podautoscaler/horizontal.go`` (``maybeInitScaleDownStabilizationWindow``):
    a new HPA's recommendation history starts with the current replica count, so it does not scale
    down before its scale-down stabilisation window has passed, even on its very first sync."""
    hpa = HPAController(HPASpec(1, 20))  # default scale-down window 300 s
    assert hpa.reconcile(0, 8, ext(2)) == 8  # first sync already wants 2: held by the seeded 8
    assert hpa.reconcile(285, 8, ext(2)) == 8
    assert hpa.reconcile(300, 8, ext(2)) == 2  # the seed (t=0) has left the window
    # A zero scale-down window seeds nothing: the first sync scales down at once.
    assert HPAController(HPASpec(1, 20, FAST)).reconcile(0, 8, ext(2)) == 2
    # Scale-up is not held by the seed (the up window keeps the minimum, and 8 < 12).
    assert HPAController(HPASpec(1, 20)).reconcile(0, 8, ext(12)) == 12


def test_default_scale_up_is_max_of_double_and_plus_four() -> None:
    hpa = HPAController(HPASpec(1, 100))
    assert hpa.reconcile(0, 2, ext(50)) == 6  # max(2*2, 2+4)
    assert hpa.reconcile(5, 6, ext(50)) == 6  # the +4 already used in this 15 s period
    assert hpa.reconcile(20, 6, ext(50)) == 12


def test_pods_policy_and_stabilization_up() -> None:
    beh = HPABehavior(
        ScalingRules(60, SelectPolicy.MAX, (ScalingPolicy(PolicyType.PODS, 1, 150),)),
        ScalingRules(0, SelectPolicy.MAX, (ScalingPolicy(PolicyType.PERCENT, 50, 15),)),
    )
    hpa = HPAController(HPASpec(1, 10, beh))
    assert hpa.reconcile(0, 2, ext(2)) == 2
    assert hpa.reconcile(15, 2, ext(6)) == 2  # up window still holds the 2 from t=0
    assert hpa.reconcile(61, 2, ext(6)) == 3  # window passed; 1 pod per 150 s
    assert hpa.reconcile(76, 3, ext(6)) == 3
    assert hpa.reconcile(212, 3, ext(6)) == 4
    assert hpa.reconcile(230, 4, ext(1)) == 2  # percent 50 down: int(4 * 0.5)


def test_disabled_select_and_min_policy() -> None:
    beh = HPABehavior(
        ScalingRules(0, SelectPolicy.DISABLED, ()),
        ScalingRules(
            0, SelectPolicy.MIN, (ScalingPolicy(PolicyType.PODS, 1, 15), ScalingPolicy(PolicyType.PERCENT, 50, 15))
        ),
    )
    hpa = HPAController(HPASpec(1, 10, beh))
    assert hpa.reconcile(0, 4, ext(9)) == 4
    assert hpa.reconcile(15, 4, ext(1)) == 3  # Min change: -1 rather than -50 %


def test_min_max_and_zero() -> None:
    hpa = HPAController(HPASpec(2, 5, FAST))
    assert hpa.reconcile(0, 3, ext(40)) == 5
    assert hpa.reconcile(15, 1, ext(1)) == 2
    assert hpa.reconcile(30, 0, ext(4)) == 0  # scaled to zero with minReplicas > 0: HPA disabled
    zero_ok = HPAController(HPASpec(0, 5, FAST))
    assert zero_ok.reconcile(0, 0, ext(3)) == 3
    assert hpa.reconcile(45, 3, []) == 3  # no metric: keep
    with pytest.raises(TwinInputError):
        HPASpec(3, 2)


def test_pods_metric_average() -> None:
    hpa = HPAController(HPASpec(1, 10, FAST))
    assert hpa.reconcile(0, 2, [MetricSignal(1.8, 0.7, pod_count=2)]) == 3  # ceil(2 * 0.9/0.7)
    assert hpa.reconcile(15, 3, [MetricSignal(0.0, 0.7, pod_count=0)]) == 3  # no pod reporting


def test_keda_activation_and_cooldown() -> None:
    keda = KedaScaler(HPAController(HPASpec(1, 10, FAST)), cooldown_s=300)
    assert keda.reconcile(0, 0, ext(0)) == 0
    assert keda.reconcile(1, 0, ext(3)) == 1
    assert keda.reconcile(16, 1, ext(3)) == 3
    assert keda.reconcile(100, 3, ext(0)) == 1  # inactive but inside the cooldown: the HPA keeps >= 1
    assert keda.reconcile(316, 1, ext(0)) == 0


def test_wva_scale_from_zero_patches_every_variant() -> None:
    assert scale_from_zero({"a": 0, "b": 0}, 3) == {"a": 1, "b": 1}
    assert scale_from_zero({"a": 0, "b": 2}, 3) == {"a": 0, "b": 2}
    assert scale_from_zero({"a": 0}, 0) == {"a": 0}
