"""``twin hw list`` / ``twin hw show``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from twin.cli import main
from twin.hardware import default_catalog, default_profiles_dir


def test_list_table_and_json() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["hw", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "H100_SXM" in result.output and "NVIDIA H100 80GB HBM3" in result.output and "G2 *" in result.output
    result = runner.invoke(main, ["hw", "list", "--json"])
    data = json.loads(result.output)
    assert [d["key"] for d in data] == default_catalog().keys()
    a30 = next(d for d in data if d["key"] == "A30")
    assert a30["mig_templates"][0]["tflops"] == 41.25  # 25 % of 165
    assert a30["vram_gib"] == 24


def test_show_by_alias_and_nvml_name() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["hw", "show", "h100", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["key"] == "H100_SXM"
    result = runner.invoke(main, ["hw", "show", "Tesla T4", "--json"])
    assert json.loads(result.output)["cost_per_hour"] == 0.35
    result = runner.invoke(main, ["hw", "show", "A30"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "nv-a30-2g-12gb" in result.output and "82.5" in result.output


def test_show_gives_the_serving_facts() -> None:
    """FP8 TFLOPs and the GPU-to-GPU link, which the step-time model reads (absent FP8 says so)."""
    runner = CliRunner()
    h100 = json.loads(runner.invoke(main, ["hw", "show", "h100", "--json"]).output)
    assert (h100["fp8_tflops"], h100["interconnect_gbps"]) == (1979, 450)
    table = runner.invoke(main, ["hw", "show", "RTXPRO6000"], env={"COLUMNS": "200"}).output
    assert "1007.6" in table and "64 GB/s per direction" in table
    a100 = runner.invoke(main, ["hw", "show", "A100_SXM_80G"], env={"COLUMNS": "200"}).output
    assert "no FP8" in a100


def test_show_unknown_key_exits_2_listing_keys() -> None:
    result = CliRunner().invoke(main, ["hw", "show", "RTX9999"])
    assert result.exit_code == 2 and "known keys" in result.output


def test_custom_profiles_dir(tmp_path: Path) -> None:
    directory = tmp_path / "hw"
    directory.mkdir()
    shutil.copy(default_profiles_dir() / "L4.yaml", directory)
    result = CliRunner().invoke(main, ["hw", "list", "--json", "--profiles", str(directory)])
    assert result.exit_code == 0 and [d["key"] for d in json.loads(result.output)] == ["L4"]
