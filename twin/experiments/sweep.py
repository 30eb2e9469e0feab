"""Parameter sweeps: every grid combination x seeds, in parallel, resumable.

Design (see docs/sweeps.md):
* A run is ``(scenario, overrides, seed)``; its key hashes the content of the scenario and of every
  file it references (``twin.experiments.run_inputs``), the twin's version, the runner, the
  overrides and the seed, so changed inputs or code never reuse stale results.
* Runs go through a ``twin.experiments.executors.RunPool``: local processes by default, or a Dask
  cluster (optional extra ``[dask]``) to which runs ship their inputs by content hash.
* Each finished run is appended as one JSON line to ``runs.jsonl`` and flushed, so a crashed sweep
  restarts without recomputing finished runs (a torn last line is ignored).
* The table aggregates per combination: mean and a Student-t confidence interval across seeds.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin import limits
from twin.atomic import atomic_write_bytes, atomic_write_text
from twin.errors import TwinInputError
from twin.experiments.executors import RunPool
from twin.experiments.executors import make_executor as make_executor  # re-exported: callers import it here
from twin.experiments.run_inputs import RunInputs, file_sha256, scenario_inputs
from twin.experiments.stats import estimate

RunFn = Callable[[str, int, Sequence[str]], Mapping[str, float]]
DEFAULT_RUNNER = "twin.experiments.runner:run_summary"
RUNS_FILE = "runs.jsonl"


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["pools.h100.count=4,8", "seed=1"]`` -> ``{"pools.h100.count": ["4", "8"], ...}``.

    A value ``A..B`` (integers) expands to every integer from A to B inclusive; ``A..B:S`` steps by S.
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise TwinInputError("a grid entry must look like key=v1,v2,...", field="--grid", value=item)
        if key in grid:
            raise TwinInputError("the same key is given twice", field="--grid", value=key)
        values: list[str] = []
        for token in raw.split(","):
            token = token.strip()
            if not token:
                raise TwinInputError("empty value in grid entry", field="--grid", value=item)
            values.extend(expand_range(token, field_name="--grid"))
        grid[key] = values
    combos = math.prod(len(v) for v in grid.values())
    limits.check(limits.MAX_GRID_RUNS, combos, field="--grid (combinations)")
    return grid


def expand_range(token: str, *, field_name: str) -> list[str]:
    if ".." not in token:
        return [token]
    span, _, step_s = token.partition(":")
    lo_s, _, hi_s = span.partition("..")
    try:
        lo, hi, step = int(lo_s), int(hi_s), int(step_s or 1)
    except ValueError:
        raise TwinInputError("a range must be integers A..B or A..B:STEP", field=field_name, value=token) from None
    if step <= 0 or hi < lo:
        raise TwinInputError("a range needs A <= B and a positive step", field=field_name, value=token)
    # Counted before the list is built: 1..100000000 must fail at once, not after filling memory.
    limits.check(limits.MAX_RANGE_VALUES, (hi - lo) // step + 1, field=f"{field_name} {token}")
    return [str(v) for v in range(lo, hi + 1, step)]


def combinations(grid: Mapping[str, Sequence[str]]) -> list[tuple[tuple[str, str], ...]]:
    """Every combination, keys in sorted order, values in the order given (stable run order)."""
    keys = sorted(grid)
    return [tuple(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


@dataclass(frozen=True)
class RunSpec:
    """One run: a main file (scenario) with overrides and a seed, and every input it reads."""

    scenario: str
    params: tuple[tuple[str, str], ...]
    seed: int
    inputs: RunInputs
    runner: str = DEFAULT_RUNNER

    @property
    def overrides(self) -> list[str]:
        """What the runner gets on the planning machine (named inputs as ``key=path``)."""
        named = [f"{f.key}={f.path}" for f in self.inputs.refs] if self.inputs.named else []
        return [*self.shipped_overrides, *named]

    @property
    def shipped_overrides(self) -> list[str]:
        """What a shipped run gets before its inputs are localised (the worker adds the paths)."""
        return [f"{k}={v}" for k, v in self.params]

    @property
    def run_id(self) -> str:
        """The run key: every input's content, the twin's version, the runner, overrides and seed."""
        payload = json.dumps([self.inputs.digest(), self.runner, list(self.params), self.seed], separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class SweepResult:
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per finished run
    reused: int = 0
    computed: int = 0
    stale: int = 0  # results in the file that no planned run matches (inputs, version or grid changed)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run_id, error)

    def reuse_note(self) -> str:
        """Why results were or were not reused, for the closing line of a resumed sweep."""
        parts = []
        if self.reused:
            parts.append(f"{self.reused} reused from an earlier run with identical inputs, seed and twin version")
        if self.stale:
            parts.append(
                f"{self.stale} earlier results not reused: their scenario, a file it references, "
                "the twin's version or the grid differ"
            )
        return "; ".join(parts)


class SweepInterrupted(Exception):
    """Ctrl-C during a sweep: the finished runs are saved; rerunning the command resumes."""

    def __init__(self, result: SweepResult, results_path: Path, total: int) -> None:
        self.result = result
        self.results_path = results_path
        self.total = total
        saved = result.reused + result.computed
        super().__init__(f"interrupted: {saved} of {total} runs are saved in {results_path}")


def file_digest(path: str | os.PathLike[str]) -> str:
    return file_sha256(Path(path), what="scenario")


def plan_runs(
    scenario: str,
    grid: Mapping[str, Sequence[str]],
    seeds: Sequence[int],
    *,
    runner: str = DEFAULT_RUNNER,
) -> list[RunSpec]:
    """Every combination x seed; each run's inputs are resolved with its own overrides applied."""
    # Counted before any run is planned (each plans its inputs): a 10^8-run grid fails at once.
    limits.check(limits.MAX_GRID_RUNS, math.prod(len(v) for v in grid.values()) * len(seeds), field="--grid x --seeds")
    runs: list[RunSpec] = []
    for combo in combinations(grid):
        inputs = scenario_inputs(scenario, [f"{k}={v}" for k, v in combo])
        runs.extend(RunSpec(scenario, combo, seed, inputs, runner) for seed in seeds)
    return runs


