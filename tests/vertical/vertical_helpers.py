"""Builders shared by the vertical autoscaler tests."""

from __future__ import annotations

from twin.policy.vertical.aggregator import UsageSample, WorkloadUsageAggregator
from twin.policy.vertical.config import AutoScalingConfig, AutoSetResources
from twin.policy.vertical.types import Resources, TargetResource, WorkerPlacement, WorkloadView
from twin.resources import GIB, QoS, Resource


def res(req_t: float, req_v_gib: float, lim_t: float, lim_v_gib: float) -> Resources:
    return Resources(
        Resource(tflops=req_t, vram=int(req_v_gib * GIB)), Resource(tflops=lim_t, vram=int(lim_v_gib * GIB))
    )


def percentile_config(target: TargetResource = TargetResource.ALL, **kw: float) -> AutoScalingConfig:
    return AutoScalingConfig(auto_set_resources=AutoSetResources(enable=True, target_resource=target, **kw))


def usage(points: list[tuple[float, int]], *, count: int = 1) -> WorkloadUsageAggregator:
    """All samples at t=0 from one worker, each (tflops, vram) repeated ``count`` times."""
    agg = WorkloadUsageAggregator()
    for tflops, vram in points:
        for _ in range(count):
            agg.add(UsageSample("w0", 0.0, tflops, vram))
    return agg


def view(
    *,
    qos: QoS = QoS.MEDIUM,
    original: Resources,
    current: Resources | None = None,
    config: AutoScalingConfig | None = None,
    agg: WorkloadUsageAggregator | None = None,
    workers: tuple[WorkerPlacement, ...] = (),
    active_cron_rule: str | None = None,
) -> WorkloadView:
    return WorkloadView(
        namespace="ml",
        name="nb",
        qos=qos,
        original=original,
        current=current if current is not None else original,
        config=config if config is not None else percentile_config(),
        usage=agg,
        active_cron_rule=active_cron_rule,
        workers=workers,
    )
