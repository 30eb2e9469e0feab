"""``twin serving analyze`` / ``size``: flags map to the model, JSON keys, errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from twin.cli import main

QA2 = [
    "--max-batch", "48", "--max-queue", "128", "--alpha", "12", "--beta", "0.05", "--gamma", "0.0005",
    "--input-tokens", "128", "--output-tokens", "512",
]  # fmt: skip


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["serving", *args])
    return result.exit_code, result.output


def test_analyze_json_reproduces_qa2() -> None:
    code, out = run("analyze", *QA2, "--rate", "3", "--json")
    assert code == 0
    rec = json.loads(out)
    assert set(rec) == {"max_rate", "throughput", "ttft_ms", "itl_ms", "wait_ms", "prefill_ms", "avg_in_service", "rho"}
    assert rec["ttft_ms"] == pytest.approx(75.31746, rel=1e-3)
    assert rec["itl_ms"] == pytest.approx(20.534498, rel=1e-3)
    assert rec["max_rate"] == pytest.approx(3.8208232, rel=1e-3)


def test_size_with_demand_gives_replicas() -> None:
    code, out = run("size", *QA2, "--ttft", "60", "--itl", "20", "--demand", "10", "--json")
    assert code == 0
    rec = json.loads(out)
    assert rec["throughput"] == pytest.approx(2.8741095, rel=1e-3)
    assert rec["replicas"] == 4


def test_text_output_and_help() -> None:
    code, out = run("size", *QA2, "--itl", "20")
    assert code == 0 and out.splitlines()[0].startswith("max_rate")
    code, out = run("analyze", "--help")
    assert code == 0 and "KV-cache memory-access" in out and "per-iteration overhead" in out


def test_errors_exit_two_and_name_the_flag() -> None:
    code, out = run("size", *QA2, "--itl", "2")
    assert code == 2 and "--itl" in out and "infeasible" in out
    code, out = run("analyze", *QA2, "--rate", "100")
    assert code == 2 and "--rate" in out
    code, out = run("size", *QA2)
    assert code == 2 and "target" in out


def test_simulate_runs_a_scenario(tmp_path: Path) -> None:
    doc = {
        "duration": "3m",
        "model": {"id": "m"},
        "slo": {"ttft_ms": 1000, "itl_ms": 40},
        "variants": [{"name": "v", "perf": {"alpha": 8.0, "beta": 0.03, "gamma": 0.0003}}],
        "traffic": {"rate": 2, "input_tokens": {"mean": 200}, "output_tokens": {"mean": 50}},
        "autoscalers": [{"name": "saturation-v1"}, {"name": "static", "params": {"replicas": 1}}],
    }
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    code, text = run("simulate", str(scenario), "-o", str(out), "--seed", "2")
    assert code == 0, text
    assert "saturation-v1" in text and "static" in text
    assert json.loads((out / "serving-report.json").read_text())["seed"] == 2