def resolve_runner(target: str) -> RunFn:
    module_name, _, attr = target.partition(":")
    fn: RunFn = getattr(importlib.import_module(module_name), attr)
    if not callable(fn):
        raise TypeError(f"{target} is not callable")
    return fn


def execute(runner: str, scenario: str, seed: int, overrides: Sequence[str]) -> dict[str, float]:
    """Runs in the worker process: resolve the runner there (closures don't pickle)."""
    metrics = resolve_runner(runner)(scenario, seed, list(overrides))
    return {str(k): float(v) for k, v in metrics.items()}


def read_finished(path: Path) -> dict[str, dict[str, Any]]:
    """Finished runs from a results file; a torn or corrupt line (a crash mid-write) is skipped."""
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "run_id" in row and "metrics" in row:
                done[str(row["run_id"])] = row
    return done


def _drop_torn_tail(path: Path) -> None:
    """Cut a partial last line (a crash mid-write) so the next appended row starts on its own line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def run_sweep(
    runs: Sequence[RunSpec],
    out_dir: str | os.PathLike[str],
    *,
    executor: RunPool,
    on_done: Callable[[RunSpec, bool], None] | None = None,
) -> SweepResult:
    """Run what is not finished yet; append each result to ``runs.jsonl`` as it completes.

    Ctrl-C stops the pool at once and raises :class:`SweepInterrupted`; every run finished before it
    is already in the file, so the same call later resumes.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RUNS_FILE
    finished = read_finished(results_path)
    _drop_torn_tail(results_path)
    result = SweepResult()
    todo: list[RunSpec] = []
    planned = {spec.run_id for spec in runs}
    result.stale = sum(1 for run_id in finished if run_id not in planned)
    for spec in runs:
        if spec.run_id in finished:
            result.rows.append(finished[spec.run_id])
            result.reused += 1
            if on_done:
                on_done(spec, True)
        else:
            todo.append(spec)
    try:
        with results_path.open("a", encoding="utf-8") as sink:
            futures = {executor.submit(s): s for s in todo}
            for future in cf.as_completed(futures):
                spec = futures[future]
                try:
                    metrics = future.result()
                except Exception as err:  # a failed run is recorded, the sweep goes on
                    result.failed.append((spec.run_id, f"{type(err).__name__}: {err}"))
                    if on_done:
                        on_done(spec, False)
                    continue
                row = {"run_id": spec.run_id, "params": dict(spec.params), "seed": spec.seed, "metrics": metrics}
                sink.write(json.dumps(row, sort_keys=True) + "\n")
                sink.flush()
                os.fsync(sink.fileno())
                result.rows.append(row)
                result.computed += 1
                if on_done:
                    on_done(spec, True)
    except KeyboardInterrupt:
        executor.interrupt()
        raise SweepInterrupted(result, results_path, len(runs)) from None
    order = {s.run_id: i for i, s in enumerate(runs)}
    result.rows.sort(key=lambda r: order.get(str(r["run_id"]), len(order)))
    return result


def aggregate(rows: Iterable[Mapping[str, Any]], confidence: float = 0.95) -> list[dict[str, Any]]:
    """One row per parameter combination: ``metric``, ``metric_ci_low``, ``metric_ci_high``, ``n``."""
    groups: dict[tuple[tuple[str, str], ...], list[Mapping[str, float]]] = {}
    for row in rows:
        key = tuple(sorted((str(k), str(v)) for k, v in row["params"].items()))
        groups.setdefault(key, []).append(row["metrics"])
    table: list[dict[str, Any]] = []
    for key in groups:
        samples = groups[key]
        out: dict[str, Any] = dict(key)
        out["n_seeds"] = len(samples)
        names = sorted({m for s in samples for m in s})
        for name in names:
            est = estimate([s[name] for s in samples if name in s], confidence)
            out[name] = est.mean
            out[f"{name}_ci_low"] = est.low
            out[f"{name}_ci_high"] = est.high
        table.append(out)
    return table


def write_table(table: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str]) -> list[Path]:
    """``results.csv`` always; ``results.parquet`` too when pyarrow is installed."""
    out = Path(out_dir)
    columns: list[str] = []
    for row in table:
        columns.extend(c for c in row if c not in columns)
    lines = [",".join(columns)]
    for row in table:
        lines.append(",".join(_csv_cell(row.get(c)) for c in columns))
    written = [atomic_write_text(out / "results.csv", "\n".join(lines) + "\n")]
    try:
        import pyarrow as pa  # optional extra
        import pyarrow.parquet as pq
    except ImportError:
        return written
    arrays = {c: [row.get(c) for row in table] for c in columns}
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), sink)
    written.append(atomic_write_bytes(out / "results.parquet", sink.getvalue().to_pybytes()))
    return written


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    text = str(value)
    return f'"{text}"' if ("," in text or '"' in text) else text
