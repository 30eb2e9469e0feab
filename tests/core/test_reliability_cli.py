"""Issue 16 through the real ``twin`` entry point: the exit-code convention, serving flags, plan and
check name checks, output folders, live safety. Every case asserts the exit code and the message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from twin.cli import _COMMANDS, main
from twin.cli.live_cmd import run_warnings
from twin.errors import TwinEnvironmentError, TwinInputError

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
POOL = ROOT / "examples" / "workloads" / "pool.yaml"
SIZE = ["serving", "size", "--max-batch", "64", "--alpha", "6", "--beta", "0.1", "--gamma", "0.01"]
SIZE += ["--input-tokens", "100", "--output-tokens", "100"]


def twin(*args: str, **kwargs: Any) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False, **kwargs)


@pytest.fixture
def boom(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A throwaway command that raises whatever a test hands it, registered like any other command."""
    holder: dict[str, BaseException] = {}

    @click.command()
    def _boom() -> None:
        raise holder["error"]

    import twin.cli as cli

    monkeypatch.setitem(_COMMANDS, "boom", "tests_boom:cmd")
    monkeypatch.setattr(cli.importlib, "import_module", _fake_import(cli.importlib.import_module, _boom))
    return holder


def _fake_import(real: Any, command: click.Command) -> Any:
    class _Module:
        cmd = command

    return lambda name: _Module if name == "tests_boom" else real(name)


