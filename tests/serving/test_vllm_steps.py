"""The open-loop step-time diagnostic (twin.experiments.vllm_steps) on runs whose step times are known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.experiments.vllm_steps import format_phases, phase_table, second_rows, step_error
from twin.hardware import default_catalog
from twin.policy.serving.step_model import BatchShape, GpuSpec, StepModel
from twin.spec.hf_config import resolve_model
from twin.spec.vllm_run import load_vllm_run

META = {"model": "meta-llama/Llama-3.1-8B", "engine_kwargs": {"model": "meta-llama/Llama-3.1-8B"}}
STEP_S = 0.02  # every step of the synthetic engine lasts 20 ms
N, INP, OUT = 10, 100, 201  # ten requests decode side by side from 0.5 s to 4.5 s


def _run(path: Path, series: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "meta.json").write_text(json.dumps(META))
    lines = [
        json.dumps(
            {
                "input_toks": INP,
                "output_toks": OUT,
                "queued_ts": 100.0,
                "first_token_ts": 100.5,
                "last_token_ts": 100.5 + (OUT - 1) * STEP_S,
            }
        )
        for _ in range(N)
    ]
    (path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    (path / "timeseries.csv").write_text(series)
    return path


# Second 1 holds the prefills (1000 prompt tokens) and the first tokens; seconds 2-4 pure decode
# (10 sequences x 50 steps); second 3 is logged twice; second 4's KV cache is full.
SERIES = (
    "t,prompt_throughput,gen_throughput,running,waiting,kv_cache_pct\n"
    "1.0,1000,260,10,0,5\n2.0,0,500,10,0,6\n3.0,0,500,10,0,7\n3.0,0,500,10,0,7\n4.0,0,500,10,0,97\n5.0,0,250,10,0,8\n"
)
STEP = StepModel(resolve_model("Llama-3.1-8B"), GpuSpec.from_profile(default_catalog().get("H100")))


def test_steps_per_second_come_from_the_tokens_each_decoding_sequence_gains(tmp_path: Path) -> None:
    run = load_vllm_run(_run(tmp_path / "run", SERIES))
    assert run.throughput.shape == (5, 4)  # the repeated second counts once
    rows = {r.t: r for r in second_rows(run, STEP)}
    assert sorted(rows) == [1.0, 2.0, 3.0, 5.0]  # second 4: the KV cache was full (vLLM may preempt)
    for t in (2.0, 3.0, 5.0):
        assert rows[t].real_ms == pytest.approx(STEP_S * 1000) and rows[t].prefill_tokens == 0
    # Ten sequences decode through seconds 2 and 3, for half of second 5 (five on average).
    assert (rows[2.0].decode_seqs, rows[3.0].decode_seqs, rows[5.0].decode_seqs) == pytest.approx((N, N, N / 2))
    # Second 1: half a second of decoding for ten sequences (five on average), 50 steps, 20 prompt tokens each.
    assert rows[1.0].decode_seqs == pytest.approx(5.0) and rows[1.0].real_ms == pytest.approx(20.0)
    assert rows[1.0].prefill_tokens == pytest.approx(20.0)
    # The model prices the batch the real step carried: ten decodes at their interpolated context.
    ctx = INP + (2.5 - 0.5) / ((OUT - 1) * STEP_S) * (OUT - 1)
    assert rows[3.0].ctx_per_seq == pytest.approx(ctx)
    assert rows[3.0].model_ms == pytest.approx(STEP.step_ms(BatchShape.decode(N, ctx)), rel=1e-3)


def test_phase_table_and_step_error(tmp_path: Path) -> None:
    run = load_vllm_run(_run(tmp_path / "run", SERIES))
    rows = second_rows(run, STEP)
    table = {p.phase: p for p in phase_table(rows)}
    assert table["decode, batch 8-31"].seconds == 2 and table["decode, batch 8-31"].real_ms == pytest.approx(20.0)
    assert table["decode, batch 1-7"].seconds == 1 and table["mixed, 1-99 prefill/step"].seconds == 1
    assert table["all seconds"].seconds == 4
    full = [r for r in rows if r.prefill_tokens == 0 and r.decode_seqs == N]
    assert table["decode, batch 8-31"].ratio == pytest.approx(sum(r.model_ms for r in full) / (2 * 20.0))
    assert step_error(rows) == pytest.approx(np.mean([abs(math.log(r.model_ms / r.real_ms)) for r in rows]))
    assert step_error([]) == 0.0
    text = format_phases("synthetic", phase_table(rows))
    assert "decode, batch 8-31" in text and "ratio" in text


def test_series_without_throughput_or_kv_columns(tmp_path: Path) -> None:
    plain = load_vllm_run(_run(tmp_path / "plain", "t,running,waiting\n1.0,3,0\n"))
    assert plain.throughput.shape == (0, 4) and second_rows(plain, STEP) == []
    header = "t,prompt_throughput,gen_throughput,running,waiting"
    no_kv = load_vllm_run(_run(tmp_path / "nokv", header + "\n2.0,0,500,10,0\n"))
    assert math.isnan(no_kv.throughput[0, 3]) and len(second_rows(no_kv, STEP)) == 1  # unknown KV use: kept
    bad = _run(tmp_path / "bad", "t,prompt_throughput,gen_throughput,running,waiting,kv_cache_pct\n1.0,0,5,1,0,140\n")
    with pytest.raises(TwinInputError) as err:
        load_vllm_run(bad)
    assert err.value.file == str(bad / "timeseries.csv") and err.value.line == 2
    nan = _run(tmp_path / "nan", "t,prompt_throughput,gen_throughput,running,waiting,kv_cache_pct\n1.0,0,5,1,0,nan\n")
    with pytest.raises(TwinInputError, match="kv_cache_pct"):
        load_vllm_run(nan)  # NaN means "not recorded" only where the column is absent


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**6), st.sampled_from(["", "x"])),
        min_size=6,
        max_size=6,
    )
)
def test_any_series_row_loads_or_gives_one_clear_error(tmp_path_factory: pytest.TempPathFactory, row: list) -> None:
    header = "t,prompt_throughput,gen_throughput,running,waiting,kv_cache_pct"
    run = _run(tmp_path_factory.mktemp("run"), header + "\n" + ",".join(str(v) for v in row) + "\n")
    try:
        loaded = load_vllm_run(run)
    except TwinInputError as err:
        assert err.file == str(run / "timeseries.csv") and err.line == 2
    else:
        assert loaded.throughput.shape == (1, 4) and np.isfinite(loaded.throughput[0, :3]).all()
        assert 0 <= loaded.throughput[0, 3] <= 100
        rows = second_rows(loaded, STEP)  # whatever the numbers, the diagnostic stays finite
        assert all(math.isfinite(r.real_ms) and r.real_ms > 0 and math.isfinite(r.model_ms) for r in rows)


def test_the_replay_trajectory_counts_a_request_as_running_once_a_step_scheduled_it() -> None:
    """vLLM moves a request to its running list when a step schedules its first chunk; one admitted by the
    simulated replica but still waiting for the token budget counts as waiting, as in vLLM's log."""
    from twin.sim.serving_replay import EngineSetup, run_engine
    from twin.sim.serving_traffic import Trace

    # Eight 4,000-token prompts at once through a 512-token budget on an L4: one chunk of 512 per step.
    setup = EngineSetup(resolve_model("Llama-3.1-8B"), default_catalog().get("L4"), max_num_batched_tokens=512)
    trace = Trace(np.zeros(8), np.full(8, 4000, dtype=np.int64), np.full(8, 4, dtype=np.int64))
    _, points = run_engine(setup, trace)
    assert all(r + w <= 8 for _, r, w in points)  # every request is counted once, running or waiting
    assert setup.engine().num_gpu_blocks * 16 >= 8 * 4000  # the replica admits all eight at once
    # A 512-token chunk takes ~111 ms here: after a second the first prompt (8 chunks) is done and the
    # second has started; the other six were admitted but never scheduled, so they wait.
    assert points[0] == (1.0, 2, 6)
