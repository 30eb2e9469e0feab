"""What the live agent decides, one frozen record per decision, each stamped with the agent's ``now``.

These are the values the parity test compares event for event with the simulator's policy calls,
and what actuators act on (only when enabled: the default actuator just logs them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Placed:
    """A pending worker got GPUs (TensorFusion: scheduler Reserve + PreBind ``gpu-ids``)."""

    t: float
    worker: str
    node: str
    gpu_ids: tuple[str, ...]
    partition_template: str | None = None
    effective_hard_sm_percent: int | None = None


@dataclass(frozen=True, slots=True)
class Unschedulable:
    """No placement now; retried every tick, reported again only when the reason changes."""

    t: float
    worker: str
    reason: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """Placement can never succeed (an unresolvable quota or filter verdict): the worker is dropped."""

    t: float
    worker: str
    reason: str


@dataclass(frozen=True, slots=True)
class WouldPreempt:
    """Evicting these lower-priority workers would let ``worker`` fit. The agent never evicts by itself."""

    t: float
    worker: str
    victims: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Adopted:
    """A worker found already running on these GPUs; its request is booked where it runs."""

    t: float
    worker: str
    gpu_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AdoptFailed:
    """A running worker whose request does not fit where it runs (overcommitted, or quota)."""

    t: float
    worker: str
    reason: str


@dataclass(frozen=True, slots=True)
class Released:
    """A worker's processes are gone: its allocation and quota usage are returned."""

    t: float
    worker: str


@dataclass(frozen=True, slots=True)
class LimiterUpdate:
    """One soft-limiter tick for (worker, GPU): the token rate and bucket the hypervisor would write to shm."""

    t: float
    worker: str
    gpu: str
    device_util: float
    up_limit: float
    rate: float
    capacity: float
    tokens: float


@dataclass(frozen=True, slots=True)
class LimiterSkipped:
    """The device gives no utilisation (MIG, NotSupported), so the soft limiter cannot run there."""

    t: float
    worker: str
    gpu: str
    reason: str


@dataclass(frozen=True, slots=True)
class GpuLost:
    t: float
    gpu: str


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The vertical autoscaler's new per-device request/limit for a workload (``namespace/workload``).

    ``applied``: workers resized in the twin's state; ``failed``: the worker whose resize was refused
    (capacity or quota), in which case nothing was resized (all-or-nothing per workload).
    """

    t: float
    workload: str
    tflops_request: float
    tflops_limit: float
    vram_request: int
    vram_limit: int
    applied: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


Decision = (
    Placed
    | Unschedulable
    | Rejected
    | WouldPreempt
    | Adopted
    | AdoptFailed
    | Released
    | LimiterUpdate
    | LimiterSkipped
    | GpuLost
    | Recommendation
)


def decision_dict(d: Decision) -> dict[str, Any]:
    """``{"kind": "Placed", ...fields}``: JSON-safe, for logs and comparisons."""
    body = asdict(d)
    for key, value in body.items():
        if isinstance(value, tuple):
            body[key] = list(value)
    return {"kind": type(d).__name__, **body}
