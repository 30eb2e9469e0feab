"""The CI gate: run scenarios over several seeds, compare the metrics' distributions with a baseline.

Like benchstat for benchmarks, a change is judged on distributions, not single runs: the baseline
holds each metric's value for several seeds, the current code runs the same seeds, and per metric
the gate shows both means with their confidence intervals and a significance test (Welch's t-test,
p-values adjusted over all compared metrics with Benjamini-Hochberg, so checking hundreds of metrics
does not flag a few by chance). A metric gets a verdict only when its change is **significant and
beyond the tolerance**; a neutral change of trajectory (a tie-break that reshuffles runs) passes.

A metric's direction decides what a regression is: for "lower is better" metrics (pending time,
cost, OOMs, fragmentation...) an increase regresses; for "higher is better" ones (allocation,
attainment, throughput...) a decrease does. A metric whose direction is unknown regresses on any
significant change beyond tolerance: a gate should not let an unexplained change through.

Baselines of version 1 (one seed per scenario) are still read: with one value per side there is no
spread to test, so such a comparison falls back to the single-run rule (any change beyond tolerance
counts) and :attr:`CheckOutcome.notes` says to rewrite the baseline with ``--update``.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twin import limits, yamlsafe
from twin.atomic import atomic_write_text
from twin.errors import TwinInputError, short
from twin.experiments.stats import Estimate, benjamini_hochberg, estimate, welch_p

if TYPE_CHECKING:
    from twin.experiments.executors import RunPool

BASELINE_VERSION = 2
READABLE_VERSIONS = (1, 2)
DEFAULT_REL_TOL = 0.02
DEFAULT_SEEDS = 5
DEFAULT_ALPHA = 0.05
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
    baseline: float | None  # mean over the baseline's seeds
    current: float | None  # mean over the current seeds
    tolerance: float
    direction: Direction
    verdict: Verdict
    baseline_ci: Estimate | None = None
    current_ci: Estimate | None = None
    p_value: float | None = None  # adjusted over every compared metric; None: single runs, no test

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


Samples = Mapping[str, Sequence[float]]


def compare_metrics(
    scenario: str,
    baseline: Mapping[str, float | Sequence[float]],
    current: Mapping[str, float | Sequence[float]],
    *,
    default_tol: float = DEFAULT_REL_TOL,
    per_metric_tol: Mapping[str, float] | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> list[Comparison]:
    """Compare one scenario's metrics (one value or one value per seed each); see the module doc."""
    return judge_all(
        [_raw(scenario, m, baseline.get(m), current.get(m)) for m in sorted(set(baseline) | set(current))],
        default_tol=default_tol,
        per_metric_tol=per_metric_tol,
        alpha=alpha,
    )


@dataclass(frozen=True)
class _Raw:
    scenario: str
    metric: str
    base: tuple[float, ...]
    cur: tuple[float, ...]
    base_runs: int  # baseline runs, including those that did not report the metric


def _samples(value: float | Sequence[float] | None) -> tuple[float, ...]:
    if value is None:
        return ()
    if isinstance(value, int | float):
        return () if math.isnan(value) else (float(value),)
    return tuple(float(v) for v in value if not math.isnan(float(v)))


def _raw(scenario: str, metric: str, base: float | Sequence[float] | None, cur: float | Sequence[float] | None) -> _Raw:
    runs = 0 if base is None else 1 if isinstance(base, int | float) else len(base)
    return _Raw(scenario, metric, _samples(base), _samples(cur), runs)


