"""Replaying real vLLM runs (../shared/data/vllm-real): the run format, the CLI, and the error table."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.cli import main
from twin.errors import TwinInputError
from twin.experiments.vllm_validation import (
    CALIBRATION_RUNS,
    VALIDATION_RUNS,
    error_table,
    format_table,
    read_llmservingsim,
)
from twin.spec.vllm_run import load_vllm_run

RUNS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "vllm-real" / "runs"
needs_runs = pytest.mark.skipif(not (RUNS / CALIBRATION_RUNS[0]).is_dir(), reason="../shared/data/vllm-real absent")
M_KEYS = {"ttft_ms", "tpot_ms", "e2e_ms", "output_tokens_per_s"}
STATS = {"mean", "p50", "p90", "p99"}

META = {
    "model": "meta-llama/Llama-3.1-8B",
    "engine_kwargs": {
        "model": "meta-llama/Llama-3.1-8B", "max_num_seqs": 8, "max_num_batched_tokens": 512, "dtype": "bfloat16"
    },
    "hardware": {"device_name": "NVIDIA H100 80GB HBM3"},
}  # fmt: skip


def _request(i: int, q: float, inp: int = 100, out: int = 20) -> str:
    return json.dumps(
        {"input_toks": inp, "output_toks": out, "queued_ts": q, "first_token_ts": q + 0.05, "last_token_ts": q + 0.5}
    )


def _write_run(path: Path, n: int = 20, meta: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "meta.json").write_text(json.dumps(meta or META))
    (path / "requests.jsonl").write_text("\n".join(_request(i, 100.0 + 0.1 * i) for i in range(n)) + "\n")
    (path / "timeseries.csv").write_text(
        "t,prompt_throughput,gen_throughput,running,waiting,kv_cache_pct\n1.0,0,0,3,0,1\n"
    )
    return path


def test_a_small_run_replays_on_the_gpu_its_meta_names(tmp_path: Path) -> None:
    run = load_vllm_run(_write_run(tmp_path / "run"))
    assert run.tp == 1 and run.max_num_seqs == 8 and run.arrival_s[0] == 0.0 and run.ttft_s[0] == pytest.approx(0.05)
    result = CliRunner().invoke(main, ["serving", "replay", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    rec = json.loads(result.output)
    assert set(rec) == {"real", "simulated"}
    for side in rec.values():
        assert set(side) == M_KEYS
        assert all(set(side[k]) == STATS for k in ("ttft_ms", "tpot_ms", "e2e_ms"))
    # 20 light requests on an H100: the simulated latencies are real numbers of the right order.
    assert 0 < rec["simulated"]["tpot_ms"]["p50"] < 50
    text = CliRunner().invoke(main, ["serving", "replay", str(tmp_path / "run")])
    assert text.exit_code == 0 and "H100_SXM" in text.output and "trajectory" in text.output


def test_bad_run_files_are_named(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run")
    (run / "requests.jsonl").write_text(_request(0, 1.0) + "\n" + json.dumps({"input_toks": 0}) + "\n")
    with pytest.raises(TwinInputError) as err:
        load_vllm_run(run)
    assert (
        err.value.file == str(run / "requests.jsonl") and err.value.obj == "line 2" and err.value.field == "input_toks"
    )
    (run / "requests.jsonl").write_text(_request(0, 1.0))
    (run / "meta.json").write_text(json.dumps({**META, "engine_kwargs": {**META["engine_kwargs"], "dtype": "int4"}}))
    with pytest.raises(TwinInputError, match="dtype"):
        load_vllm_run(run)
    (run / "meta.json").write_text(json.dumps({**META, "hardware": {}}))
    result = CliRunner().invoke(main, ["serving", "replay", str(run)])
    assert result.exit_code == 2 and "--gpu" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["serving", "replay", str(run), "--gpu", "L40S", "--model-config", "Nope-1B"])
    assert result.exit_code == 2 and "unknown model" in result.output


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["input_toks", "output_toks", "queued_ts", "first_token_ts", "last_token_ts"]),
        st.one_of(
            st.integers(-3, 10**8), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=2), st.none()
        ),
    )
)
def test_any_request_line_loads_or_gives_one_clear_error(tmp_path_factory: pytest.TempPathFactory, bad: dict) -> None:
    run = _write_run(tmp_path_factory.mktemp("run"), n=1)
    line = {**json.loads(_request(0, 1.0)), **bad}
    (run / "requests.jsonl").write_text(json.dumps(line) + "\n")
    try:
        loaded = load_vllm_run(run)
    except TwinInputError as err:
        assert err.file == str(run / "requests.jsonl")
    else:
        assert loaded.input_tokens[0] >= 1 and loaded.ttft_s[0] >= 0 and math.isfinite(loaded.e2e_s[0])


def test_bench_json_keys_and_closed_loop_behaviour() -> None:
    def bench(c: int) -> dict[str, float]:
        args = ["serving", "bench", "--model", "Llama-3.1-8B", "--gpu", "H100", "--tp", "1", "--dtype", "bf16",
                "--input-tokens", "512", "--output-tokens", "128", "--concurrency", str(c), "--json"]  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    one, many = bench(1), bench(32)
    assert set(one) == {"ttft_ms", "tpot_ms", "output_tokens_per_s"}
    # One client: every request runs alone; 32 clients: more throughput, slower tokens.
    assert many["output_tokens_per_s"] > 5 * one["output_tokens_per_s"]
    assert many["tpot_ms"] > one["tpot_ms"] and many["ttft_ms"] > one["ttft_ms"]
    assert one["output_tokens_per_s"] == pytest.approx(128 / (one["ttft_ms"] + 127 * one["tpot_ms"]) * 1000, rel=0.02)


def test_size_answers_from_the_model_and_the_gpu() -> None:
    base = ["serving", "size", "--max-batch", "64", "--input-tokens", "512", "--output-tokens", "256", "--ttft", "500",
            "--itl", "30", "--demand", "20", "--json"]  # fmt: skip
    h100 = CliRunner().invoke(main, [*base, "--model", "Llama-3.1-8B", "--gpu", "H100"])
    assert h100.exit_code == 0, h100.output
    l40s = CliRunner().invoke(main, [*base, "--model", "Llama-3.1-8B", "--gpu", "L40S"])
    assert json.loads(l40s.output)["replicas"] > json.loads(h100.output)["replicas"]
    # An explicit parameter wins over the derived one.
    slow = CliRunner().invoke(main, [*base, "--model", "Llama-3.1-8B", "--gpu", "H100", "--alpha", "20"])
    assert json.loads(slow.output)["itl_ms"] > json.loads(h100.output)["itl_ms"]
    derived, given = json.loads(h100.output), json.loads(slow.output)
    assert given["alpha"] == 20 and given["beta"] == derived["beta"] and 0 < derived["alpha"] < 20
    missing = CliRunner().invoke(main, [*base, "--gpu", "H100"])
    assert missing.exit_code == 2 and "--model and --gpu" in missing.output


@needs_runs
def test_replay_the_four_runs_and_print_the_error_table(capsys: pytest.CaptureFixture[str]) -> None:
    rows = error_table(RUNS)
    assert [r.run for r in rows] == [*CALIBRATION_RUNS, *VALIDATION_RUNS]
    with capsys.disabled():
        print("\n" + format_table(rows))
    for r in rows:
        assert r.result["setup"]["completed"] == 300
        assert r.anchor["TPOT p50"] == read_llmservingsim(RUNS / r.run / "llmservingsim-summary.txt")["TPOT Median"]
    cal = {r.run: r.errors for r in rows if r.role == "calibration"}
    # The constants were fitted on these two: TPOT and throughput within 5 % (measured: 3.4 % at most).
    for errors in cal.values():
        assert abs(errors["TPOT p50"]) < 0.05 and abs(errors["output tok/s"]) < 0.05
    # Validation, as measured and documented (docs/serving.md): the twin is still too fast on both
    # (TPOT p50: TP 2 over PCIe -7.1 %, the DP-2 MoE run -4.6 %; output tok/s +9.1 % and +5.3 %; MoE TTFT
    # mean -29.6 %; before issue 19's third pass -7.8 %, -8.8 %, +9.3 %, +10.7 %, -48.8 %; before the second
    # -19.6 % and -43.9 % TPOT). Pinned so a change shows.
    val = {r.run: r.errors for r in rows if r.role == "validation"}
    qwen, moe = val["RTXPRO6000/Qwen3-32B"], val["RTXPRO6000/Qwen3-30B-A3B-Instruct-2507"]
    assert -0.10 < qwen["TPOT p50"] < -0.04 and -0.08 < moe["TPOT p50"] < -0.02
    assert 0.06 < qwen["output tok/s"] < 0.12 and 0.02 < moe["output tok/s"] < 0.08
    assert -0.40 < moe["TTFT mean"] < -0.20
    # The open-loop step-time error (vllm_steps) is reported for every run that logged its throughputs.
    assert all("step log-ratio MAE" in r.errors for r in rows)


@needs_runs
def test_replay_cli_on_a_real_run_and_a_copied_one(tmp_path: Path) -> None:
    run = RUNS / "RTXPRO6000" / "Llama-3.1-8B"
    result = CliRunner().invoke(main, ["serving", "replay", str(run), "--json"])
    assert result.exit_code == 0, result.output
    rec = json.loads(result.output)
    assert rec["real"]["tpot_ms"]["p50"] == pytest.approx(33.4, abs=0.05)  # the README's number
    # Outside runs/<GPU>/ the GPU must be given; the model is found by name.
    copy = tmp_path / "elsewhere"
    shutil.copytree(run, copy)
    assert CliRunner().invoke(main, ["serving", "replay", str(copy)]).exit_code == 2
    again = CliRunner().invoke(main, ["serving", "replay", str(copy), "--gpu", "RTXPRO6000", "--json"])
    assert json.loads(again.output) == rec


@needs_runs
def test_calibration_reads_the_llama_runs_only(tmp_path: Path) -> None:
    """Fitting on a folder without the validation runs gives the same constants: they play no part."""
    from twin.experiments.vllm_validation import calibrate
    from twin.policy.serving.step_model import Efficiency

    for name in CALIBRATION_RUNS:
        shutil.copytree(RUNS / name, tmp_path / name)
    grid = {"compute": (0.7, 0.8), "memory": (0.8, 0.9)}
    with_validation, loss = calibrate(RUNS, grid)
    without, loss_without = calibrate(tmp_path, grid)
    assert (with_validation, loss) == (without, loss_without)
    # And the shipped defaults are the optimum of the shipped grid on that corner of it.
    assert (with_validation.compute, with_validation.memory) == (Efficiency().compute, Efficiency().memory)
    # A grid outside the plausible ranges is refused: the fit may not absorb a missing term.
    with pytest.raises(TwinInputError, match="memory"):
        calibrate(tmp_path, {"memory": (0.8, 1.0)})


def test_bench_reports_progress_until_every_request_is_done() -> None:
    from twin.hardware import default_catalog
    from twin.sim.serving_bench import closed_loop_bench
    from twin.sim.serving_replay import EngineSetup
    from twin.spec.hf_config import resolve_model

    calls: list[tuple[int, int]] = []
    setup = EngineSetup(resolve_model("Llama-3.1-8B"), default_catalog().get("L4"))
    closed_loop_bench(setup, 200, 200, 4, 400, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (400, 400) and len(calls) > 1
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))


def test_async_scheduling_follows_the_run(tmp_path: Path) -> None:
    """Engine argument first, then the resolved scheduler config, then the version's default (on from 0.19)."""

    def flag(**meta: object) -> bool:
        run = _write_run(tmp_path / f"r{len(list(tmp_path.iterdir()))}", meta={**META, **meta})
        return load_vllm_run(run).async_scheduling

    assert flag() is False  # no version, no config: the simulator's plain scheduling
    assert flag(vllm_version="0.19.0") is True and flag(vllm_version="0.18.2") is False
    resolved = {"scheduler_config": {"async_scheduling": False}}
    assert flag(vllm_version="0.19.0", resolved_config=resolved) is False
    kwargs = {**META["engine_kwargs"], "async_scheduling": True}  # type: ignore[dict-item]
    assert flag(vllm_version="0.18.0", engine_kwargs=kwargs, resolved_config=resolved) is True
