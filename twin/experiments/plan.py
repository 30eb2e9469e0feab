"""Capacity planning: the cheapest configuration that meets constraints with stated confidence.

Search, not a full grid. Each varied parameter is an integer range (``pools.h100.count=4..64``).
The search assumes feasibility is monotone in every varied parameter (more GPUs never make an SLO
worse), which holds for capacity knobs; under it, coordinate-wise binary search finds a minimal
feasible point in O(d * log(range)) evaluations instead of prod(range). Every evaluated point is
kept, the answer is the best feasible one among them by the objective, and the evaluated points
give the cost-versus-constraint Pareto front. A point is feasible when the confidence bound on
the constraint's side clears it (``slo_attainment>=0.99`` needs the lower CI bound >= 0.99).

After the search, the answer is polished: each one-step-cheaper neighbour (one value lower on one
axis) is evaluated too, and the answer moves to a feasible one that is better by the objective, so
the answer is a local minimum whose every cheaper neighbour was simulated and failed (the report
names that neighbour and the constraint it missed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from twin.errors import TwinInputError
from twin.experiments.stats import Estimate, estimate
from twin.experiments.sweep import expand_range

# A metric name is any run of characters without blanks or comparison signs: per-model serving
# metrics carry a model ID and namespace (``serving.meta-llama/Llama-3.1-8B|chat.slo_attainment``)
# or a glob (``serving.*.slo_attainment``); twin.experiments.serving_constraints resolves those.
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_*?\[][^\s<>=!]*?)\s*(>=|<=|>|<)\s*(\S+)\s*$")
MAX_METRIC_CHARS = 512


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    threshold: float

    def satisfied_by(self, est: Estimate) -> bool:
        """Judged on the pessimistic side of the confidence interval."""
        if self.op in (">=", ">"):
            bound = est.low
            return bound >= self.threshold if self.op == ">=" else bound > self.threshold
        bound = est.high
        return bound <= self.threshold if self.op == "<=" else bound < self.threshold

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


def parse_constraint(text: str) -> Constraint:
    m = _CONSTRAINT.match(text)
    if not m or len(m.group(1)) > MAX_METRIC_CHARS:
        raise TwinInputError("a constraint looks like metric>=number (or <=, >, <)", field="--constraint", value=text)
    try:
        threshold = float(m.group(3))
    except ValueError:
        raise TwinInputError("the threshold is not a number", field="--constraint", value=text) from None
    if not math.isfinite(threshold):
        raise TwinInputError("the threshold must be a finite number", field="--constraint", value=text)
    return Constraint(m.group(1), m.group(2), threshold)


@dataclass(frozen=True)
class Dimension:
    key: str
    values: tuple[int, ...]  # ascending


def parse_vary(items: Sequence[str]) -> list[Dimension]:
    dims: list[Dimension] = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise TwinInputError("--vary looks like key=A..B or key=v1,v2,...", field="--vary", value=item)
        values: list[int] = []
        for token in raw.split(","):
            for v in expand_range(token.strip(), field_name="--vary"):
                try:
                    values.append(int(v))
                except ValueError:
                    raise TwinInputError("--vary values must be integers", field="--vary", value=v) from None
        dims.append(Dimension(key.strip(), tuple(sorted(set(values)))))
    if not dims:
        raise TwinInputError("give at least one --vary key=A..B", field="--vary")
    return dims


Point = tuple[int, ...]
# Evaluates one configuration across seeds: returns per-metric sample lists.
Evaluator = Callable[[Mapping[str, int]], Mapping[str, Sequence[float]]]


@dataclass
class Evaluation:
    point: Point
    params: dict[str, int]
    estimates: dict[str, Estimate]
    feasible: bool


@dataclass
class PlanResult:
    objective: str
    minimise: bool
    constraints: list[Constraint]
    dimensions: list[Dimension]
    evaluations: list[Evaluation] = field(default_factory=list)
    best: Evaluation | None = None

    def pareto_front(self, metric: str) -> list[Evaluation]:
        """Non-dominated points for (objective: better, ``metric``: higher), sorted by objective."""
        sign = 1.0 if self.minimise else -1.0
        pts = sorted(
            (e for e in self.evaluations if metric in e.estimates),
            key=lambda e: (sign * e.estimates[self.objective].mean, -e.estimates[metric].mean, e.point),
        )
        front: list[Evaluation] = []
        best_metric = float("-inf")
        for e in pts:
            if e.estimates[metric].mean > best_metric:
                front.append(e)
                best_metric = e.estimates[metric].mean
        return front


def search(
    dimensions: Sequence[Dimension],
    evaluate: Evaluator,
    *,
    objective: str,
    constraints: Sequence[Constraint],
    minimise: bool = True,
    confidence: float = 0.95,
    max_rounds: int = 3,
    max_polish: int = 16,
) -> PlanResult:
    result = PlanResult(objective, minimise, list(constraints), list(dimensions))
    cache: dict[Point, Evaluation] = {}

    def judge(point: Point) -> Evaluation:
        if point in cache:
            return cache[point]
        params = {d.key: d.values[i] for d, i in zip(dimensions, point, strict=True)}
        samples = evaluate(params)
        for name in [objective, *(c.metric for c in constraints)]:
            if name not in samples:
                raise TwinInputError(
                    f"the run reports no metric {name!r}; available: {', '.join(sorted(samples))}",
                    field="--objective/--constraint",
                    value=name,
                )
        estimates = {k: estimate(v, confidence) for k, v in samples.items()}
        feasible = all(c.satisfied_by(estimates[c.metric]) for c in constraints)
        ev = Evaluation(point, params, estimates, feasible)
        cache[point] = ev
        result.evaluations.append(ev)
        return ev

    current: Point = tuple(len(d.values) - 1 for d in dimensions)  # the largest configuration
    if not judge(current).feasible:
        return result  # nothing in range meets the constraints
    for _ in range(max_rounds):
        before = current
        for axis in range(len(dimensions)):
            lo, hi = 0, current[axis]  # hi is feasible; find the smallest feasible index on this axis
            while lo < hi:
                mid = (lo + hi) // 2
                probe = (*current[:axis], mid, *current[axis + 1 :])
                if judge(probe).feasible:
                    hi = mid
                else:
                    lo = mid + 1
            current = (*current[:axis], hi, *current[axis + 1 :])
        if current == before or len(dimensions) == 1:
            break
    sign = 1.0 if minimise else -1.0

    def better(e: Evaluation) -> tuple[float, Point]:
        return (sign * e.estimates[objective].mean, e.point)

    best = min((e for e in result.evaluations if e.feasible), key=better)
    for _ in range(max_polish):  # bounded: each move strictly improves the objective
        downs = [(*best.point[:a], best.point[a] - 1, *best.point[a + 1 :]) for a in range(len(dimensions))]
        moves = [ev for ev in (judge(p) for p in downs if min(p) >= 0) if ev.feasible and better(ev) < better(best)]
        if not moves:
            break
        best = min(moves, key=better)
    result.best = min((e for e in result.evaluations if e.feasible), key=better)
    return result


def cheaper_neighbours(result: PlanResult) -> list[Evaluation]:
    """The evaluated configurations one value lower than the answer on one axis, in axis order."""
    if result.best is None:
        return []
    by_point = {e.point: e for e in result.evaluations}
    p = result.best.point
    downs = [(*p[:a], p[a] - 1, *p[a + 1 :]) for a in range(len(p)) if p[a] > 0]
    return [by_point[d] for d in downs if d in by_point]


def nearest_cheaper_failure(result: PlanResult) -> Evaluation | None:
    """The infeasible evaluated configuration closest to the answer by the objective, on its better side."""
    if result.best is None:
        return None
    sign = 1.0 if result.minimise else -1.0
    best = sign * result.best.estimates[result.objective].mean
    cheaper = [e for e in result.evaluations if not e.feasible and sign * e.estimates[result.objective].mean < best]
    return max(cheaper, key=lambda e: (sign * e.estimates[result.objective].mean, e.point), default=None)


def missed(result: PlanResult, ev: Evaluation) -> list[Constraint]:
    """The constraints ``ev`` does not meet with confidence."""
    return [c for c in result.constraints if not c.satisfied_by(ev.estimates[c.metric])]
