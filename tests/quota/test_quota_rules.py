"""One test per TensorFusion quota rule (semantics 2.5), with hand-computed numbers."""

from __future__ import annotations

import pytest

from twin.errors import TwinInputError
from twin.policy.quota import (
    SINGLE_GPU_COUNT,
    SINGLE_TFLOPS_LIMIT,
    SINGLE_TFLOPS_REQUEST,
    SINGLE_VRAM_LIMIT,
    SINGLE_VRAM_REQUEST,
    TOTAL_TFLOPS_LIMIT,
    TOTAL_TFLOPS_REQUEST,
    TOTAL_VRAM_LIMIT,
    TOTAL_VRAM_REQUEST,
    TOTAL_WORKERS,
    QuotaAccountingError,
    QuotaStore,
    QuotaUsage,
    quantity_value,
    quota_problems,
)
from twin.resources import GIB, AllocRequest, QuotaSpec, Resource

NS = "team-a"


def req(uid: str, tflops: float = 0.0, vram_gib: int = 0, *, lim_t: float = 0.0, lim_gib: int = 0,
        count: int = 1, pct: float = 0.0, ns: str = NS) -> AllocRequest:  # fmt: skip
    return AllocRequest(
        uid=uid,
        namespace=ns,
        gpu_count=count,
        request=Resource(tflops, vram_gib * GIB, pct),
        limit=Resource(lim_t, lim_gib * GIB),
    )


def store(**fields: object) -> QuotaStore:
    return QuotaStore({NS: QuotaSpec(namespace=NS, **fields)})  # type: ignore[arg-type]


def test_namespace_without_quota_allows_everything() -> None:
    s = store(total_requests=Resource(1, GIB))
    assert s.check(req("x", 1000, 1000, ns="other")) is None


# --- single checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (req("a", tflops=10.5), SINGLE_TFLOPS_REQUEST),
        (req("a", vram_gib=9), SINGLE_VRAM_REQUEST),
        (req("a", lim_t=20.1), SINGLE_TFLOPS_LIMIT),
        (req("a", lim_gib=17), SINGLE_VRAM_LIMIT),
        (req("a", count=3), SINGLE_GPU_COUNT),
    ],
)
def test_single_checks_are_unresolvable(request_: AllocRequest, code: str) -> None:
    s = store(
        single_max_requests=Resource(10, 8 * GIB),
        single_max_limits=Resource(20, 16 * GIB),
        single_max_gpu_count=2,
    )
    verdict = s.check(request_)
    assert verdict is not None and verdict.code == code and verdict.unresolvable


def test_single_checks_boundary_and_zero_disables() -> None:
    s = store(single_max_requests=Resource(10, 8 * GIB), single_max_limits=Resource(20, 16 * GIB))
    assert s.check(req("a", 10, 8, lim_t=20, lim_gib=16, count=128)) is None  # equal passes; gpu count 0 = off
    off = store(single_max_requests=Resource(0, 0))
    assert off.check(req("b", 5000, 5000)) is None


def test_single_checks_run_before_totals() -> None:
    s = store(total_requests=Resource(1, GIB), single_max_requests=Resource(10, 0))
    verdict = s.check(req("a", 50, 4))
    assert verdict is not None and verdict.code == SINGLE_TFLOPS_REQUEST


# --- total checks -----------------------------------------------------------------------------


def test_total_tflops_request_times_gpu_count() -> None:
    s = store(total_requests=Resource(100, 1000 * GIB))
    s.add(req("a", 30, 1, count=2))  # uses 60
    assert s.check(req("b", 20, 1, count=2)) is None  # 60 + 40 = 100 <= 100
    verdict = s.check(req("c", 10.5, 1, count=4))  # ceil(10.5)=11, x4 = 44 -> 104 > 100
    assert verdict is not None and verdict.code == TOTAL_TFLOPS_REQUEST and not verdict.unresolvable


def test_half_tflops_counts_as_one() -> None:
    s = store(total_requests=Resource(2, 1000 * GIB))
    s.add(req("a", 0.5))
    s.add(req("b", 0.5))  # used 1.0 exactly, Value() = 1
    # 0.5 more would fit by the real sum (1.5 <= 2), and also by Value: 1 + ceil(0.5)=1 -> 2 <= 2.
    assert s.check(req("c", 0.5)) is None
    s.add(req("c", 0.5))  # used 1.5 -> Value() = 2
    # Real sum 2.0 would fit, but Value(1.5) + Value(0.5) = 2 + 1 = 3 > 2.
    verdict = s.check(req("d", 0.5))
    assert verdict is not None and verdict.code == TOTAL_TFLOPS_REQUEST