def judge_all(
    raws: Sequence[_Raw],
    *,
    default_tol: float = DEFAULT_REL_TOL,
    per_metric_tol: Mapping[str, float] | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> list[Comparison]:
    """Test every metric, adjust the p-values together (false discovery rate), then give verdicts."""
    tolerances = per_metric_tol or {}
    tested = [i for i, r in enumerate(raws) if len(r.base) >= 2 and len(r.cur) >= 2]
    adjusted = dict(zip(tested, benjamini_hochberg([welch_p(raws[i].base, raws[i].cur) for i in tested]), strict=True))
    rows: list[Comparison] = []
    for i, r in enumerate(raws):
        tol = tolerances.get(r.metric, default_tol)
        direction = direction_of(r.metric)
        base = estimate(r.base) if r.base else None
        cur = estimate(r.cur) if r.cur else None
        p = adjusted.get(i)
        if cur is None:
            # An event counter is omitted when it stays at zero: a metric that only some baseline
            # runs reported may be absent from every current run without anything having broken.
            verdict = Verdict.MISSING if base is None or len(r.base) == r.base_runs else Verdict.SAME
        elif base is None:
            verdict = Verdict.NEW
        else:
            significant = p < alpha if p is not None else True  # single runs: deterministic, any change is real
            verdict = _judge(base.mean, cur.mean, tol, direction, significant)
        rows.append(
            Comparison(
                r.scenario,
                r.metric,
                None if base is None else base.mean,
                None if cur is None else cur.mean,
                tol,
                direction,
                verdict,
                base,
                cur,
                p,
            )
        )
    return rows


def _judge(base: float, cur: float, rel_tol: float, direction: Direction, significant: bool = True) -> Verdict:
    allowed = max(abs(base) * rel_tol, ABS_TOL)
    delta = cur - base
    if abs(delta) <= allowed or not significant:
        return Verdict.SAME
    if direction is Direction.EXACT:
        return Verdict.REGRESSED
    worse = delta > 0 if direction is Direction.LOWER else delta < 0
    return Verdict.REGRESSED if worse else Verdict.IMPROVED


@dataclass(frozen=True)
class BaselineEntry:
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]
    metrics: dict[str, tuple[float, ...]]  # one value per seed, NaN where a seed did not report it

    @property
    def seed(self) -> int:
        return self.seeds[0]


def load_baseline(path: str | os.PathLike[str]) -> dict[str, BaselineEntry]:
    """Version 2 (several seeds) or version 1 (one seed: read as a one-seed sample)."""
    p = Path(path)
    if not p.exists():
        raise TwinInputError("baseline file not found (create it with --update)", file=str(p))
    text = yamlsafe.read_text(p, what="baseline", max_bytes=limits.FILE_MAX_BYTES)
    try:
        data = json.loads(text)
    except RecursionError:
        raise TwinInputError("the baseline is nested too deeply", file=str(p)) from None
    except json.JSONDecodeError as err:
        raise TwinInputError(f"not a JSON baseline: {err}", file=str(p)) from None
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(data, dict) or version not in READABLE_VERSIONS or not isinstance(data.get("scenarios"), dict):
        raise TwinInputError(
            f"not a twin baseline (expected version {' or '.join(map(str, READABLE_VERSIONS))} with 'scenarios'; "
            "write a new one with twin check --update)",
            file=str(p),
            field="version",
            value=version,
        )
    out: dict[str, BaselineEntry] = {}
    for name, entry in data["scenarios"].items():
        try:
            seeds = (int(entry["seed"]),) if version == 1 else tuple(int(s) for s in entry["seeds"])
            metrics = {
                str(k): (_value(v),) if version == 1 else tuple(_value(x) for x in v)
                for k, v in entry["metrics"].items()
            }
            if not seeds or any(len(v) != len(seeds) for v in metrics.values()):
                raise ValueError("every metric needs one value per seed")
            out[name] = BaselineEntry(seeds, tuple(str(o) for o in entry.get("overrides", [])), metrics)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise TwinInputError(f"malformed entry: {short(err)}", file=str(p), obj=name) from None
    return out


def _value(raw: object) -> float:
    if raw is None:
        return math.nan
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise TypeError(f"a metric value must be a number or null, got {raw!r:.40}")
    return float(raw)


_NUMBER_LIST = re.compile(r"\[\s+(-?[\d.eE+-]+|null)((?:,\s+(?:-?[\d.eE+-]+|null))*)\s+\]")


def write_baseline(path: str | os.PathLike[str], entries: Mapping[str, BaselineEntry]) -> Path:
    doc: dict[str, Any] = {
        "version": BASELINE_VERSION,
        "scenarios": {
            name: {
                "seeds": list(e.seeds),
                "overrides": list(e.overrides),
                "metrics": {k: [None if math.isnan(v) else v for v in vs] for k, vs in sorted(e.metrics.items())},
            }
            for name, e in sorted(entries.items())
        },
    }
    text = json.dumps(doc, indent=2, sort_keys=True)
    # One line per metric: a reviewable diff when the baseline is rewritten.
    text = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(0)[1:-1].split(",")) + "]", text)
    return atomic_write_text(path, text + "\n")


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
        return "no metric changed significantly beyond tolerance"
    header = ("scenario", "metric", "baseline", "current", "change", "p", "tolerance", "verdict")
    body = [
        (
            r.scenario,
            r.metric,
            fmt_estimate(r.baseline_ci),
            fmt_estimate(r.current_ci),
            _fmt_change(r),
            fmt_p(r.p_value),
            f"{r.tolerance:.1%}",
            f"{r.verdict} ({r.direction})" if r.failed else str(r.verdict),
        )
        for r in shown
    ]
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def fmt_estimate(e: Estimate | None) -> str:
    """``mean ±half-width (n=5)``; a single run shows its value alone."""
    if e is None:
        return "-"
    if e.n < 2:
        return f"{e.mean:.6g}"
    return f"{e.mean:.6g} ±{e.half_width:.2g} (n={e.n})"


