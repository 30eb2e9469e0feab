"""`twin run` recognises an LLM-serving scenario and compares its autoscalers side by side."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from twin.cli.run_cmd import run
from twin.sim.serving_scenario import is_serving_scenario

ROOT = Path(__file__).resolve().parents[2]
SERVING = ROOT / "scenarios" / "llm-serving.yaml"


def test_serving_and_pool_scenarios_are_told_apart() -> None:
    assert is_serving_scenario(SERVING)
    assert not is_serving_scenario(ROOT / "scenarios" / "quickstart.yaml")


def test_twin_run_on_a_serving_scenario_writes_the_side_by_side_report(tmp_path: Path) -> None:
    result = CliRunner().invoke(run, [str(SERVING), "-o", str(tmp_path), "--set", "duration=4m", "--seed", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "serving-report.json").read_text())
    assert report["duration_s"] == 240.0 and report["seed"] == 1
    assert set(report["autoscalers"]) >= {"model-based", "static"}
    assert "model-based" in result.output and "SLO" in result.output


def test_bad_override_names_the_field(tmp_path: Path) -> None:
    result = CliRunner().invoke(run, [str(SERVING), "-o", str(tmp_path), "--set", "traffic.bogus=3"])
    assert result.exit_code != 0
    assert "traffic.bogus" in str(result.exception) + result.output
