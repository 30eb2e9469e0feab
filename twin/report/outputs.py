"""Write a run's files: summary.json, timeseries.csv, events.jsonl, PNG plots and report.html.

Everything is rendered in memory first and written atomically (twin.atomic); keys are sorted and
floats formatted with a fixed rule, so the same scenario and seed give byte-identical files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twin.atomic import atomic_write_bytes, atomic_write_text
from twin.sim.metrics import COLUMNS, QOS_ORDER

if TYPE_CHECKING:
    from twin.sim.engine import Simulation


def _fmt(value: float) -> str:
    """CSV cell: integers as integers, floats with at most 6 decimals, NaN as empty."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return ""
    v = round(value, 6)
    if v == 0:
        return "0"
    return f"{v:.6f}".rstrip("0").rstrip(".")


def timeseries_csv(rows: list[tuple[float, ...]]) -> str:
    lines = [",".join(COLUMNS)]
    lines.extend(",".join(_fmt(v) for v in row) for row in rows)
    return "\n".join(lines) + "\n"


def summary_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, sort_keys=True, indent=2, allow_nan=False) + "\n"


def series_of(rows: list[tuple[float, ...]]) -> dict[str, list[float]]:
    return {name: [float(r[i]) for r in rows] for i, name in enumerate(COLUMNS)}


def write_run_outputs(sim: Simulation, out_dir: str | Path, *, plots: bool = True) -> list[Path]:
    """Write every output file of a finished run into ``out_dir``; return their paths in order."""
    out = Path(out_dir)
    summary = sim.metrics.summary
    written = [
        atomic_write_text(out / "summary.json", summary_json(summary)),
        atomic_write_text(out / "timeseries.csv", timeseries_csv(sim.metrics.rows)),
        atomic_write_text(out / "events.jsonl", sim.events.to_jsonl()),
    ]
    serving = sim.reports.get("serving")
    if serving:
        from twin.sim.serving_pool_report import timeseries_csv as serving_csv

        written.append(atomic_write_text(out / "serving-timeseries.csv", serving_csv(serving)))
    if plots:
        from twin.report.html import render_report
        from twin.report.plots import all_plots

        waits = {q.value: sim.metrics.pending_waits[q] for q in QOS_ORDER}
        images = all_plots(series_of(sim.metrics.rows), waits, sim.scenario.duration)
        if serving:
            from twin.report.serving_plots import plot_png

            images["serving.png"] = plot_png(serving)
        for name, data in images.items():
            written.append(atomic_write_bytes(out / name, data))
        written.append(atomic_write_text(out / "report.html", render_report(summary, images)))
    return written
