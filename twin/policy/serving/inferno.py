"""Era A/B model-based sizing: from the queue model to replicas, and the inferno cost solver.

Semantics 2.4 (``pkg/core/allocation.go: CreateAllocation``), 2.6 (zero load) and 3.1
(``pkg/solver``: transition penalty, ``SolveUnlimited``, ``SolveGreedy``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from twin.errors import TwinInputError
from twin.policy.serving.queue_model import (
    Generation,
    InfeasibleTargetError,
    QueueMetrics,
    QueueModel,
    ServiceTimes,
    SizeTargets,
)

MAX_QUEUE_TO_BATCH_RATIO = 10  # Q = 10 * N (era A)
ACCEL_PENALTY_FACTOR = 0.1


@dataclass(frozen=True, slots=True)
class AcceleratorPerf:
    """One accelerator a variant can run on: perf parameters (ms), GPUs per replica, batch."""

    name: str
    alpha: float
    beta: float
    gamma: float
    delta: float = 0.0
    generation: Generation = Generation.CURRENT
    acc_count: int = 1
    max_batch: int = 256
    at_tokens: int = 0  # perf.AtTokens: the output length max_batch was measured at (0 = not set)

    def batch_for(self, output_tokens: float, server_max_batch: int = 0) -> int:
        """Semantics 2.4 step 2: the server's batch, else max(maxBatch*atTokens/O, 1) (integer division)."""
        if server_max_batch > 0:
            return server_max_batch
        if self.at_tokens > 0 and output_tokens > 0:
            return max((self.max_batch * self.at_tokens) // int(output_tokens), 1)
        return self.max_batch

    def service_times(self, input_tokens: float, output_tokens: float) -> ServiceTimes:
        return ServiceTimes(
            self.alpha, self.beta, self.gamma, input_tokens, output_tokens, delta=self.delta, generation=self.generation
        )


@dataclass(frozen=True, slots=True)
class ServerLoad:
    """Measured load of one variant: arrival rate in req/min (as era A keeps it), mean tokens."""

    arrival_rpm: float
    input_tokens: float
    output_tokens: float


@dataclass(frozen=True, slots=True)
class Allocation:
    """One candidate (or chosen) allocation of a variant on an accelerator."""

    accelerator: str
    replicas: int
    cost: float
    max_rate_per_replica: float = 0.0  # req/s (capacity at the sized rate)
    metrics: QueueMetrics | None = None
    value: float = 0.0  # transition penalty from the current allocation (what the solver minimises)


def create_allocation(
    load: ServerLoad,
    perf: AcceleratorPerf,
    unit_cost: float,
    targets: SizeTargets,
    *,
    min_replicas: int = 1,
    server_max_batch: int = 0,
    integer_tokens: bool = True,
    max_queue: int | None = None,
) -> Allocation | None:
    """Semantics 2.4: replicas and cost for one variant on one accelerator; None if the SLO is infeasible.

    ``integer_tokens`` floors I and O as the era-A controller does. ``max_queue`` defaults to 10*N.
    """
    i = math.floor(load.input_tokens) if integer_tokens else load.input_tokens
    o = math.floor(load.output_tokens) if integer_tokens else load.output_tokens
    if load.arrival_rpm <= 0 or o <= 0:
        return zero_load_allocation(perf, unit_cost, min_replicas, server_max_batch=server_max_batch)
    batch = perf.batch_for(o, server_max_batch)
    queue = MAX_QUEUE_TO_BATCH_RATIO * batch if max_queue is None else max_queue
    model = QueueModel(perf.service_times(i, o), batch, queue)
    try:
        sized = model.size(targets)
    except InfeasibleTargetError:
        return None
    capacity = sized.capacity
    total = targets.tps / o if targets.tps > 0 else load.arrival_rpm / 60.0
    replicas = max(math.ceil(total / capacity), min_replicas)
    metrics = model.analyze(total / replicas) if replicas > 0 and total > 0 else None
    return Allocation(perf.name, replicas, unit_cost * perf.acc_count * replicas, capacity, metrics)


def zero_load_allocation(
    perf: AcceleratorPerf, unit_cost: float, min_replicas: int, *, server_max_batch: int = 0
) -> Allocation:
    """Semantics 2.6 (``pkg/core/allocation.go: zeroLoadAllocation``): no load keeps ``min_replicas``
    (0 with scale-to-zero: no accelerator, cost 0).

    The batch is the server's max batch when it sets one, else the profile's. The reported TTFT and
    the "prefill" in the max rate are the single-token iteration time (alpha + beta in the current
    model, gamma + delta in era A), so the max rate per replica is ``N / (t1 + alpha + beta*N)``,
    not a full prefill at batch N. The code calls the number "meaningless"; it is reproduced as is.
    """
    if min_replicas <= 0:
        return Allocation("", 0, 0.0)
    n = server_max_batch if server_max_batch > 0 else perf.max_batch
    itl = perf.alpha + perf.beta
    single_token = itl if perf.generation is Generation.CURRENT else perf.gamma + perf.delta
    max_rate = n / (single_token + perf.alpha + perf.beta * n) * 1000.0  # req/ms -> req/s
    metrics = QueueMetrics(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, single_token, itl, 0.0, max_rate, 0.0)
    return Allocation(perf.name, min_replicas, unit_cost * perf.acc_count * min_replicas, max_rate, metrics)


def transition_value(current: Allocation | None, candidate: Allocation) -> float:
    """Semantics 3.1: the penalty the solver minimises."""
    if current is None or current.replicas == 0 or not current.accelerator:
        return (1.0 + ACCEL_PENALTY_FACTOR) * candidate.cost
    if current.accelerator == candidate.accelerator:
        if current.replicas == candidate.replicas:
            return 0.0
        return candidate.cost - current.cost
    return ACCEL_PENALTY_FACTOR * (current.cost + candidate.cost) + (candidate.cost - current.cost)


@dataclass(frozen=True)
class ServerCandidates:
    """One variant for the solver: its candidates, priority (1 = highest) and current allocation."""

    name: str
    candidates: tuple[Allocation, ...]
    priority: int = 100
    current: Allocation | None = None
    acc_counts: Mapping[str, int] = field(default_factory=dict)

    def ranked(self) -> list[Allocation]:
        """Candidates with their transition value, best first; ties by accelerator name, then replicas.

        Go iterates a map here, so real ties are arbitrary; the twin breaks them by name.
        """
        valued = [replace(c, value=transition_value(self.current, c)) for c in self.candidates]
        return sorted(valued, key=lambda a: (a.value, a.accelerator, a.replicas))


def solve_unlimited(servers: Sequence[ServerCandidates]) -> dict[str, Allocation]:
    """``SolveUnlimited``: per server independently, the minimum-value candidate (no capacity limits)."""
    chosen: dict[str, Allocation] = {}
    for server in servers:
        ranked = server.ranked()
        if ranked:
            chosen[server.name] = ranked[0]
    return chosen


class SaturationPolicy(StrEnum):
    NONE = "None"
    PRIORITY_EXHAUSTIVE = "PriorityExhaustive"
    PRIORITY_ROUND_ROBIN = "PriorityRoundRobin"
    ROUND_ROBIN = "RoundRobin"


def solve_greedy(
    servers: Sequence[ServerCandidates],
    available: Mapping[str, int],
    policy: SaturationPolicy = SaturationPolicy.NONE,
) -> dict[str, Allocation]:
    """``SolveGreedy`` (limited mode): allocate by priority then regret within the free GPUs per type.

    ``available`` is free GPUs per accelerator name. Servers are taken by priority (1 first), then
    by regret (value gap between best and next candidate, largest first), then by name. A server
    gets its first candidate that fits whole; servers left over get best-effort partial replicas
    according to ``policy`` (cost scaled with the replica count).
    """
    free = dict(available)
    ranked = {s.name: s.ranked() for s in servers}

    def regret(s: ServerCandidates) -> float:
        r = ranked[s.name]
        return (r[1].value - r[0].value) if len(r) > 1 else math.inf

    order = sorted((s for s in servers if ranked[s.name]), key=lambda s: (s.priority, -regret(s), s.name))
    chosen: dict[str, Allocation] = {}
    left: list[ServerCandidates] = []
    for server in order:
        for cand in ranked[server.name]:
            need = cand.replicas * _acc_count(server, cand)
            if free.get(cand.accelerator, 0) >= need:
                free[cand.accelerator] = free.get(cand.accelerator, 0) - need
                chosen[server.name] = cand
                break
        else:
            left.append(server)
    if policy is SaturationPolicy.NONE or not left:
        return chosen
    wanted = {s.name: ranked[s.name][0] for s in left}
    granted: dict[str, int] = {s.name: 0 for s in left}

    def give_one(server: ServerCandidates) -> bool:
        cand = wanted[server.name]
        per = _acc_count(server, cand)
        if granted[server.name] >= cand.replicas or free.get(cand.accelerator, 0) < per:
            return False
        free[cand.accelerator] -= per
        granted[server.name] += 1
        return True

    if policy is SaturationPolicy.PRIORITY_EXHAUSTIVE:
        for server in left:
            while give_one(server):
                pass
    else:
        groups: list[list[ServerCandidates]]
        if policy is SaturationPolicy.ROUND_ROBIN:
            groups = [left]
        else:
            prios = sorted({s.priority for s in left})
            groups = [[s for s in left if s.priority == p] for p in prios]
        for group in groups:
            progress = True
            while progress:
                progress = False
                for server in group:
                    progress = give_one(server) or progress
    for server in left:
        n = granted[server.name]
        if n > 0:
            cand = wanted[server.name]
            chosen[server.name] = replace(cand, replicas=n, cost=cand.cost * n / cand.replicas)
    return chosen


def _acc_count(server: ServerCandidates, cand: Allocation) -> int:
    count = server.acc_counts.get(cand.accelerator, 1)
    if count < 1:
        raise TwinInputError("must be at least 1", obj=server.name, field="accCount", value=count)
    return count