def fmt_p(p: float | None) -> str:
    return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


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
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.rows)

    @property
    def table_text(self) -> str:
        return render_text(self.rows)


def _seeds_for(entry: BaselineEntry | None, seeds: int | None, first: int | None) -> list[int]:
    """The baseline's seeds by default; ``--seeds N`` and ``--seed S`` pick N seeds from S."""
    if seeds is None and entry is not None:
        return list(entry.seeds) if first is None else [first + i for i in range(len(entry.seeds))]
    start = first if first is not None else (entry.seeds[0] if entry else 0)
    return list(range(start, start + (seeds or DEFAULT_SEEDS)))


def run_check(
    scenarios: Sequence[str],
    baseline_path: str,
    *,
    tolerance: Sequence[str] = (),
    update: bool = False,
    seed: int | None = None,
    seeds: int | None = None,
    alpha: float = DEFAULT_ALPHA,
    runner: str | None = None,
    pool: RunPool | None = None,
    on_run: Callable[[], None] | None = None,
) -> CheckOutcome:
    """Run each scenario over its seeds (in parallel through ``pool``) and compare, or rewrite the baseline."""
    from twin.experiments.executors import SerialPool
    from twin.experiments.run_inputs import scenario_inputs
    from twin.experiments.sweep import DEFAULT_RUNNER, RunSpec

    default_tol, per_metric = parse_tolerances(tolerance)
    if not 0 < alpha < 1:
        raise TwinInputError("the significance level must be between 0 and 1", field="--alpha", value=alpha)
    existing = load_baseline(baseline_path) if Path(baseline_path).exists() or not update else {}
    _check_tolerance_names(per_metric, existing, baseline_path)
    executor = pool or SerialPool()
    planned: dict[str, tuple[BaselineEntry | None, list[str], list[RunSpec]]] = {}
    for scenario in scenarios:
        key = scenario_key(scenario, baseline_path)
        entry = existing.get(key)
        if entry is None and not update:
            planned[key] = (None, [], [])
            continue
        overrides = list(entry.overrides) if entry else []
        params = tuple((k, v) for k, _, v in (o.partition("=") for o in overrides))
        inputs = scenario_inputs(scenario, overrides)
        specs = [RunSpec(scenario, params, s, inputs, runner or DEFAULT_RUNNER) for s in _seeds_for(entry, seeds, seed)]
        planned[key] = (entry, overrides, specs)
    futures = {spec: executor.submit(spec) for _, _, specs in planned.values() for spec in specs}
    results: dict[RunSpec, dict[str, float]] = {}
    for spec, future in futures.items():
        results[spec] = future.result()
        if on_run:
            on_run()
    raws: list[_Raw] = []
    missing: list[Comparison] = []
    fresh: dict[str, BaselineEntry] = dict(existing)
    notes: list[str] = []
    for key, (entry, overrides, specs) in planned.items():
        names = sorted({m for spec in specs for m in results[spec]})
        current = {m: tuple(results[spec].get(m, math.nan) for spec in specs) for m in names}
        if update:
            fresh[key] = BaselineEntry(tuple(s.seed for s in specs), tuple(overrides), current)
        elif entry is None:
            missing.append(Comparison(key, "(scenario)", None, None, 0.0, Direction.EXACT, Verdict.MISSING))
        else:
            if len(entry.seeds) == 1:
                notes.append(
                    f"{key}: the baseline has one seed, so changes are judged on single runs (no significance "
                    f"test); rewrite it with --update --seeds {DEFAULT_SEEDS} for the statistical gate"
                )
            raws.extend(
                _raw(key, m, entry.metrics.get(m), current.get(m)) for m in sorted(set(entry.metrics) | set(current))
            )
    if update:
        write_baseline(baseline_path, fresh)
    rows = judge_all(raws, default_tol=default_tol, per_metric_tol=per_metric, alpha=alpha) + missing
    return CheckOutcome(rows, update, notes)


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
