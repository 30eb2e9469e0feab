"""The step-time model against real vLLM runs: calibration on the Llama-3.1-8B runs, validation on the rest.

``error_table(runs_root)`` replays every run with the default efficiency constants and lays the
twin's relative errors beside LLMServingSim's (``llmservingsim-summary.txt`` in each run folder).
``calibrate(runs_root)`` is how those defaults were found: an exhaustive search over a grid of the efficiency
constants (each within its plausible range) minimising the errors on the calibration runs only.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from twin.errors import TwinInputError
from twin.experiments.vllm_steps import SecondRow, second_rows, step_error
from twin.policy.serving.step_model import PLAUSIBLE, Efficiency
from twin.sim.serving_replay import replay, setup_for_run
from twin.spec.vllm_run import load_vllm_run

CALIBRATION_RUNS = ("RTX4090/Llama-3.1-8B", "RTXPRO6000/Llama-3.1-8B")
VALIDATION_RUNS = ("RTXPRO6000/Qwen3-32B", "RTXPRO6000/Qwen3-30B-A3B-Instruct-2507")
# (row label, metric, statistic, label in llmservingsim-summary.txt)
ROWS = (
    ("TTFT mean", "ttft_ms", "mean", "TTFT Mean"),
    ("TTFT p50", "ttft_ms", "p50", "TTFT Median"),
    ("TPOT mean", "tpot_ms", "mean", "TPOT Mean"),
    ("TPOT p50", "tpot_ms", "p50", "TPOT Median"),
    ("E2E mean", "e2e_ms", "mean", "Latency Mean"),
    ("E2E p90", "e2e_ms", "p90", "Latency P90"),
)


def rel_error(real: float, simulated: float) -> float:
    return (simulated - real) / real if real else math.nan


def read_llmservingsim(path: Path) -> dict[str, float]:
    """``Diff%`` per metric label from LLMServingSim's summary (relative error, as a fraction)."""
    out: dict[str, float] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(\w+ \w+)\s+[-\d.]+\s+[-\d.]+\s+([-+]?\d+(?:\.\d+)?)%$", line.strip())
        if m:
            out[m.group(1)] = float(m.group(2)) / 100.0
    return out


@dataclass(frozen=True)
class RunErrors:
    run: str
    role: str  # calibration | validation
    errors: dict[str, float]  # row label -> relative error of the twin
    anchor: dict[str, float]  # row label -> LLMServingSim's relative error (absent: not reported)
    result: dict[str, Any]


def run_errors(runs_root: Path, name: str, eff: Efficiency | None = None) -> RunErrors:
    run = load_vllm_run(runs_root / name)
    res_setup = setup_for_run(run, eff=eff)
    res = replay(run, res_setup)
    real, sim = res["real"], res["simulated"]
    errors = {label: rel_error(real[m][s], sim[m][s]) for label, m, s, _ in ROWS}
    errors["output tok/s"] = rel_error(real["output_tokens_per_s"], sim["output_tokens_per_s"])
    for key in ("running_rel", "waiting_rel"):
        if key in res["trajectory"]:
            errors[f"{key.split('_')[0]} traj MAE/mean"] = res["trajectory"][key]
    steps = second_rows(run, res_setup.step_model(), res_setup.replicas)
    if steps:
        errors["step log-ratio MAE"] = step_error(steps)
    theirs = read_llmservingsim(runs_root / name / "llmservingsim-summary.txt")
    anchor = {label: theirs[src] for label, _, _, src in ROWS if src in theirs}
    role = "calibration" if name in CALIBRATION_RUNS else "validation"
    return RunErrors(name, role, errors, anchor, res)


def run_steps(runs_root: Path, name: str, eff: Efficiency | None = None) -> list[SecondRow]:
    """The run's open-loop step-time rows (``vllm_steps``) with these constants."""
    run = load_vllm_run(runs_root / name)
    setup = setup_for_run(run, eff=eff)
    return second_rows(run, setup.step_model(), setup.replicas)


def available_runs(runs_root: Path) -> list[str]:
    return [n for n in (*CALIBRATION_RUNS, *VALIDATION_RUNS) if (runs_root / n / "meta.json").is_file()]


def error_table(runs_root: Path, eff: Efficiency | None = None) -> list[RunErrors]:
    return [run_errors(runs_root, n, eff) for n in available_runs(runs_root)]


def format_table(rows: Sequence[RunErrors]) -> str:
    """One block per run: metric, the twin's error, LLMServingSim's error."""
    lines = [f"{'run':44s} {'role':11s} {'metric':22s} {'twin':>8s} {'LLMServingSim':>14s}"]
    for r in rows:
        for label, err in r.errors.items():
            theirs = r.anchor.get(label)
            anchor = f"{theirs * 100:+.1f}%" if theirs is not None else "-"
            mark = "" if "MAE" in label else "+"
            value = f"{err * 100:{mark}.1f}%" if math.isfinite(err) else "n/a"
            lines.append(f"{r.run:44s} {r.role:11s} {label:22s} {value:>8s} {anchor:>14s}")
    return "\n".join(lines)


def calibration_loss(rows: Iterable[RunErrors]) -> float:
    """What calibration minimises: TPOT p50, output throughput, E2E mean, TTFT mean (half weight) and the
    running trajectory, in absolute relative error, plus the open-loop step-time error (``vllm_steps``: mean
    absolute log ratio of the model's step to the real one, second by second), summed over runs. The step
    term separates what the aggregate metrics cannot: errors of opposite sign in different phases (decode
    steps too short, prefill steps too long) cancel in a TPOT but not there."""
    total = 0.0
    for r in rows:
        e = r.errors
        total += abs(e["TPOT p50"]) + abs(e["output tok/s"]) + abs(e["E2E mean"]) + 0.5 * abs(e["TTFT mean"])
        total += 0.5 * e.get("running traj MAE/mean", 0.0) + e.get("step log-ratio MAE", 0.0)
    return total


GRID: dict[str, tuple[float, ...]] = {
    "compute": (0.5, 0.6, 0.7, 0.8),
    "attention": (0.4, 0.7),
    "memory": (0.7, 0.8, 0.9),
    "kv_memory": (0.6, 0.75, 0.9),
    "step_overhead_ms": (0.0, 1.0, 2.0),
    "seq_layer_overhead_us": (0.0, 0.4, 0.8, 1.2, 1.6),
    "roofline_p": (1.0, 1.5, 2.0, 3.0, 4.0, 8.0),
}


def calibrate(runs_root: Path, grid: dict[str, tuple[float, ...]] | None = None) -> tuple[Efficiency, float]:
    """Exhaustive search over the grid of efficiency constants on the calibration runs only; (best, its
    loss). Every grid value must lie in the constant's plausible range (PLAUSIBLE), so the fit cannot
    absorb a missing term by leaving it."""
    grid = grid or GRID
    for name, values in grid.items():
        lo, hi = PLAUSIBLE.get(name, (-math.inf, math.inf))
        if not values or any(not lo <= v <= hi for v in values):
            raise TwinInputError(
                f"grid values must lie in [{lo}, {hi}]", obj="calibration grid", field=name, value=values
            )
    names = sorted(grid)
    best: tuple[float, Efficiency] | None = None
    for values in itertools.product(*(grid[n] for n in names)):
        eff = replace(Efficiency(), **dict(zip(names, values, strict=True)))
        loss = calibration_loss(run_errors(runs_root, n, eff) for n in CALIBRATION_RUNS)
        if best is None or loss < best[0] - 1e-12:  # ties keep the first in grid order
            best = (loss, eff)
    assert best is not None
    return best[1], best[0]
