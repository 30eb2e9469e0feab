"""Fluid mode of a served model in a pool scenario (issue 14, item 4): the replicas stay pods of the
pool, the autoscaler and HPA run on the clock, the numbers come from the fluid core per window."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.report.outputs import write_run_outputs
from twin.scenario import load_scenario
from twin.sim.engine import Simulation
from twin.sim.serving_fluid import STRETCH_GRID, FluidServingSim, grid_speed, pattern_arrivals
from twin.sim.serving_fluid_result import FluidServingResult, mixture_quantiles
from twin.sim.serving_traffic import Burst, RatePattern

MODEL: dict[str, Any] = {
    "model": {"id": "meta-llama/Llama-2-7b-hf", "namespace": "llm-d-model-a"},
    "slo": {"ttft_ms": 1000, "itl_ms": 10},
    "autoscaler": {"name": "saturation-v1"},
    "mode": "fluid",
    "variants": [
        {
            "name": "llama-h100",
            "accelerator": "H100",
            "model": "Llama-2-7b-hf",
            "startup": "67s",  # off the 15 s scrape grid: readiness closes a window between scrapes
            "replicas": {"initial": 1, "min": 1, "max": 4},
            "vgpu": {
                "request": {"compute_percent": 50, "vram_gib": 40},
                "limit": {"compute_percent": 100, "vram_gib": 40},
                "qos": "high",
            },
        }
    ],
    "traffic": {"rate": 12, "input_tokens": {"mean": 512}, "output_tokens": {"mean": 128}},
}
# One GPU: a training burst at 20 min shares it with the replica (soft isolation), so its steps stretch.
SCENARIO: dict[str, Any] = {
    "name": "fluid-pool",
    "duration": "1h",
    "seed": 3,
    "pools": {"shared": {"hardware": "h100", "count": 1, "gpus_per_node": 1, "isolation": "soft"}},
    "workloads": [
        {"name": "llm", "serving": {"models": [MODEL]}},
        {
            "name": "training",
            "arrival": {"process": "bursts", "burst_every": "2h", "burst_size": 2, "start": "20m"},
            "work_tflop": {"kind": "fixed", "value": 500000},
            "qos": {"low": 1.0},
            "shapes": [
                {
                    "request": {"compute_percent": 50, "vram_gib": 30},
                    "limit": {"compute_percent": 100, "vram_gib": 30},
                }
            ],
        },
    ],
}
KEY = "meta-llama/Llama-2-7b-hf|llm-d-model-a"


def _run(tmp_path: Path, doc: dict[str, Any], name: str = "s.yaml") -> Simulation:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    sim = Simulation(load_scenario(path))
    sim.run()
    return sim


@pytest.fixture(scope="module")
def burst_run(tmp_path_factory: pytest.TempPathFactory) -> Simulation:
    return _run(tmp_path_factory.mktemp("fluid"), SCENARIO)


def test_mode_defaults_to_request_and_names_a_bad_value(tmp_path: Path) -> None:
    doc = copy.deepcopy(SCENARIO)
    del doc["workloads"][0]["serving"]["models"][0]["mode"]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert load_scenario(path).scenario.workloads[0].serving.models[0].mode == "request"  # type: ignore[union-attr]
    with pytest.raises(TwinInputError, match="mode"):
        load_scenario(path, ["workloads.llm.serving.models.0.mode=analytic"])


def test_fluid_replicas_are_pods_stretched_by_a_burst_and_the_autoscaler_reacts(burst_run: Simulation) -> None:
    serving = burst_run.reports["serving"][KEY]
    assert isinstance(serving, FluidServingResult)
    m = burst_run.metrics.summary["serving"][KEY]
    assert m["mode"] == "fluid"
    v = m["variants"]["llama-h100"]
    # The training burst shares the one GPU: the replica's steps stretch to 2x (its 50 % request).
    assert v["max_step_stretch"] == pytest.approx(2.0)
    # Stretched, it saturates: saturation-v1 reads the fluid KV/queue and asks for a second replica
    # (a high-QoS pod: it binds, preempting training if it must, and is ready after its start-up).
    assert max(desired for _t, _v, _b, _r, desired in serving.timeline) == 2
    assert v["max_ready"] == 2
    assert 1.0 < m["avg_replicas"] < 2.0
    # Every arrival of the 1 h pattern (12 req/s) is accounted: completed + timeouts + still queued.
    assert m["requests"] == 43200
    assert m["completed"] + m["timeouts"] + m["incomplete"] == pytest.approx(43200, abs=2)
    for metric in ("ttft_ms", "itl_ms"):
        q = m[metric]
        assert 0 < q["p50"] <= q["p95"] <= q["p99"]
    assert 0.0 < m["slo_attainment"] <= m["ttft_attainment"] <= 1.0


def test_stretched_windows_are_slower_than_unstretched_ones(burst_run: Simulation) -> None:
    rows = burst_run.reports["serving"][KEY].rows
    alone = (rows["stretch"] == 1.0) & (rows["completed"] > 0)
    shared = (rows["stretch"] == 2.0) & (rows["completed"] > 0)
    assert alone.any() and shared.any()
    assert np.median(rows["itl_p50"][shared]) > 1.5 * np.median(rows["itl_p50"][alone])


def test_windows_end_at_scrapes_and_at_replica_changes(burst_run: Simulation) -> None:
    rows = burst_run.reports["serving"][KEY].rows
    t0, t1 = rows["t0"], rows["t1"]
    assert t0[0] == 0.0 and t1.max() == 3600.0
    # Contiguous per group of the same window: each window starts where an earlier one ended.
    starts = set(np.round(t0, 9).tolist())
    assert starts <= set(np.round(t1, 9).tolist()) | {0.0}
    # At most a scrape interval long; the changes (ready, stretch) cut some shorter.
    assert (t1 - t0).max() <= 15.0 + 1e-9
    off_grid = [t for t in t1 if abs(t / 15.0 - round(t / 15.0)) > 1e-9]
    assert off_grid, "a replica change should close a window between scrapes"


def test_outputs_csv_plot_and_report(burst_run: Simulation, tmp_path: Path) -> None:
    written = {p.name for p in write_run_outputs(burst_run, tmp_path)}
    assert {"serving-timeseries.csv", "serving.png", "report.html", "summary.json"} <= written
    with (tmp_path / "serving-timeseries.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    # Replicas desired, ready and pending over time, as at request level.
    assert {r["desired"] for r in rows} >= {"1", "2"} and {r["ready"] for r in rows} == {"1", "2"}
    assert {r["step_stretch"] for r in rows} >= {"1", "2"}
    assert json.loads((tmp_path / "summary.json").read_text())["serving"][KEY]["mode"] == "fluid"
    assert "Serving (per model" in (tmp_path / "report.html").read_text()


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    doc = copy.deepcopy(SCENARIO)
    doc["duration"] = "30m"
    a = _run(tmp_path, doc, "a.yaml").metrics.summary["serving"]
    b = _run(tmp_path, doc, "b.yaml").metrics.summary["serving"]
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("name", ["model-based", "saturation-v2", "hpa-kv", "hpa-queue", "static"])
def test_every_autoscaler_runs_unchanged_on_the_fluid_observation(tmp_path: Path, name: str) -> None:
    """The autoscalers read ServingSim.observe() as at request level; the burst's stretch must not
    leave a model-based, saturation or HPA autoscaler without the signals it needs."""
    doc = copy.deepcopy(SCENARIO)
    doc["duration"] = "40m"
    doc["workloads"][0]["serving"]["models"][0]["autoscaler"] = {"name": name}
    sim = _run(tmp_path, doc)
    m = sim.metrics.summary["serving"][KEY]
    assert m["autoscaler"] == name and m["completed"] > 0.99 * m["requests"]
    desired = {d for _t, _v, _b, _r, d in sim.reports["serving"][KEY].timeline}
    assert desired - {-1.0}, "the autoscaler published a desired count"


def test_a_gpu_failure_evicts_the_replica_and_requests_wait_then_time_out(tmp_path: Path) -> None:
    doc = copy.deepcopy(SCENARIO)
    doc["duration"] = "30m"
    doc["workloads"] = doc["workloads"][:1]
    doc["faults"] = [{"kind": "gpu-failure", "node": "shared-0", "gpu": 0, "at": "10m", "recover_after": "5m"}]
    sim = _run(tmp_path, doc)
    m = sim.metrics.summary["serving"][KEY]
    assert m["replica_evictions"] == {"gpu-failure": 1}
    assert m["variants"]["llama-h100"]["max_pending"] >= 1
    rows = sim.reports["serving"][KEY].rows
    idle = np.array([v == "" for v in rows.variant])
    # Without a ready replica nothing completes; requests older than request_timeout (60 s) time out.
    assert idle.any() and rows["completed"][idle].sum() == 0
    assert m["timeouts"] > 12 * 5 * 60 * 0.5
    assert m["completed"] + m["timeouts"] + m["incomplete"] == pytest.approx(m["requests"], abs=2)


def test_replayed_trace_counts_its_arrivals(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    times = np.sort(rng.uniform(0, 1800, 9000))
    lines = ["time,input_tokens,output_tokens"] + [
        f"{t:.3f},{rng.integers(200, 800)},{rng.integers(50, 200)}" for t in times
    ]
    (tmp_path / "trace.csv").write_text("\n".join(lines) + "\n")
    doc = copy.deepcopy(SCENARIO)
    doc["duration"] = "30m"
    doc["workloads"] = doc["workloads"][:1]
    doc["workloads"][0]["serving"]["models"][0]["traffic"] = {"csv": "trace.csv"}
    sim = _run(tmp_path, doc)
    m = sim.metrics.summary["serving"][KEY]
    assert m["requests"] == 9000
    assert m["completed"] == pytest.approx(9000, abs=2)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("workloads.llm.serving.models.0.scale_to_zero=true", "scale_to_zero"),
        ("workloads.llm.serving.models.0.traffic.prefix={groups: 4, tokens: 128}", "traffic.prefix"),
    ],
)
def test_what_fluid_cannot_model_is_an_input_error(tmp_path: Path, override: str, field: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    with pytest.raises(TwinInputError) as err:
        Simulation(load_scenario(path, [override]))
    assert f"models.0.{field}" in str(err.value) and "s.yaml" in str(err.value)


# ---------------------------------------------------------------- pure parts


def test_pattern_arrivals_is_the_rate_integral() -> None:
    p = RatePattern(10.0, 0.3, 4 * 3600.0, 1800.0, (Burst(100.0, 50.0, 4.0),))
    for t0, t1 in ((0.0, 15.0), (90.0, 160.0), (3000.0, 9000.0)):
        grid = np.linspace(t0, t1, 200_001)
        numeric = float(np.trapezoid(p.rate(grid), grid))
        assert pattern_arrivals(p, t0, t1) == pytest.approx(numeric, rel=1e-4)
    assert pattern_arrivals(p, 5.0, 5.0) == 0.0


def test_grid_speed_rounds_a_stretch_on_the_log_grid() -> None:
    assert grid_speed(1.0) == 1.0 and grid_speed(0.5) == 1.0 and grid_speed(math.inf) == 1.0
    assert grid_speed(2.0) == pytest.approx(0.5)
    assert grid_speed(1.9) == pytest.approx(0.5)
    assert grid_speed(100.0) == pytest.approx(0.01)
    assert all(grid_speed(s) == pytest.approx(1.0 / s) for s in STRETCH_GRID)


_quantiles = st.tuples(st.floats(0.0, 1e4), st.floats(0.0, 1e4), st.floats(0.0, 1e4)).map(lambda t: sorted(t))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.floats(0.01, 1e4), _quantiles), min_size=1, max_size=12))
def test_mixture_quantiles_lie_between_the_rows_and_grow_with_p(rows: list[tuple[float, list[float]]]) -> None:
    w = np.array([r[0] for r in rows])
    q = np.array([r[1] for r in rows])
    out = mixture_quantiles(w, q, (0.5, 0.95, 0.99))
    assert all(v is not None for v in out)
    p50, p95, p99 = (float(v) for v in out)  # type: ignore[arg-type]
    tol = 1e-6 * max(1.0, float(q.max()))
    assert p50 <= p95 + tol and p95 <= p99 + tol
    for j, v in enumerate((p50, p95, p99)):
        assert q[:, j].min() - tol <= v <= q[:, j].max() + tol


@settings(max_examples=40, deadline=None)
@given(q=_quantiles, n=st.integers(1, 6), w=st.floats(0.1, 100.0))
@example(q=[0.0, 0.0, 1.0], n=3, w=1.0)
@example(q=[0.0, 1e-05, 3137.0], n=3, w=1.0)  # a narrow segment beside a wide one (no cancellation)
def test_a_mixture_of_equal_rows_is_that_row(q: list[float], n: int, w: float) -> None:
    out = mixture_quantiles(np.full(n, w), np.array([q] * n), (0.5, 0.95, 0.99))
    for v, expected in zip(out, q, strict=True):
        assert v == pytest.approx(expected, abs=1e-6 * max(1.0, max(q)))


def test_a_mixture_is_the_weighted_sum_of_the_rows_cdfs() -> None:
    w = np.array([3.0, 1.0])
    q = np.array([[10.0, 20.0, 30.0], [40.0, 80.0, 100.0]])
    grid = np.linspace(0.0, 200.0, 400_001)
    levels = [0.0, 0.5, 0.95, 0.99, 1.0]
    cdf = sum(wi * np.interp(grid, [0.0, *qi, qi[2] + qi[2] - qi[1]], levels) for wi, qi in zip(w, q, strict=True))
    cdf = cdf / w.sum()
    for p, v in zip((0.5, 0.9, 0.99), mixture_quantiles(w, q, (0.5, 0.9, 0.99)), strict=True):
        assert v == pytest.approx(float(grid[np.searchsorted(cdf, p)]), abs=1e-3)


def test_a_mixture_without_weight_has_no_quantiles() -> None:
    assert mixture_quantiles(np.zeros(2), np.ones((2, 3)), (0.5,)) == [None]


def test_a_fluid_model_counts_windows_not_requests_in_the_event_budget(tmp_path: Path) -> None:
    from twin.scenario_limits import estimated_events

    doc = copy.deepcopy(SCENARIO)
    doc["duration"] = "7d"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    fluid = estimated_events(load_scenario(path).scenario)
    request = estimated_events(load_scenario(path, ["workloads.llm.serving.models.0.mode=request"]).scenario)
    # 12 req/s over a week at request level; one window per 15 s scrape in fluid mode.
    assert request - fluid == pytest.approx(12 * 7 * 86400 - 7 * 86400 / 15)


def test_fluid_sim_is_a_serving_sim_sharing_its_replica_lifecycle() -> None:
    from twin.sim.serving import ServingSim

    assert issubclass(FluidServingSim, ServingSim)
    # The lifecycle, the HPA and autoscaler loops and the timeline are ServingSim's, not copies.
    for name in ("set_replicas", "replica_bound", "_hpa_loop", "_autoscaler_loop", "_timeline_loop", "observe"):
        assert getattr(FluidServingSim, name) is getattr(ServingSim, name)
