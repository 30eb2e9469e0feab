"""The CI gate: run scenarios, compare their metrics with a stored baseline, flag regressions.

A metric's direction decides what a regression is: for "lower is better" metrics (pending time,
cost, OOMs, fragmentation...) an increase beyond tolerance regresses; for "higher is better" ones
(allocation, attainment, throughput...) a decrease does. A metric whose direction is unknown
regresses on any change beyond tolerance: a gate should not let an unexplained change through.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from twin import limits, yamlsafe
from twin.atomic import atomic_write_text
from twin.errors import TwinInputError, short

BASELINE_VERSION = 1
DEFAULT_REL_TOL = 0.02
ABS_TOL = 1e-9

_LOWER_BETTER = re.compile(
    r"pending|wait|latency|ttft|itl|tpot|cost|oom|preempt|frag|slowdown|fail|unschedul|error|timeout|throttl|waste"
)
_HIGHER_BETTER = re.compile(r"alloc|utilis|utiliz|attain|throughput|complet|saved|fit|goodput|success")


class Direction(StrEnum):
    LOWER = "lower-is-better"
    HIGHER = "higher-is-better"
    EXACT = "unknown: any change"


def direction_of(metric: str) -> Direction:
    name = metric.lower()
    # A sample size ("pending_time_s.medium.count") is neither better nor worse when it grows.
    if name.rsplit(".", 1)[-1] in ("count", "n", "n_seeds"):
        return Direction.EXACT
    # "failed" style names are checked first so "allocation_failed" is lower-is-better.
    if _LOWER_BETTER.search(name):
        return Direction.LOWER
    if _HIGHER_BETTER.search(name):
        return Direction.HIGHER
    return Direction.EXACT


class Verdict(StrEnum):
    SAME = "same"
    IMPROVED = "improved"
    REGRESSED = "REGRESSED"
    MISSING = "MISSING"
    NEW = "new"


@dataclass(frozen=True)
class Comparison:
    scenario: str
    metric: str
    baseline: float | None
    current: float | None
    tolerance: float
    direction: Direction
    verdict: Verdict

    @property
    def failed(self) -> bool:
        return self.verdict in (Verdict.REGRESSED, Verdict.MISSING)

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline


def parse_tolerances(items: Sequence[str]) -> tuple[float, dict[str, float]]:
    """``["0.05"]`` sets the default; ``["pending_p99=0.1"]`` sets one metric's relative tolerance."""
    default = DEFAULT_REL_TOL
    per_metric: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.rpartition("=")
        try:
            value = float(raw)
        except ValueError:
            raise TwinInputError("a tolerance is a number, or metric=number", field="--tolerance", value=item) from None
        if not math.isfinite(value) or value < 0:
            raise TwinInputError("a tolerance must be a finite number >= 0", field="--tolerance", value=item)
        if sep:
            per_metric[name.strip()] = value
        else:
            default = value
    return default, per_metric


def compare_metrics(
    scenario: str,
    baseline: Mapping[str, float],
    current: Mapping[str, float],
    *,
    default_tol: float = DEFAULT_REL_TOL,
    per_metric_tol: Mapping[str, float] | None = None,
) -> list[Comparison]:
    tolerances = per_metric_tol or {}
    rows: list[Comparison] = []
    for metric in sorted(set(baseline) | set(current)):
        tol = tolerances.get(metric, default_tol)
        direction = direction_of(metric)
        base, cur = baseline.get(metric), current.get(metric)
        if cur is None:
            verdict = Verdict.MISSING
        elif base is None:
            verdict = Verdict.NEW
        else:
            verdict = _judge(float(base), float(cur), tol, direction)
        rows.append(Comparison(scenario, metric, base, cur, tol, direction, verdict))
    return rows


def _judge(base: float, cur: float, rel_tol: float, direction: Direction) -> Verdict:
    if math.isnan(base) and math.isnan(cur):
        return Verdict.SAME
    if math.isnan(base) or math.isnan(cur):
        return Verdict.REGRESSED
    allowed = max(abs(base) * rel_tol, ABS_TOL)
    delta = cur - base
    if abs(delta) <= allowed:
        return Verdict.SAME
    if direction is Direction.EXACT:
        return Verdict.REGRESSED
    worse = delta > 0 if direction is Direction.LOWER else delta < 0
    return Verdict.REGRESSED if worse else Verdict.IMPROVED


@dataclass(frozen=True)
class BaselineEntry:
    seed: int
    overrides: tuple[str, ...]
    metrics: dict[str, float]


