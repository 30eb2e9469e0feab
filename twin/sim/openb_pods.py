"""The openb pod list on a replay clock: each trace pod as an :class:`AllocRequest` with arrival and departure.

Used by the dynamic replay (:mod:`twin.experiments.trace_replay`) and by the scenario workload kind
``trace: openb`` (:mod:`twin.sim.trace_source`); the request itself is the one openb mapping,
:func:`twin.spec.openb.openb_request`. The mapping is described in
:mod:`twin.experiments.trace_replay` (and docs/trace.md, "Dynamic replay"). It imports no engine
(the trace file itself is read by :mod:`twin.spec.openb`, the data layer).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

from twin.errors import TwinInputError
from twin.policy.placement.fgd_measure import MILLI_PER_GPU, PodShape, scoring_view
from twin.resources import AllocRequest, QoS
from twin.spec.openb import MISSING_TIME, PodList, openb_request

POOL: Final = "openb"
QOS_MAP: Final = {"LS": QoS.HIGH, "Guaranteed": QoS.CRITICAL, "Burstable": QoS.MEDIUM, "BE": QoS.LOW, "": QoS.MEDIUM}


@dataclass(frozen=True)
class ReplayPod:
    """One trace pod on the replay clock (seconds from the first selected arrival)."""

    index: int  # position in the replay (creation order, then trace row order)
    request: AllocRequest
    arrive: float
    leave: float
    shape: PodShape
    spec_dropped: bool

    @property
    def signature(self) -> Hashable:
        r = self.request
        return (r.qos, r.gpu_count, r.gpu_milli, r.cpu_milli, r.memory, r.gpu_model)


def replay_pods(pods: PodList, *, limit: int | None = None, time_scale: float = 1.0) -> list[ReplayPod]:
    """The first ``limit`` pods by creation time (ties: trace row order) as replay pods.

    ``time_scale`` X divides the gaps between creation times (arrivals come X times faster); each
    pod's lifetime (``deletion_time - creation_time``) is kept, so X > 1 raises the load.
    """
    if pods.short_schema:
        raise TwinInputError("this pod list has no creation/deletion times (5-column file)", file=pods.source)
    if not time_scale > 0:
        raise TwinInputError("must be positive", field="--time-scale", value=time_scale)
    if limit is not None and limit < 1:
        raise TwinInputError("must be at least 1", field="--limit", value=limit)
    order = sorted(range(len(pods)), key=lambda i: (int(pods.creation_time[i]), i))
    if limit is not None:
        order = order[:limit]
    if not order:
        raise TwinInputError("pod list is empty", file=pods.source)
    t0 = int(pods.creation_time[order[0]])
    out: list[ReplayPod] = []
    for index, i in enumerate(order):
        created, deleted = int(pods.creation_time[i]), int(pods.deletion_time[i])
        name = pods.names[i]
        if created == MISSING_TIME or deleted == MISSING_TIME:
            raise TwinInputError(
                "creation_time and deletion_time are needed", file=pods.source, obj=name, field="deletion_time"
            )
        if deleted < created:
            raise TwinInputError(
                "deletion_time before creation_time", file=pods.source, obj=name, field="deletion_time", value=deleted
            )
        k, milli = int(pods.num_gpu[i]), int(pods.gpu_milli[i])
        share = 0 if k == 0 else min(max(milli, 1), MILLI_PER_GPU) if k == 1 else MILLI_PER_GPU
        spec = pods.gpu_spec[i]
        req = openb_request(
            name,
            num_gpu=k,
            share=share,
            cpu_milli=int(pods.cpu_milli[i]),
            memory_mib=int(pods.memory_mib[i]),
            gpu_model=spec[0] if len(spec) == 1 else None,
            pool=POOL,
            qos=QOS_MAP[pods.qos[i]],
            workload="openb",
        )
        arrive = (created - t0) / time_scale
        shape = scoring_view(req.cpu_milli, k, share, spec)
        out.append(ReplayPod(index, req, arrive, arrive + (deleted - created), shape, len(spec) > 1))
    return out