def test_request_value_rounds_before_multiplying_by_count() -> None:
    s = store(total_requests=Resource(3, 1000 * GIB))
    # 0.4 x 4 = 1.6 TFLOPs really, but ceil(0.4) x 4 = 4 > 3.
    verdict = s.check(req("a", 0.4, count=4))
    assert verdict is not None and verdict.code == TOTAL_TFLOPS_REQUEST
    assert s.check(req("b", 0.4, count=3)) is None  # 3 <= 3


def test_total_vram_request() -> None:
    s = store(total_requests=Resource(1000, 10 * GIB))
    s.add(req("a", 1, 6))
    assert s.check(req("b", 1, 4)) is None
    verdict = s.check(req("b", 1, 2, count=3))  # 6 + 6 > 10
    assert verdict is not None and verdict.code == TOTAL_VRAM_REQUEST


def test_total_limits_checked_only_when_set() -> None:
    s = store(total_limits=Resource(40, 16 * GIB))
    s.add(req("a", 1, 1, lim_t=30, lim_gib=8))
    verdict = s.check(req("b", 1, 1, lim_t=11, lim_gib=1))  # 30 + 11 > 40
    assert verdict is not None and verdict.code == TOTAL_TFLOPS_LIMIT
    verdict = s.check(req("b", 1, 1, lim_t=10, lim_gib=9))  # 8 + 9 > 16
    assert verdict is not None and verdict.code == TOTAL_VRAM_LIMIT
    assert s.check(req("b", 500, 500, lim_t=10, lim_gib=8)) is None  # requests unbounded


def test_set_total_with_zero_tflops_rejects_every_tflops_request() -> None:
    s = store(total_requests=Resource(0, 100 * GIB))
    verdict = s.check(req("a", 0.001, 1))
    assert verdict is not None and verdict.code == TOTAL_TFLOPS_REQUEST
    assert s.check(req("b", 0, 1, pct=50)) is None  # no TFLOPs asked: passes


def test_compute_percent_requests_bypass_tflops_quota() -> None:
    s = store(total_requests=Resource(10, 100 * GIB))
    for i in range(5):
        s.add(req(f"p{i}", 0, 1, pct=100))  # five whole GPUs by percent, 0 TFLOPs accounted
    assert s.usage(NS).requests.tflops == 0 and s.usage(NS).requests.compute_percent == 500
    assert s.check(req("t", 10, 1)) is None


def test_workers_plus_one_over_max() -> None:
    s = store(max_workers=2)
    s.add(req("a", 1, 1))
    assert s.check(req("b", 1, 1)) is None  # 1 + 1 <= 2
    s.add(req("b", 1, 1, count=4))  # a worker counts once whatever its gpu count
    verdict = s.check(req("c", 1, 1))
    assert verdict is not None and verdict.code == TOTAL_WORKERS and not verdict.unresolvable


def test_assumed_usage_counts_in_checks() -> None:
    s = store(total_requests=Resource(10, 100 * GIB), max_workers=5)
    s.assume(req("a", 8, 1))
    assert s.usage(NS) == QuotaUsage(Resource(), Resource(), 0)
    assert s.assumed_usage(NS).requests.tflops == 8
    verdict = s.check(req("b", 3, 1))  # 8 assumed + 3 > 10
    assert verdict is not None and verdict.code == TOTAL_TFLOPS_REQUEST
    s.add(req("a", 8, 1))  # bind converts the reservation
    assert s.assumed_usage(NS).workers == 0 and s.usage(NS).requests.tflops == 8
    s.assume(req("c", 2, 1))
    s.unassume(req("c", 2, 1))
    assert s.assumed_usage(NS).requests.tflops == 0


# --- preemption -------------------------------------------------------------------------------


