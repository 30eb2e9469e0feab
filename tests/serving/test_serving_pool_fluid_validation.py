"""Fluid mode against request level on the shipped ``scenarios/wva-multi-model.yaml`` (issue 14,
item 4): per model SLO attainment and p50/p95 TTFT and ITL. docs/serving.md, "Fluid mode in a pool
scenario", has the table these tolerances come from and says where and why the modes diverge."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from twin.scenario import GeneratorWorkload, load_scenario
from twin.sim.fluid_pool_check import METRICS, compare_pool, mode_overrides, table

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "wva-multi-model.yaml"
LATENCIES = ("ttft_p50", "ttft_p95", "itl_p50", "itl_p95")


def _burst_start() -> float:
    """When the scenario's training burst lands on the H100s (moderate load before it)."""
    for wl in load_scenario(SCENARIO).scenario.workloads:
        if isinstance(wl, GeneratorWorkload) and wl.arrival.process == "bursts":
            return float(wl.arrival.start)
    raise AssertionError("wva-multi-model.yaml has no training burst")


def test_mode_overrides_address_every_served_model() -> None:
    sets = mode_overrides(SCENARIO, "fluid")
    assert len(sets) == 3 and all(s.endswith(".mode=fluid") for s in sets)
    models = load_scenario(SCENARIO, sets).scenario.workloads[0].serving.models  # type: ignore[union-attr]
    assert {m.mode for m in models} == {"fluid"}


def test_fluid_is_within_5_percent_of_request_level_at_moderate_load() -> None:
    """Until the training burst every model runs at moderate load on steady replicas."""
    minutes = int(_burst_start() // 60) - 5
    rows = compare_pool(SCENARIO, [f"duration={minutes}m"])
    print(table(rows))
    assert len(rows) == 3
    for r in rows:
        assert r.request["slo_attainment"] > 0.95
        assert abs(r.error("slo_attainment")) <= 0.05, r.model
        for name in LATENCIES:
            assert abs(r.error(name)) <= 0.05, (r.model, name, r.request[name], r.fluid[name])
        assert r.fluid["avg_replicas"] == pytest.approx(r.request["avg_replicas"], abs=0.1)


def test_a_replica_at_a_constant_stretch_matches_request_level(tmp_path: Path) -> None:
    """A training job shares the replica's GPU for the whole run (stretch 2): the wiring of the
    stretch into the fluid tables gives request level's p50s (measured -0.9 % TTFT, +0.1 % ITL; the
    tails are the fluid core's known low bias with a KV-limited batch: TTFT p95 -10 %, ITL p95
    -5.4 %)."""
    doc = {
        "name": "stretched",
        "duration": "40m",
        "seed": 3,
        "pools": {"shared": {"hardware": "h100", "count": 1, "gpus_per_node": 1, "isolation": "soft"}},
        "workloads": [
            {
                "name": "llm",
                "serving": {
                    "models": [
                        {
                            "model": {"id": "meta-llama/Llama-2-7b-hf", "namespace": "a"},
                            "slo": {"ttft_ms": 1000, "itl_ms": 10},
                            "autoscaler": {"name": "static", "params": {"replicas": 1}},
                            "variants": [
                                {
                                    "name": "v",
                                    "accelerator": "H100",
                                    "model": "Llama-2-7b-hf",
                                    "replicas": {"initial": 1, "min": 1, "max": 1},
                                    "vgpu": {
                                        "request": {"compute_percent": 50, "vram_gib": 24},
                                        "limit": {"compute_percent": 100, "vram_gib": 24},
                                        "qos": "high",
                                    },
                                }
                            ],
                            "traffic": {
                                "rate": 1.8,
                                "input_tokens": {"mean": 768, "dist": "lognormal", "cv": 0.8},
                                "output_tokens": {"mean": 192, "dist": "lognormal", "cv": 0.8},
                            },
                        }
                    ]
                },
            },
            {
                "name": "training",
                "arrival": {"process": "bursts", "burst_every": "24h", "burst_size": 1, "start": "0s"},
                "work_tflop": {"kind": "fixed", "value": 1e9},
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
    path = tmp_path / "stretched.yaml"
    path.write_text(yaml.safe_dump(doc))
    (r,) = compare_pool(path)
    print(table([r]))
    assert r.request["itl_p50"] > 2.0 * 5.0  # stretched: about twice the unshared ITL (~5.3 ms)
    for name in ("ttft_p50", "itl_p50"):
        assert abs(r.error(name)) <= 0.05, name
    assert abs(r.error("itl_p95")) <= 0.10 and abs(r.error("ttft_p95")) <= 0.20


@pytest.mark.slow
def test_over_the_whole_scenario_the_burst_is_where_fluid_diverges() -> None:
    """The whole scenario: model B, on the A100s the training burst does not touch, stays close;
    models A and C diverge from the burst on (measured over 3 h: A attainment -6.5 %, TTFT p50
    +13 % and +11 %, TTFT p95 +86 % and +34 %; docs/serving.md says why). These bounds pin that
    divergence so that a change making it worse shows."""
    rows = {r.model.split("|")[1]: r for r in compare_pool(SCENARIO)}
    print(table(list(rows.values())))
    b = rows["llm-d-model-b"]
    assert abs(b.fluid["slo_attainment"] - b.request["slo_attainment"]) <= 0.01
    for name in LATENCIES:
        assert abs(b.error(name)) <= 0.05, name
    for ns in ("llm-d-model-a", "llm-d-model-c"):
        r = rows[ns]
        assert abs(r.fluid["slo_attainment"] - r.request["slo_attainment"]) <= 0.12, ns
        assert abs(r.error("itl_p50")) <= 0.06 and abs(r.error("itl_p95")) <= 0.25, ns
        assert abs(r.error("ttft_p50")) <= 0.25 and abs(r.error("ttft_p95")) <= 1.0, ns
        assert abs(r.error("avg_replicas")) <= 0.10, ns
    assert set(METRICS) >= set(LATENCIES)
