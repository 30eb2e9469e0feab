"""The end-of-run summary as a rich table (printed by ``twin run``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "-" if v is None else str(v)


def summary_table(summary: Mapping[str, Any]) -> Table:
    s = summary
    table = Table(title=f"{s['scenario']} (seed {s['seed']})", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows: list[tuple[str, Any]] = [
        ("GPUs", s["cluster"]["gpus"]),
        ("workers arrived", s["workers"]["arrived"]),
        ("completed", s["workers"]["completed"]),
        ("running / pending at end", f"{s['workers']['running_at_end']} / {s['workers']['pending_at_end']}"),
        ("rejected", s["workers"]["rejected"]),
        ("preemptions", s["preemptions"]["total"]),
        ("OOM events", s["oom_events"]["total"]),
        ("fault evictions", s["fault_evictions"]),
        ("GPUs busy (time avg)", s["allocation"]["gpus_busy_mean"]),
        ("TFLOPs requested / capacity", s["allocation"]["tflops_request_ratio_time_avg"]),
        ("utilisation", s["utilisation_mean"]),
    ]
    for q, v in s["pending_time_s"].items():
        if v.get("count"):
            rows.append((f"pending {q} p50 / p99 (s)", f"{_num(v['p50'])} / {_num(v['p99'])}"))
    slow = s["slowdown"]["all"]
    if slow.get("count"):
        rows.append(("slowdown vs alone, mean / p99", f"{_num(slow['mean'])} / {_num(slow['p99'])}"))
    frag = s["fragmentation"]
    rows.append(("fragmentation (mean)", frag.get("mean") if frag.get("available") else "n/a"))
    rows.append(("TensorFusion billing (USD)", s["cost_usd"]["tensorfusion_billing"]))
    rows.append(("node cost (USD)", s["cost_usd"]["nodes"]))
    rows.append(("busy-GPU cost (USD)", s["cost_usd"]["busy_gpus"]))
    for name, value in rows:
        table.add_row(name, _num(value))
    return table


def phases_table(summary: Mapping[str, Any]) -> Table | None:
    phases = summary.get("phases") or []
    if not phases:
        return None
    table = Table(title="rollout steps (saved: against the first step)", header_style="bold")
    for col in ("step", "from (h)", "GPUs busy", "GPUs saved", "$/h saved", "native pods", "slowdown"):
        table.add_column(col, justify="left" if col == "step" else "right", no_wrap=col == "step")
    for p in phases:
        table.add_row(
            p["label"],
            _num(p["start_s"] / 3600),
            _num(p["gpus_busy_mean"]),
            _num(p["gpus_saved"]),
            _num(p["cost_saved_per_hour"]),
            _num(p["native_running_mean"]),
            _num(p["mean_slowdown"]),
        )
    return table


def serving_table(report: Mapping[str, Any]) -> Table:
    """Autoscalers side by side on the same traffic: SLO attainment, latency, replicas, cost."""
    first = next(iter(report["autoscalers"].values()), None)
    slo = first["slo"] if first else {}
    table = Table(
        title=f"{report['scenario']}: {report['requests']} requests, {report['mean_rate_rps']:.1f} req/s; "
        f"SLO TTFT <= {slo.get('ttft_ms', '?')} ms, ITL <= {slo.get('itl_ms', '?')} ms"
    )
    table.add_column("autoscaler", no_wrap=True)
    for col in ("SLO attain.", "TTFT p50 ms", "TTFT p99 ms", "ITL p99 ms", "replicas", "cost", "errors"):
        table.add_column(col, justify="right")
    for label, s in report["autoscalers"].items():
        table.add_row(
            label,
            _num(s["slo_attainment"]),
            _num(s["ttft_ms"].get("p50")),
            _num(s["ttft_ms"].get("p99")),
            _num(s["itl_ms"].get("p99")),
            _num(s["avg_replicas"]),
            _num(s["cost"]),
            str(s["errors"]),
        )
    return table
