"""One workload, one tick: run the recommenders, merge, filter by target, cap, decide.

This is the whole policy of the vertical autoscaler; the loop (twin/policy/vertical/loop.py)
driven by the simulator and the live agent, only gathers the inputs and applies :attr:`Decision.resources`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from twin.policy.quota import AdjustRefusal
from twin.policy.vertical.capacity import cap_scale_up, max_allowed
from twin.policy.vertical.merge import merge_results
from twin.policy.vertical.types import Recommender, RecResult, Resources, TargetResource, WorkloadView
from twin.resources import Resource


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one workload. ``resources`` is None when nothing changes.

    ``applied``/``failed_workers`` are filled by whoever applies it (the simulation loop).
    """

    namespace: str
    workload: str
    time_s: float
    previous: Resources
    resources: Resources | None
    results: tuple[RecResult, ...]
    notes: tuple[str, ...]
    active_cron_rule: str | None
    applied_workers: tuple[str, ...] = ()
    failed_workers: tuple[str, ...] = ()
    refusal: AdjustRefusal | None = None  # why the first failed worker was refused (code, GPU room)


def filter_target(rec: Resources, current: Resources, target: TargetResource) -> Resources:
    """Keep the side the target excludes at its current values (annotations are patched per target)."""
    if target is TargetResource.COMPUTE:
        return Resources(
            Resource(tflops=rec.request.tflops, vram=current.request.vram),
            Resource(tflops=rec.limit.tflops, vram=current.limit.vram),
        )
    if target is TargetResource.VRAM:
        return Resources(
            Resource(tflops=current.request.tflops, vram=rec.request.vram),
            Resource(tflops=current.limit.tflops, vram=rec.limit.vram),
        )
    return rec


def decide(
    view: WorkloadView,
    recommenders: Sequence[Recommender],
    now_s: float,
    available: Mapping[str, Resource],
) -> Decision:
    """Recommenders run in the given order; ``available`` is each GPU's free request capacity."""
    results: list[RecResult] = []
    cron_rule = view.active_cron_rule
    for rec in recommenders:
        result = rec.recommend(view, now_s)
        if result is None:
            continue
        results.append(result)
        if result.recommender == "cron":
            cron_rule = result.active_cron_rule
    notes = [f"{r.recommender}: {r.reason}" for r in results if r.reason]
    merged = merge_results(results, view.current)
    if merged is None:
        return Decision(view.namespace, view.name, now_s, view.current, None, tuple(results), tuple(notes), cron_rule)
    merged = filter_target(merged, view.current, view.config.target)
    capped, cap_notes = cap_scale_up(merged, view.current, max_allowed(view.workers, available))
    notes.extend(cap_notes)
    final = None if capped == view.current else capped
    return Decision(view.namespace, view.name, now_s, view.current, final, tuple(results), tuple(notes), cron_rule)
