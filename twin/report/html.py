"""report.html: one self-contained page (plots embedded as base64) summarising a run."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from typing import Any

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1000px;
       color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f6f6f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; margin: 0.5em 0; } .muted { color: #777; }
"""

PLOT_TITLES = {
    "allocation.png": "Allocation and utilisation",
    "serving.png": "Serving: TTFT p95 per minute and step stretch (left), replicas (right), per model",
    "pending_queue.png": "Pending queue",
    "pending_times.png": "Pending times",
    "fragmentation.png": "Fragmentation",
    "cost.png": "Cost",
}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:,.4g}</td>' if abs(value) < 1e4 else f'<td class="num">{value:,.0f}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    if isinstance(value, dict | list):
        return f"<td><code>{html.escape(json.dumps(value, sort_keys=True))}</code></td>"
    return f"<td>{html.escape(str(value))}</td>"


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th>{_cell(v)}</tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _grid(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(summary: Mapping[str, Any], plots: Mapping[str, bytes]) -> str:
    s = summary
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>twin run: {html.escape(str(s['scenario']))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(str(s['scenario']))}</h1>",
        f"<p class='muted'>seed {s['seed']}, {s['duration_s'] / 3600:.4g} simulated hours, "
        f"{s['cluster']['gpus']} GPUs</p>",
        "<h2>Headline</h2>",
        _table(
            [
                ("workers arrived", s["workers"]["arrived"]),
                ("completed", s["workers"]["completed"]),
                ("pending at end", s["workers"]["pending_at_end"]),
                ("preemptions", s["preemptions"]["total"]),
                ("OOM events", s["oom_events"]["total"]),
                ("fault evictions", s["fault_evictions"]),
                ("GPUs busy (time average)", s["allocation"]["gpus_busy_mean"]),
                ("TFLOPs requested / capacity (time average)", s["allocation"]["tflops_request_ratio_time_avg"]),
                ("utilisation (time average)", s["utilisation_mean"]),
                ("TensorFusion billing (USD)", s["cost_usd"]["tensorfusion_billing"]),
                ("node cost (USD)", s["cost_usd"]["nodes"]),
                ("busy-GPU cost (USD)", s["cost_usd"]["busy_gpus"]),
            ]
        ),
        "<h2>Pending time per QoS (seconds)</h2>",
        _grid(
            ["QoS", "bindings", "p50", "p90", "p99", "max", "still pending"],
            [
                [
                    q,
                    v.get("count", 0),
                    v.get("p50", "-"),
                    v.get("p90", "-"),
                    v.get("p99", "-"),
                    v.get("max", "-"),
                    s["pending_at_end_by_qos"][q],
                ]
                for q, v in s["pending_time_s"].items()
            ],
        ),
        "<h2>Slowdown versus running alone</h2>",
        _grid(
            ["QoS", "workers", "mean", "p50", "p90", "p99"],
            [
                [q, v.get("count", 0), v.get("mean", "-"), v.get("p50", "-"), v.get("p90", "-"), v.get("p99", "-")]
                for q, v in s["slowdown"].items()
            ],
        ),
    ]
    if s.get("phases"):
        parts.append("<h2>Rollout steps (GPUs and cost saved against the first step)</h2>")
        parts.append(
            _grid(
                [
                    "step",
                    "from (h)",
                    "GPUs busy",
                    "GPUs saved",
                    "busy-GPU $/h",
                    "$/h saved",
                    "native pods",
                    "mean slowdown",
                ],
                [
                    [
                        p["label"],
                        p["start_s"] / 3600,
                        p["gpus_busy_mean"],
                        p["gpus_saved"],
                        p["busy_gpu_cost_per_hour"],
                        p["cost_saved_per_hour"],
                        p["native_running_mean"],
                        p["mean_slowdown"],
                    ]
                    for p in s["phases"]
                ],
            )
        )
    if s.get("serving"):
        parts.append("<h2>Serving (per model; latencies in ms)</h2>")
        parts.append(
            _grid(
                [
                    "model",
                    "requests",
                    "TTFT p50",
                    "TTFT p95",
                    "TTFT p99",
                    "ITL p50",
                    "ITL p95",
                    "ITL p99",
                    "SLO attainment",
                    "avg replicas",
                    "max pending",
                    "evictions",
                    "mean step stretch",
                ],
                [
                    [
                        key,
                        m["requests"],
                        m["ttft_ms"]["p50"],
                        m["ttft_ms"]["p95"],
                        m["ttft_ms"]["p99"],
                        m["itl_ms"]["p50"],
                        m["itl_ms"]["p95"],
                        m["itl_ms"]["p99"],
                        m["slo_attainment"],
                        m["avg_replicas"],
                        max((v["max_pending"] for v in m["variants"].values()), default=0),
                        sum(m["replica_evictions"].values()),
                        ", ".join(f"{name} {v['mean_step_stretch']}" for name, v in m["variants"].items()),
                    ]
                    for key, m in s["serving"].items()
                ],
            )
        )
        for key, m in s["serving"].items():  # a model its WVA installation leaves unscaled, and why
            scaling = m.get("autoscaling") or {}
            if scaling.get("active") is False:
                parts.append(
                    f"<p><b>{html.escape(key)} is not autoscaled</b>: {html.escape(str(scaling.get('reason', '')))}</p>"
                )
    parts.append("<h2>Workloads (TensorFusionWorkload status at the end)</h2>")
    parts.append(
        _grid(
            ["workload", "phase", "workerCount", "readyWorkers", "native pods", "arrived", "completed"],
            [
                [n, v["phase"], v["workerCount"], v["readyWorkers"], v["nativePods"], v["arrived"], v["completed"]]
                for n, v in s["workloads"].items()
            ],
        )
    )
    for name, data in plots.items():
        title = PLOT_TITLES.get(name, name)
        encoded = base64.b64encode(data).decode("ascii")
        parts.append(
            f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{encoded}'>"
        )
    parts.append("<h2>Event counts</h2>")
    parts.append(_table(list(s["events"].items())))
    parts.append("<p class='muted'>Files: summary.json, timeseries.csv, events.jsonl and the PNGs.</p></body></html>")
    return "\n".join(parts) + "\n"
