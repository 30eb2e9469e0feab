"""Every bound the twin puts on its inputs, in one place, and how to raise it.

A small input must never cause unbounded work: a YAML alias bomb, ``duration: 100000d``, a grid of
10^8 values. Each limit has a default sized well above any realistic use, and an environment
variable that raises (or lowers) it for one run, e.g. ``TWIN_LIMIT_MAX_NODES=200000 twin run ...``.
Errors name the limit, the value and the variable, and never print an unbounded value (``short``).

This module reads the environment, so the pure policy layer does not import it: the checks run at
the loading edge (file loaders, scenario validation, CLI flags).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from twin.errors import REPR_MAX_CHARS, TwinInputError, short

__all__ = ["REPR_MAX_CHARS", "Limit", "all_limits", "check", "finite", "short"]


@dataclass(frozen=True)
class Limit:
    name: str
    default: float
    what: str

    @property
    def env(self) -> str:
        return f"TWIN_LIMIT_{self.name.upper()}"

    @property
    def value(self) -> float:
        raw = os.environ.get(self.env)
        if raw is None or not raw.strip():
            return self.default
        try:
            value = float(raw)
        except ValueError:
            raise TwinInputError("a limit must be a number", field=self.env, value=raw) from None
        if not math.isfinite(value) or value <= 0:
            raise TwinInputError("a limit must be a positive finite number", field=self.env, value=raw)
        return value

    def hint(self) -> str:
        return f"limit {self.name} = {fmt(self.value)} {self.what}; raise it with {self.env}=..."


_ALL: dict[str, Limit] = {}


def _limit(name: str, default: float, what: str) -> Limit:
    limit = Limit(name, default, what)
    _ALL[name] = limit
    return limit


# YAML (every file loader goes through twin.yamlsafe)
YAML_MAX_BYTES = _limit("yaml_max_bytes", 64 * 1024 * 1024, "bytes per YAML file")
YAML_MAX_NODES = _limit("yaml_max_nodes", 5_000_000, "YAML nodes per file, aliases expanded")
YAML_MAX_DEPTH = _limit("yaml_max_depth", 100, "levels of YAML nesting")
# Any other input file (CSV traces, JSON baselines, JSONL recordings)
FILE_MAX_BYTES = _limit("file_max_bytes", 512 * 1024 * 1024, "bytes per input file")
# Scenarios
MAX_DURATION_S = _limit("max_duration_s", 366 * 86400, "simulated seconds")
MAX_NODES = _limit("max_nodes", 50_000, "nodes in one scenario or cluster")
MAX_GPUS = _limit("max_gpus", 400_000, "GPUs in one scenario or cluster")
MAX_EVENTS = _limit("max_events", 50_000_000, "simulated events (estimated: arrivals, usage updates, ticks)")
MAX_TRACE_PODS = _limit("max_trace_pods", 5_000_000, "pods in a trace after the FGD protocol's inflation (worst case)")
# Sweeps and plans
MAX_RANGE_VALUES = _limit("max_range_values", 10_000, "values in one A..B range")
MAX_GRID_RUNS = _limit("max_grid_runs", 100_000, "runs in one sweep (combinations x seeds)")
# Serving queue model: the state space grows with max batch + max queue
MAX_BATCH = _limit("max_batch", 4096, "requests in one vLLM batch")
MAX_QUEUE = _limit("max_queue", 100_000, "requests waiting in one replica's queue")


def all_limits() -> list[Limit]:
    return [_ALL[k] for k in sorted(_ALL)]


def fmt(value: float) -> str:
    return f"{int(value)}" if float(value).is_integer() and abs(value) < 1e18 else f"{value:g}"


def check(limit: Limit, amount: float, *, file: str | None = None, field: str | None = None) -> None:
    """Raise a TwinInputError naming the limit when ``amount`` exceeds it."""
    if amount > limit.value:
        raise TwinInputError(f"{fmt(amount)} is above the {limit.hint()}", file=file, field=field)


def finite(value: float, *, field: str, obj: str | None = None, file: str | None = None) -> float:
    """Refuse nan and inf: they make every comparison false and every answer silently wrong."""
    if not math.isfinite(value):
        raise TwinInputError("must be a finite number", file=file, obj=obj, field=field, value=value)
    return value
