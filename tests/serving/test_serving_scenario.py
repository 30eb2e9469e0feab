"""Serving scenarios: validation errors, one traffic for every autoscaler, report and plots on disk."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from twin.errors import TwinInputError
from twin.sim.serving_scenario import load_serving_scenario, run_serving_scenario

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "scenarios" / "llm-serving.yaml"

SMALL = {
    "name": "small",
    "duration": "5m",
    "model": {"id": "m", "namespace": "ns"},
    "slo": {"ttft_ms": 1000, "itl_ms": 40},
    "variants": [
        {
            "name": "v",
            "perf": {"alpha": 8.0, "beta": 0.03, "gamma": 0.0003},
            "engine": {"max_num_seqs": 16},
            "replicas": {"initial": 1, "min": 1, "max": 4},
            "startup": "30s",
        }
    ],
    "traffic": {"rate": 4, "input_tokens": {"mean": 300}, "output_tokens": {"mean": 100, "dist": "exponential"}},
    "autoscalers": [{"name": "saturation-v2"}, {"name": "static", "params": {"replicas": 2}}],
}


def write(tmp_path: Path, doc: Mapping[str, object]) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_small_scenario_runs_and_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = run_serving_scenario(write(tmp_path, SMALL), out, seed=3)
    assert set(report["autoscalers"]) == {"saturation-v2", "static"}
    on_disk = json.loads((out / "serving-report.json").read_text())
    assert on_disk["requests"] == report["requests"] > 900
    for summary in on_disk["autoscalers"].values():
        assert {"ttft_ms", "itl_ms", "slo_attainment", "errors", "avg_replicas", "cost", "replicas_over_time"} <= set(
            summary
        )
        assert set(summary["ttft_ms"]) == {"p50", "p90", "p99", "mean"}
        assert summary["requests"] == report["requests"]  # the same traffic for every autoscaler
    static = report["autoscalers"]["static"]
    # static first ticks at 60 s and the HPA sync at 60 s (after it, same instant) adds the second pod
    assert static["max_replicas"] == 2
    assert static["avg_replicas"] == pytest.approx((60 * 1 + 240 * 2) / 300, abs=1e-9)
    assert (out / "replicas.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "ttft.png").stat().st_size > 0
    again = run_serving_scenario(write(tmp_path, SMALL), tmp_path / "again", seed=3)
    assert again == report  # deterministic for a seed


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"autoscalers": [{"name": "magic"}]}, "autoscalers.0.name"),
        ({"duration": "soon"}, "duration"),
        ({"slo": {"ttft_ms": -1, "itl_ms": 40}}, "slo.ttft_ms"),
        (
            {"hpa": {"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]}}}},
            "hpa.behavior",
        ),
    ],
)
def test_errors_name_the_field(tmp_path: Path, patch: dict[str, object], field: str) -> None:
    with pytest.raises(TwinInputError) as info:
        load_serving_scenario(write(tmp_path, {**SMALL, **patch}))
    assert field in str(info.value) and "s.yaml" in str(info.value)


CLUSTER = {"pool": "p", "strategy": "CompactFirst", "nodes": [{"gpu_model": "H100", "count": 1, "gpus_per_node": 1}]}


def test_cluster_limits_replicas_to_what_the_pool_holds(tmp_path: Path) -> None:
    doc = {
        **SMALL,
        "traffic": {**SMALL["traffic"], "rate": 12},  # type: ignore[dict-item]
        "cluster": CLUSTER,
        "variants": [{**SMALL["variants"][0], "vgpu": {"tflops": 400, "vram": "30Gi"}}],  # type: ignore[index]
        "autoscalers": [{"name": "saturation-v2"}],
    }
    report = run_serving_scenario(write(tmp_path, doc), tmp_path / "out", seed=1)
    assert report["autoscalers"]["saturation-v2"]["max_replicas"] == 2  # 2 x 400 TFLOPs fit one H100 (989)


@pytest.mark.parametrize(
    ("cluster", "vgpu", "field"),
    [
        (
            {**CLUSTER, "nodes": [{"gpu_model": "Z9", "count": 1, "gpus_per_node": 1}]},
            {"tflops": 1, "vram": 1},
            "cluster.nodes.0.gpu_model",
        ),
        (CLUSTER, None, "variants.0.vgpu"),
        (CLUSTER, {"tflops": "lots", "vram": 1}, "variants.0.vgpu.tflops"),
        ({**CLUSTER, "strategy": "Nope"}, {"tflops": 1, "vram": 1}, "strategy"),
    ],
)
def test_cluster_errors(tmp_path: Path, cluster: dict[str, object], vgpu: object, field: str) -> None:
    variant = {**SMALL["variants"][0]}  # type: ignore[index]
    if vgpu is not None:
        variant["vgpu"] = vgpu
    with pytest.raises(TwinInputError) as info:
        load_serving_scenario(write(tmp_path, {**SMALL, "cluster": cluster, "variants": [variant]}))
    assert field in str(info.value)


def test_shipped_scenario_is_valid() -> None:
    s = load_serving_scenario(SHIPPED)
    assert [a.name for a in s.autoscalers] == [
        "model-based", "saturation-v1", "saturation-v2", "hpa-kv", "hpa-queue", "static",
    ]  # fmt: skip


@pytest.mark.slow
def test_shipped_scenario_runs(tmp_path: Path) -> None:
    report = run_serving_scenario(SHIPPED, tmp_path, seed=0)
    assert len(report["autoscalers"]) == 6
    static = report["autoscalers"]["static"]
    assert static["slo_attainment"] > 0.9  # generously provisioned baseline