def test_relaxed_check_releases_same_namespace_victims_and_skips_workers() -> None:
    s = store(total_requests=Resource(10, 100 * GIB), max_workers=2)
    s.add(req("v1", 6, 1))
    s.add(req("v2", 3, 1))
    s.add(req("other", 9, 1, ns="team-b"))
    new = req("n", 5, 1)
    assert s.check(new) is not None
    # Releasing v2 (3): 6 + 5 > 10 still fails on TFLOPs.
    verdict = s.check_relaxed(new, [req("v2", 3, 1)])
    assert verdict is not None and verdict.code == TOTAL_TFLOPS_REQUEST
    # Releasing v1 (6): 3 + 5 <= 10; workers 2 + 1 > 2 would fail but is skipped with a victim.
    assert s.check_relaxed(new, [req("v1", 6, 1)]) is None
    # A victim from another namespace frees nothing here.
    verdict = s.check_relaxed(new, [req("other", 9, 1, ns="team-b")])
    assert verdict is not None and verdict.code == TOTAL_TFLOPS_REQUEST


def test_relaxed_check_without_victims_keeps_workers_check() -> None:
    s = store(max_workers=1)
    s.add(req("a", 1, 1))
    verdict = s.check_relaxed(req("b", 1, 1), [])
    assert verdict is not None and verdict.code == TOTAL_WORKERS


# --- adjust (vertical autoscaling) ------------------------------------------------------------


def test_check_adjust_uses_delta_times_count_and_no_worker() -> None:
    s = store(total_requests=Resource(40, 100 * GIB), max_workers=1, single_max_requests=Resource(30, 0))
    old = req("a", 10, 1, count=2)  # uses 20
    s.add(old)
    # +10 per GPU x 2 = +20 -> 40 <= 40; workers would be 1 + 1 > 1 but adjust adds no worker.
    assert s.check_adjust(old, Resource(20, GIB), Resource()) is None
    verdict = s.check_adjust(old, Resource(20.5, GIB), Resource())  # ceil(10.5)=11 x 2 -> 42 > 40
    assert verdict is not None and verdict.code == TOTAL_TFLOPS_REQUEST
    verdict = s.check_adjust(old, Resource(31, GIB), Resource())  # single max on the new absolute value
    assert verdict is not None and verdict.code == SINGLE_TFLOPS_REQUEST and verdict.unresolvable
    assert s.check_adjust(old, Resource(2, GIB), Resource()) is None  # shrinking always fits


def test_adjust_updates_usage_and_remove_uses_adjusted_values() -> None:
    s = QuotaStore()
    old = req("a", 10, 2, lim_t=20, lim_gib=4, count=3)
    s.add(old)
    s.adjust(old, Resource(12, 3 * GIB), Resource(25, 5 * GIB))
    u = s.usage(NS)
    assert (u.requests.tflops, u.requests.vram, u.limits.tflops, u.limits.vram, u.workers) == (
        36,
        9 * GIB,
        75,
        15 * GIB,
        1,
    )
    s.remove(old)  # the caller's stale copy: the store removes what it accounted
    assert s.usage(NS) == QuotaUsage(Resource(), Resource(), 0)


def test_accounting_errors() -> None:
    s = QuotaStore()
    s.add(req("a", 1))
    with pytest.raises(QuotaAccountingError):
        s.add(req("a", 1))
    with pytest.raises(QuotaAccountingError):
        s.remove(req("zz", 1))
    with pytest.raises(QuotaAccountingError):
        s.adjust(req("zz", 1), Resource(2), Resource())
    with pytest.raises(QuotaAccountingError):
        s.assume(req("a", 1))
    with pytest.raises(QuotaAccountingError):
        s.unassume(req("a", 1))
    s.assume(req("r", 1))
    s.remove(req("r", 1))  # removing an only-assumed uid drops the reservation
    assert not s.is_accounted("r") and s.is_accounted("a")


# --- status: available percent, alerts, defaults, validation ---------------------------------


def test_available_percent_two_decimals_and_alerts() -> None:
    s = store(
        total_requests=Resource(30, 10 * GIB),
        total_limits=Resource(60, 20 * GIB),
        max_workers=3,
        alert_threshold_percent=90,
    )
    s.add(req("a", 28, 5, lim_t=30, lim_gib=5))
    pct = s.available_percent(NS)
    assert pct == {
        "requests.tflops": 6.67,  # (30-28)/30 = 6.666..%
        "requests.vram": 50.0,
        "limits.tflops": 50.0,
        "limits.vram": 75.0,
        "workers": 66.67,
    }
    assert s.alerts(NS) == ["requests.tflops"]  # 6.67 < 100 - 90