@pytest.mark.parametrize(
    ("error", "code", "text"),
    [
        (TwinInputError("bad value", field="x", value=1), 2, "error: field x: bad value (got 1)"),
        (TwinEnvironmentError("no GPU here"), 3, "error: no GPU here"),
        (ModuleNotFoundError("No module named 'distributed'", name="distributed"), 3, "not installed: distributed"),
        (PermissionError(13, "Permission denied", "/root/x"), 3, "error: Permission denied (/root/x)"),
        (ZeroDivisionError("float division by zero"), 4, "internal error: ZeroDivisionError"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_one_exit_code_convention_for_every_command(boom: Any, error: BaseException, code: int, text: str) -> None:
    boom["error"] = error
    result = twin("boom")
    assert result.exit_code == code
    assert text in result.output
    assert "Traceback" not in result.output
    if code == 4:
        assert "twin --debug" in result.output


def test_debug_prints_the_traceback(boom: Any) -> None:
    boom["error"] = ZeroDivisionError("float division by zero")
    result = twin("--debug", "boom")
    assert result.exit_code == 4 and "Traceback" in result.output


def test_zero_gpu_pools_run(tmp_path: Path) -> None:
    result = twin(
        "run", str(QUICKSTART), "-q", "--no-plots", "-o", str(tmp_path / "o"),
        "--set", "pools.h100.count=0", "--set", "pools.l40s.count=0", "--set", "duration=1h",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["allocation"]["tflops_request_ratio_time_avg"] == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ttft", "500", "--demand", "nan"], "'--demand': nan is not a finite number"),
        (["--ttft", "nan", "--itl", "50"], "'--ttft': nan is not a finite number"),
        (["--ttft", "inf"], "'--ttft': inf is not a finite number"),
        (["--ttft", "500", "--max-batch", "10000000"], "max_batch = 4096"),
        (["--ttft", "500", "--max-queue", "100000000"], "max_queue = 100000"),
    ],
)
def test_serving_size_refuses_non_finite_and_unbounded_flags(flags: list[str], message: str) -> None:
    result = twin(*SIZE, *flags)
    assert result.exit_code == 2
    assert message in result.output


def test_serving_size_infeasible_slo_quotes_its_own_flag() -> None:
    result = twin(*SIZE, "--ttft", "500", "--itl", "1")
    assert result.exit_code == 2
    assert "field --itl" in result.output and "(got 1.0)" in result.output


def test_plan_checks_the_objective_before_simulating(tmp_path: Path) -> None:
    out = tmp_path / "plan"
    result = twin("plan", str(QUICKSTART), "--vary", "pools.h100.count=1..2", "--objective", "cost", "-o", str(out))
    assert result.exit_code == 2
    assert "field --objective" in result.output and "no metric 'cost'" in result.output
    assert "cost_usd.nodes" in result.output  # a suggestion
    assert not (out / "runs.jsonl").exists()  # nothing was simulated


def test_check_refuses_a_tolerance_for_an_unknown_metric() -> None:
    baseline = ROOT / "tests" / "gate" / "gate_baseline.json"
    result = twin("check", str(QUICKSTART), "--baseline", str(baseline), "--tolerance", "nosuch=0.1")
    assert result.exit_code == 2
    assert "no metric 'nosuch'" in result.output


def test_validate_refuses_an_empty_manifest_and_request_above_limit(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("---\n---\n")
    result = twin("validate", str(empty))
    assert result.exit_code == 1 and "holds no Kubernetes objects" in result.output
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {tensor-fusion.ai/enabled: 'true'}\n"
        "  annotations:\n    tensor-fusion.ai/tflops-request: '200'\n    tensor-fusion.ai/tflops-limit: '100'\n"
        "    tensor-fusion.ai/vram-request: 1Gi\nspec:\n  containers: [{name: a, image: x}]\n"
    )
    result = twin("validate", str(POOL), str(pod))
    assert result.exit_code == 1
    assert "tflops request is above its limit (100)" in result.output


def test_run_output_folder_never_mixes_runs(tmp_path: Path) -> None:
    out = tmp_path / "o"
    base = ["run", str(QUICKSTART), "-q", "-o", str(out), "--set", "duration=1h"]
    assert twin(*base).exit_code == 0
    assert (out / "report.html").exists()
    assert twin(*base, "--no-plots").exit_code == 0
    assert (out / "summary.json").exists() and not (out / "report.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no staging folder left behind


def test_run_refuses_to_replace_a_folder_that_is_not_a_twin_run(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep")
    result = twin("run", str(QUICKSTART), "-q", "-o", str(mine), "--set", "duration=1h")
    assert result.exit_code == 2 and "does not hold a twin run" in result.output
    assert (mine / "precious.txt").read_text() == "keep"


def test_default_output_name_is_sanitised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = tmp_path / "evil.yaml"
    scenario.write_text("name: ../../evil\nduration: 1h\npools: {a: {hardware: h100, count: 1}}\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert twin("run", str(scenario), "-q", "--no-plots").exit_code == 0
    assert (work / "out" / "evil" / "summary.json").exists()
    assert not (tmp_path / "evil").exists()


def test_live_record_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "rec.jsonl"
    target.write_text("mine\n")
    result = twin("live", "record", "-o", str(target), "--backend", "fake", "--duration", "0")
    assert result.exit_code == 2 and "--force" in result.output
    assert target.read_text() == "mine\n"
    result = twin("live", "record", "-o", str(target), "--backend", "fake", "--duration", "0", "--force")
    assert result.exit_code == 0, result.output
    assert target.read_text() != "mine\n"


def test_live_run_warns_about_real_actuators_on_fake_gpus_and_open_listeners() -> None:
    warnings = run_warnings(("launcher",), "fake", None, 9400, "0.0.0.0")
    assert len(warnings) == 2
    assert "acts for real" in warnings[0] and "fake backend" in warnings[0]
    assert "0.0.0.0" in warnings[1]
    assert run_warnings(("dry-run",), "nvml", None, 9400, "127.0.0.1") == []
    assert run_warnings(("k8s",), "nvml", None, 9400, "::1") == []
    assert "recording" in run_warnings(("k8s",), "nvml", Path("r.jsonl"), None, "0.0.0.0")[0]


def test_one_syntax_for_seeds_with_old_forms_noted(capsys: pytest.CaptureFixture[str]) -> None:
    from twin.cli.params import parse_seed_list

    assert parse_seed_list("42..44,50,42") == [42, 43, 44, 50]
    assert parse_seed_list("0..10:5") == [0, 5, 10]
    assert capsys.readouterr().err == ""
    assert parse_seed_list("42-44") == [42, 43, 44]  # the old trace form
    assert "write 42..44" in capsys.readouterr().err
    assert parse_seed_list("3", count_form=True) == [0, 1, 2]  # the old sweep/plan count
    assert "write --seeds 0..2" in capsys.readouterr().err
    assert parse_seed_list("3") == [3]
    for bad in ("4x", "9..3", "1..100000000"):
        with pytest.raises(TwinInputError):
            parse_seed_list(bad)


def test_sweep_takes_a_seed_list(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: s\nduration: 10m\npools: {a: {hardware: h100, count: 1}}\n")
    out = tmp_path / "sw"
    result = twin(
        "sweep", str(scenario), "--grid", "pools.a.count=1", "--seeds", "5,9", "--executor", "serial", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    seeds = sorted(json.loads(line)["seed"] for line in (out / "runs.jsonl").read_text().splitlines())
    assert seeds == [5, 9]


def test_sweep_table_leads_with_the_headline_metrics() -> None:
    from twin.cli.experiments_cmd import headline_metrics

    names = [f"allocation.x{i}.mean" for i in range(10)] + ["cost_usd.nodes", "slo_attainment", "zzz"]
    assert headline_metrics(names)[:2] == ["slo_attainment", "cost_usd.nodes"]
    serving = ["hpa-kv.avg_replicas", "hpa-kv.slo_attainment", "hpa-kv.cost", "hpa-kv.requests"]
    assert headline_metrics(serving) == [
        "hpa-kv.slo_attainment",
        "hpa-kv.cost",
        "hpa-kv.avg_replicas",
        "hpa-kv.requests",
    ]


def test_plan_plot_treats_attainments_as_fractions() -> None:
    from twin.experiments.plan_plot import is_fraction

    assert is_fraction("slo_attainment", [0.9, 1.0])
    assert is_fraction("allocation.gpu_alloc_ratio.mean", [0.2])
    assert not is_fraction("cost_usd.nodes", [0.5])
    assert not is_fraction("slo_attainment", [1.2])  # not a share after all: left unclipped


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["live", "record", "-o", "x.jsonl", "--interval", "nan"], "'--interval': nan is not a finite number"),
        (["live", "run", "--backend", "fake", "--interval", "inf"], "'--interval': inf is not a finite number"),
        (["trace", "replay", "--time-scale", "0"], "'--time-scale': 0 must be > 0"),
        (["plan", str(QUICKSTART), "--vary", "pools.h100.count=1..2", "--constraint", "a>=1..2"], "not a number"),
        (["plan", str(QUICKSTART), "--vary", "pools.h100.count=1..2", "--constraint", "a>=1e999"], "finite"),
    ],
)
def test_non_finite_and_malformed_numbers_are_refused_everywhere(args: list[str], message: str) -> None:
    result = twin(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_live_fork_with_an_unreadable_duration_is_bad_input(tmp_path: Path) -> None:
    result = twin("live", "fork", "-o", str(tmp_path / "f.yaml"), "--backend", "fake", "--duration", "forever")
    assert result.exit_code == 2 and "field --duration" in result.output


def test_plan_with_an_unusable_runner_is_bad_input(tmp_path: Path) -> None:
    args = ["plan", str(QUICKSTART), "--vary", "pools.h100.count=1..2", "-o", str(tmp_path / "p")]
    for runner in ("", "os:nosuch", "no_such_module_xyz:run"):
        result = twin(*args, "--runner", runner)
        assert result.exit_code == 2 and "field --runner" in result.output


def test_listener_warning_is_shared_by_every_live_command() -> None:
    from twin.cli.params import is_loopback, non_loopback_warning

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("node-1.example")
    assert non_loopback_warning("--addr", "127.0.0.2") is None
    assert "--addr 0.0.0.0 serves the metrics" in (non_loopback_warning("--addr", "0.0.0.0") or "")


@pytest.mark.parametrize("out", [".", "..", "/"])
def test_run_refuses_an_output_folder_that_contains_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str
) -> None:
    work = tmp_path / "w"
    work.mkdir()
    (work / "summary.json").write_text("{}")  # looks like a twin run, but it is where the user stands
    monkeypatch.chdir(work)
    result = twin("run", str(QUICKSTART), "-q", "-o", out, "--set", "duration=1h")
    assert result.exit_code == 2 and "contains it" in result.output
    assert (work / "summary.json").read_text() == "{}"


def test_a_failed_rename_keeps_the_previous_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from twin.outdir import fresh_output_dir

    target = tmp_path / "run"
    target.mkdir()
    (target / "summary.json").write_text("old")
    real_replace = Path.replace

    def flaky(self: Path, dest: Any) -> Path:
        if self.name.endswith(".partial"):
            raise OSError(28, "No space left on device")
        return real_replace(self, dest)

    monkeypatch.setattr(Path, "replace", flaky)
    with pytest.raises(OSError), fresh_output_dir(target) as staging:
        (staging / "summary.json").write_text("new")
    assert (target / "summary.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with pytest.raises(RuntimeError), fresh_output_dir(target) as staging:
        raise RuntimeError("killed while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