def load_baseline(path: str | os.PathLike[str]) -> dict[str, BaselineEntry]:
    p = Path(path)
    if not p.exists():
        raise TwinInputError("baseline file not found (create it with --update)", file=str(p))
    text = yamlsafe.read_text(p, what="baseline", max_bytes=limits.FILE_MAX_BYTES)
    try:
        data = json.loads(text)
    except RecursionError:
        raise TwinInputError("the baseline is nested too deeply", file=str(p)) from None
    except json.JSONDecodeError as err:
        raise TwinInputError(f"not valid JSON: {err.msg} at line {err.lineno}", file=str(p)) from None
    if (
        not isinstance(data, dict)
        or data.get("version") != BASELINE_VERSION
        or not isinstance(data.get("scenarios"), dict)
    ):
        raise TwinInputError(
            f"not a twin baseline (expected version {BASELINE_VERSION} with 'scenarios')",
            file=str(p),
            field="version",
            value=data.get("version") if isinstance(data, dict) else None,
        )
    out: dict[str, BaselineEntry] = {}
    for name, entry in data["scenarios"].items():
        try:
            out[name] = BaselineEntry(
                int(entry["seed"]),
                tuple(str(o) for o in entry.get("overrides", [])),
                {str(k): float(v) for k, v in entry["metrics"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise TwinInputError(f"malformed entry: {short(err)}", file=str(p), obj=name) from None
    return out


def write_baseline(path: str | os.PathLike[str], entries: Mapping[str, BaselineEntry]) -> Path:
    doc: dict[str, Any] = {
        "version": BASELINE_VERSION,
        "scenarios": {
            name: {"seed": e.seed, "overrides": list(e.overrides), "metrics": dict(sorted(e.metrics.items()))}
            for name, e in sorted(entries.items())
        },
    }
    return atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def scenario_key(path: str | os.PathLike[str], baseline_path: str | os.PathLike[str]) -> str:
    """Scenarios are keyed by their path relative to the baseline file, so the repo can move."""
    scenario = Path(path).resolve()
    root = Path(baseline_path).resolve().parent
    try:
        return scenario.relative_to(root).as_posix()
    except ValueError:
        return os.path.relpath(scenario, root).replace(os.sep, "/")


def render_text(rows: Sequence[Comparison], *, only_changes: bool = True) -> str:
    """A plain table (for pytest failure messages and logs)."""
    shown = [r for r in rows if not only_changes or r.verdict is not Verdict.SAME]
    if not shown:
        return "no metric changed beyond tolerance"
    header = ("scenario", "metric", "baseline", "current", "change", "tolerance", "verdict")
    body = [
        (
            r.scenario,
            r.metric,
            _fmt(r.baseline),
            _fmt(r.current),
            _fmt_change(r),
            f"{r.tolerance:.1%}",
            f"{r.verdict} ({r.direction})" if r.failed else str(r.verdict),
        )
        for r in shown
    ]
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def _fmt_change(r: Comparison) -> str:
    if r.change is None:
        return "-"
    if r.baseline:
        return f"{r.change:+.4g} ({r.change / abs(r.baseline):+.1%})"
    return f"{r.change:+.4g}"


@dataclass
class CheckOutcome:
    rows: list[Comparison]
    updated: bool

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.rows)

    @property
    def table_text(self) -> str:
        return render_text(self.rows)


def run_check(
    scenarios: Sequence[str],
    baseline_path: str,
    *,
    tolerance: Sequence[str] = (),
    update: bool = False,
    seed: int | None = None,
    runner: str | None = None,
    on_scenario: Callable[[str], None] | None = None,
) -> CheckOutcome:
    """Run each scenario with its baseline seed/overrides and compare (or rewrite the baseline)."""
    from twin.experiments.sweep import DEFAULT_RUNNER, resolve_runner

    run = resolve_runner(runner or DEFAULT_RUNNER)
    default_tol, per_metric = parse_tolerances(tolerance)
    existing = load_baseline(baseline_path) if Path(baseline_path).exists() or not update else {}
    _check_tolerance_names(per_metric, existing, baseline_path)
    rows: list[Comparison] = []
    fresh: dict[str, BaselineEntry] = dict(existing)
    for scenario in scenarios:
        key = scenario_key(scenario, baseline_path)
        entry = existing.get(key)
        run_seed = seed if seed is not None else (entry.seed if entry else 0)
        overrides = list(entry.overrides) if entry else []
        if on_scenario:
            on_scenario(key)
        metrics = {k: float(v) for k, v in run(scenario, run_seed, overrides).items()}
        if update:
            fresh[key] = BaselineEntry(run_seed, tuple(overrides), metrics)
        elif entry is None:
            rows.append(Comparison(key, "(scenario)", None, None, 0.0, Direction.EXACT, Verdict.MISSING))
        else:
            rows.extend(
                compare_metrics(key, entry.metrics, metrics, default_tol=default_tol, per_metric_tol=per_metric)
            )
    if update:
        write_baseline(baseline_path, fresh)
    return CheckOutcome(rows, update)


def _check_tolerance_names(per_metric: Mapping[str, float], baseline: Mapping[str, BaselineEntry], path: str) -> None:
    """``--tolerance nosuch=0.1`` must not be ignored silently: every named metric is in the baseline."""
    if not baseline:
        return  # --update of a new baseline: nothing to check against yet
    names = {m for entry in baseline.values() for m in entry.metrics}
    for metric in sorted(per_metric):
        if metric not in names:
            close = difflib.get_close_matches(metric, sorted(names), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise TwinInputError(
                f"the baseline has no metric {metric!r}{hint}", file=path, field="--tolerance", value=metric
            )