def test_available_percent_clamps_at_zero_and_skips_zero_totals() -> None:
    s = store(total_requests=Resource(1.5, 0))
    s.add(req("a", 1))
    s.add(req("b", 1))  # 2 > 1.5: allowed by Value() rounding, see the quirk test
    pct = s.available_percent(NS)
    assert pct["requests.tflops"] == 0.0 and "requests.vram" not in pct
    assert s.alerts(NS) == ["requests.tflops"]
    assert QuotaStore().available_percent(NS) == {} and QuotaStore().alerts(NS) == []


def test_fractional_total_admits_up_to_its_rounded_value() -> None:
    # Value() rounds the total up too: a 1.5 TFLOPs quota admits 2 TFLOPs of requests.
    s = store(total_requests=Resource(1.5, 100 * GIB))
    s.add(req("a", 1))
    assert s.check(req("b", 1)) is None
    s.add(req("b", 1))
    assert s.check(req("c", 0.01)) is not None


def test_apply_defaults_fills_zero_fields_only() -> None:
    s = store(single_default_requests=Resource(5, 2 * GIB), single_default_limits=Resource(10, 4 * GIB))
    filled = s.apply_defaults(req("a", 0, 0))
    assert filled.request == Resource(5, 2 * GIB) and filled.limit == Resource(10, 4 * GIB)
    kept = s.apply_defaults(req("b", 7, 3, lim_t=8, lim_gib=3))
    assert kept.request == Resource(7, 3 * GIB) and kept.limit == Resource(8, 3 * GIB)
    pct = s.apply_defaults(req("c", 0, 0, pct=30))
    assert pct.request == Resource(0, 2 * GIB, 30)  # percent stays exclusive of TFLOPs
    plain = req("d", 1, 1)
    assert QuotaStore().apply_defaults(plain) is plain


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"total_requests": Resource(-1, 0)}, "negative"),
        ({"total_requests": Resource(10, 0), "total_limits": Resource(5, 0)}, "limits.tflops"),
        ({"single_max_requests": Resource(0, 8 * GIB), "single_max_limits": Resource(0, 4 * GIB)}, "limits.vram"),
        ({"alert_threshold_percent": 101.0}, "alertThresholdPercent"),
        ({"max_workers": -1}, "maxWorkers"),
    ],
)
def test_invalid_quota_is_ignored(fields: dict[str, object], fragment: str) -> None:
    spec = QuotaSpec(namespace=NS, **fields)  # type: ignore[arg-type]
    assert any(fragment in p for p in quota_problems(spec))
    s = QuotaStore({NS: spec})
    assert s.quota(NS) is None and NS in s.ignored
    assert s.check(req("a", 1e6, 1)) is None


def test_set_and_remove_quota_and_namespace_mismatch() -> None:
    s = QuotaStore()
    s.set_quota(QuotaSpec(namespace=NS, max_workers=0))
    assert s.check(req("a")) is not None
    s.remove_quota(NS)
    assert s.check(req("a")) is None
    with pytest.raises(TwinInputError, match="another namespace"):
        QuotaStore({"x": QuotaSpec(namespace=NS)})


def test_quantity_value_rounds_away_from_zero() -> None:
    assert [quantity_value(x) for x in (0.5, 1.0, 1.0000001, -0.5, -1.0, 0.0)] == [1, 1, 2, -1, -1, 0]


def test_copy_is_independent() -> None:
    s = store(total_requests=Resource(10, 100 * GIB))
    s.add(req("a", 4, 1))
    clone = s.copy()
    clone.add(req("b", 6, 1))
    clone.remove(req("a", 4, 1))
    assert s.usage(NS).requests.tflops == 4 and clone.usage(NS).requests.tflops == 6
    assert s.is_accounted("a") and not s.is_accounted("b")


def test_relaxed_check_runs_totals_only() -> None:
    s = store(single_max_requests=Resource(10, 0), total_requests=Resource(100, 100 * GIB))
    too_big = req("big", 20, 1)
    assert s.check(too_big) is not None  # single max fails in the normal check
    assert s.check_relaxed(too_big, []) is None  # the relaxed (preemption) check looks at totals only
