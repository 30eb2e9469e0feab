"""``twin validate`` and ``twin spec`` through click's CliRunner; the shipped examples load cleanly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from twin.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "workloads"

POOL = (
    "apiVersion: tensor-fusion.ai/v1\nkind: GPUPool\nmetadata:\n  name: p\n  annotations:\n"
    '    tensor-fusion.ai/is-default-pool: "true"\n'
)
POD = (
    'apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    tensor-fusion.ai/enabled: "true"\n'
    '  annotations:\n    tensor-fusion.ai/tflops-request: "{tflops}"\n    tensor-fusion.ai/vram-request: 2Gi\n'
)


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_validate_ok_one_line_per_file(tmp_path: Path) -> None:
    a = _write(tmp_path, "pool.yaml", POOL)
    b = _write(tmp_path, "pod.yaml", POD.format(tflops="10"))
    result = CliRunner().invoke(main, ["validate", a, b])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("OK ")]
    assert lines == [
        f"OK {a}: 1 object, 0 TensorFusion pod templates",
        f"OK {b}: 1 object, 1 TensorFusion pod template",
    ]


def test_validate_reports_every_error_with_file_field_value(tmp_path: Path) -> None:
    a = _write(tmp_path, "pool.yaml", POOL)
    b = _write(tmp_path, "pod.yaml", POD.format(tflops="ten"))
    c = _write(tmp_path, "bad.yaml", "apiVersion: v1\nkind: Gadget\nmetadata: {name: g}\n")
    result = CliRunner().invoke(main, ["validate", a, b, c])
    assert result.exit_code == 1
    err = result.stderr
    assert f'{b}:8: Pod/default/web: field metadata.annotations["tensor-fusion.ai/tflops-request"]' in err
    assert "(got 'ten')" in err and "silently ignore" in err
    assert f"{c}:1" in err and "'Gadget'" in err
    assert f"OK {a}" in result.stdout and f"OK {b}" not in result.stdout


def test_validate_warnings_fail_only_with_strict(tmp_path: Path) -> None:
    a = _write(tmp_path, "pool.yaml", POOL)
    b = _write(tmp_path, "pod.yaml", POD.format(tflops="1") + '    tensor-fusion.ai/tflop-limit: "2"\n')
    relaxed = CliRunner().invoke(main, ["validate", a, b])
    assert relaxed.exit_code == 0 and "unknown TensorFusion annotation" in relaxed.stderr
    assert CliRunner().invoke(main, ["validate", "--strict", a, b]).exit_code == 1


PROFILE = (
    "apiVersion: tensor-fusion.ai/v1\nkind: WorkloadProfile\nmetadata:\n  name: prof\nspec:\n"
    "  autoScalingConfig:\n    autoSetResources:\n      enable: true\n      targetResource: all\n"
    '      targetComputePercentile: "{target}"\n      marginFraction: "{margin}"\n'
)


def test_percentile_settings_parse_like_go_floats_warn_and_fail_only_with_strict(tmp_path: Path) -> None:
    """TensorFusion ``internal/autoscaler/recommender/percentile_recommender.go`` (reading
    ``autoSetResources``): strconv.ParseFloat on non-empty strings, the default kept when it fails.
    The twin warns naming the field and value; ``--strict`` refuses."""
    ok = _write(tmp_path, "ok.yaml", PROFILE.format(target="0.9", margin=""))
    clean = CliRunner().invoke(main, ["validate", "--strict", ok])
    assert clean.exit_code == 0, clean.output
    bad = _write(tmp_path, "bad.yaml", PROFILE.format(target="500m", margin="0.2"))
    relaxed = CliRunner().invoke(main, ["validate", bad])
    assert relaxed.exit_code == 0, relaxed.output
    assert "spec.autoScalingConfig.autoSetResources.targetComputePercentile" in relaxed.stderr
    assert "'500m' is not a Go float" in relaxed.stderr and f"{bad}:10" in relaxed.stderr
    strict = CliRunner().invoke(main, ["validate", "--strict", bad])
    assert strict.exit_code == 1 and "'500m' is not a Go float" in strict.stderr


def test_validate_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    assert CliRunner().invoke(main, ["validate", str(tmp_path / "nope.yaml")]).exit_code == 2


def test_spec_json(tmp_path: Path) -> None:
    a = _write(tmp_path, "all.yaml", POOL + "---\n" + POD.format(tflops="500m"))
    result = CliRunner().invoke(main, ["spec", a, "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["object"] == "Pod/default/web" and row["pool"] == "p"
    assert row["request"] == {"tflops": 0.5, "vram": 2 << 30, "compute_percent": 0.0}
    assert row["qos"] == "medium" and row["gpu_count"] == 1


def test_spec_table_and_errors(tmp_path: Path) -> None:
    good = _write(tmp_path, "all.yaml", POOL + "---\n" + POD.format(tflops="10"))
    table = CliRunner().invoke(main, ["spec", good])
    assert table.exit_code == 0 and "Pod/default/web" in table.stdout and "2Gi" in table.stdout
    bad = _write(tmp_path, "bad.yaml", POD.format(tflops="10"))  # no pool at all
    result = CliRunner().invoke(main, ["spec", bad])
    assert result.exit_code == 2 and "gpu pool not found" in result.stderr


def test_model_capacity_option(tmp_path: Path) -> None:
    pod = POD.format(tflops="1") + '    tensor-fusion.ai/dedicated-gpu: "true"\n    tensor-fusion.ai/gpu-model: Z1\n'
    a = _write(tmp_path, "all.yaml", POOL + "---\n" + pod)
    missing = CliRunner().invoke(main, ["spec", a, "--json"])
    assert missing.exit_code == 2 and "could not find capacity information" in missing.stderr
    ok = CliRunner().invoke(main, ["spec", a, "--json", "--model-capacity", "Z1=100,16Gi"])
    assert ok.exit_code == 0, ok.output
    [row] = json.loads(ok.stdout)
    assert row["request"]["tflops"] == 100.0 and row["limit"]["vram"] == 16 << 30
    bad = CliRunner().invoke(main, ["spec", a, "--model-capacity", "Z1"])
    assert bad.exit_code != 0 and "MODEL=TFLOPS,VRAM" in bad.output


def test_shipped_examples_validate_cleanly() -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    assert len(files) >= 5
    result = CliRunner().invoke(main, ["validate", "--strict", *files])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("OK ") == len(files)


def test_shipped_examples_normalise_as_documented() -> None:
    result = CliRunner().invoke(main, ["spec", str(EXAMPLES), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["object"]: r for r in json.loads(result.stdout)}
    canary = rows["Deployment/ml/llm-inference"]
    assert (canary["enabled_replicas"], canary["replicas"], canary["qos"]) == (2, 8, "high")
    assert canary["limit"]["compute_percent"] == 0.0  # the tflops-limit cleared the migrated 100%
    assert canary["autoscale"] == {"enabled": True, "target": "compute"}  # pool template rule
    notebook = rows["Pod/ml/notebook"]
    assert (notebook["request"]["tflops"], notebook["limit"]["tflops"]) == (5.0, 30.0)
    job = rows["Job/batch/batch-embed"]
    assert job["gpu_count"] == 2 and job["request"]["compute_percent"] == 100.0
    assert job["inject_container"] == ["embed"] and job["container_gpu_count"] == {"embed": 2}


def test_dedicated_gpu_capacity_from_hardware_catalogue(tmp_path: Path) -> None:
    if importlib.util.find_spec("twin.hardware") is None:
        pytest.skip("twin.hardware is not part of this build")
    from twin.hardware import default_catalog

    profile = default_catalog().find("A100")
    if profile is None:
        pytest.skip("the hardware catalogue has no A100")
    pod = POD.format(tflops="1") + '    tensor-fusion.ai/dedicated-gpu: "true"\n    tensor-fusion.ai/gpu-model: A100\n'
    a = _write(tmp_path, "all.yaml", POOL + "---\n" + pod)
    result = CliRunner().invoke(main, ["spec", a, "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["request"]["tflops"] == profile.fp16_tflops and row["limit"]["vram"] == profile.vram_bytes
