"""Merging, the max-allowed cap, target filtering and the full per-workload decision."""

from __future__ import annotations

from datetime import datetime

from vertical_helpers import percentile_config, res, view

from twin.policy.vertical.capacity import cap_scale_up, max_allowed
from twin.policy.vertical.config import AutoScalingConfig, CronScalingRule
from twin.policy.vertical.cron import CronRecommender
from twin.policy.vertical.decide import decide, filter_target
from twin.policy.vertical.merge import merge_results
from twin.policy.vertical.percentile import scaled_message
from twin.policy.vertical.registry import get_recommender
from twin.policy.vertical.types import RecResult, TargetResource, WorkerPlacement
from twin.resources import GIB, Resource


def test_merge_takes_larger_request_per_resource_with_its_limit() -> None:
    a = RecResult("percentile", res(10, 4, 30, 6))
    b = RecResult("external", res(8, 12, 9, 20))
    merged = merge_results([a, b], res(1, 1, 1, 1))
    # TFLOPs from a (10 > 8) with a's limit 30; VRAM from b (12 > 4 GiB) with b's limit 20 GiB
    assert merged == res(10, 12, 30, 20)


def test_merge_zero_side_keeps_current_and_applied_results_are_skipped() -> None:
    only_vram = RecResult("external", res(0, 12, 0, 20))
    assert merge_results([only_vram], res(7, 4, 9, 6)) == res(7, 12, 9, 20)
    applied = RecResult("percentile", res(50, 50, 50, 50), has_applied=True)
    assert merge_results([applied], res(7, 4, 9, 6)) is None
    assert merge_results([applied, only_vram], res(7, 4, 9, 6)) == res(7, 12, 9, 20)
    # ties keep the earlier result
    first, second = RecResult("a", res(5, 5, 6, 6)), RecResult("b", res(5, 5, 9, 9))
    assert merge_results([first, second], res(1, 1, 1, 1)) == res(5, 5, 6, 6)


def test_max_allowed_is_min_over_gpus_of_free_plus_own_over_count() -> None:
    workers = (
        WorkerPlacement("w1", ("g1",), Resource(10, 4 * GIB)),
        WorkerPlacement("w2", ("g1",), Resource(10, 4 * GIB)),
        WorkerPlacement("w3", ("g2",), Resource(10, 4 * GIB)),
    )
    available = {"g1": Resource(20, 8 * GIB), "g2": Resource(50, 2 * GIB), "g3": Resource(999, 999 * GIB)}
    # g1: (20 + 20)/2 = 20 TFLOPs, (8 + 8)/2 = 8 GiB; g2: (50 + 10)/1 = 60, (2 + 4)/1 = 6 GiB
    assert max_allowed(workers, available) == Resource(tflops=20.0, vram=6 * GIB)
    assert max_allowed((), available) is None


def test_cap_applies_to_scale_up_only_and_leaves_limits() -> None:
    cap = Resource(tflops=20.0, vram=6 * GIB)
    current = res(10, 4, 10, 4)
    capped, notes = cap_scale_up(res(30, 8, 40, 8), current, cap)
    assert capped == res(20, 6, 40, 8) and len(notes) == 1
    # a scale-down is never touched, even above the cap
    down, notes = cap_scale_up(res(25, 3, 25, 3), res(30, 4, 30, 4), cap)
    assert down == res(25, 3, 25, 3) and notes == []
    # never capped below the current request
    up, _ = cap_scale_up(res(30, 4, 30, 4), res(24, 4, 24, 4), cap)
    assert up.request.tflops == 24.0


def test_messages_in_tensorfusions_words() -> None:
    """TensorFusion ``internal/autoscaler/recommender/recommendation_processor.go`` (max-allowed cap:
    "TFlops request set to max allowed: (N), VRAM request set to max allowed: (N)") and
    ``percentile_recommender.go`` (conditions "Compute scaled" / "VRAM scaled"): the messages users
    grep for, with the twin's explanation beside them."""
    cap = Resource(tflops=12.5, vram=6 * GIB)
    _, notes = cap_scale_up(res(30, 8, 40, 8), res(10, 4, 10, 4), cap)
    assert notes[0].startswith("TFlops request set to max allowed: (12500m), VRAM request set to max allowed: (6Gi)")
    assert "max allowed = (GPU available" in notes[0]
    _, only_vram = cap_scale_up(res(10, 8, 10, 8), res(10, 4, 10, 4), cap)
    assert only_vram[0].startswith("VRAM request set to max allowed: (6Gi) (")
    both = scaled_message(res(10, 4, 10, 4), res(20, 8, 30, 8))
    assert both.startswith("Compute scaled: request 10 -> 20 TFLOPs, limit 10 -> 30 TFLOPs; VRAM scaled: request 4Gi")
    assert scaled_message(res(10, 4, 10, 4), res(10, 8, 10, 8)).startswith("VRAM scaled:")
    assert scaled_message(res(10, 4, 10, 4), res(2, 4, 10, 4)).startswith("Compute scaled:")


def test_filter_target_keeps_the_other_side() -> None:
    rec, cur = res(30, 8, 40, 9), res(10, 4, 10, 5)
    assert filter_target(rec, cur, TargetResource.COMPUTE) == res(30, 4, 40, 5)
    assert filter_target(rec, cur, TargetResource.VRAM) == res(10, 8, 10, 9)
    assert filter_target(rec, cur, TargetResource.ALL) == rec


def test_decide_combines_cron_and_cap() -> None:
    rule = CronScalingRule(name="peak", start="0 9 * * *", end="0 17 * * *", desired=res(40, 16, 40, 16))
    cfg = AutoScalingConfig(cron_scaling_rules=(rule,))
    workers = (WorkerPlacement("w1", ("g1",), Resource(10, 8 * GIB)),)
    v = view(original=res(10, 8, 20, 8), config=cfg, workers=workers)
    recs = [get_recommender("percentile"), CronRecommender(epoch=datetime(2026, 3, 2))]
    # 30 TFLOPs and 40 GiB free on the worker's GPU: cap = 10+30 = 40 TFLOPs, 8+40 = 48 GiB
    d = decide(v, recs, 10 * 3600.0, {"g1": Resource(30, 40 * GIB)})
    assert d.resources == res(40, 16, 40, 16) and d.active_cron_rule == "peak"
    # only 5 TFLOPs free: the request is capped at 15, the limit stays 40
    d = decide(v, recs, 10 * 3600.0, {"g1": Resource(5, 40 * GIB)})
    assert d.resources == res(15, 16, 40, 16)
    # outside the window with no prior rule: nothing to do
    d = decide(v, recs, 20 * 3600.0, {"g1": Resource(30, 40 * GIB)})
    assert d.resources is None and d.active_cron_rule is None


def test_decide_target_compute_only() -> None:
    v = view(original=res(10, 8, 20, 8), config=percentile_config(TargetResource.COMPUTE))
    external = RecResult("external", res(30, 20, 30, 20))

    class Fixed:
        name = "external"

        def recommend(self, view: object, now_s: float) -> RecResult:
            return external

    d = decide(v, [Fixed()], 0.0, {})
    assert d.resources == res(30, 8, 30, 8)
