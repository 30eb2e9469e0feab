"""The Azure LLM inference trace 2023 as a traffic source: loading, bounds, and each transformation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.sim.azure_trace import (
    SERVICES,
    AzureTraffic,
    default_dir,
    load_azure_trace,
    resolve_azure_source,
    transform_azure_trace,
)
from twin.sim.serving_traffic import Trace

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def write(tmp_path: Path, rows: list[str], name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_loads_times_relative_to_first_request_with_seven_fraction_digits(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            "2023-11-16 18:17:03.9799600,4808,10",
            "2023-11-16 18:17:04.0319600,3180,8",
            "2023-11-16 18:18:04.0319600,110,0",
        ],
    )
    trace = load_azure_trace(path)
    assert np.allclose(trace.arrival_s, [0.0, 0.052, 60.052])
    assert trace.input_tokens.tolist() == [4808, 3180, 110]
    assert trace.output_tokens.tolist() == [10, 8, 1]  # zero generated tokens still cost one step


def test_unsorted_rows_are_sorted_stably(tmp_path: Path) -> None:
    path = write(tmp_path, ["2023-11-16 18:00:02.0,1,1", "2023-11-16 18:00:01.0,2,2", "2023-11-16 18:00:02.0,3,3"])
    trace = load_azure_trace(path)
    assert trace.arrival_s.tolist() == [0.0, 1.0, 1.0]
    assert trace.input_tokens.tolist() == [2, 1, 3]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["2023-11-16 18:00:01.0,1"], "needs TIMESTAMP"),
        (["yesterday,1,1"], "needs TIMESTAMP"),
        (["2023-11-16 18:00:01.0,-1,1"], "token counts"),
        (["2023-11-16 18:00:01.0,1,99999999"], "token counts"),
        ([], "no requests"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, rows: list[str], message: str) -> None:
    path = write(tmp_path, rows)
    with pytest.raises(TwinInputError, match=message) as info:
        load_azure_trace(path)
    assert str(path) in str(info.value)


def test_wrong_header_and_binary_file_are_clear_errors(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("time,input,output\n1,2,3\n")
    with pytest.raises(TwinInputError, match="not an Azure LLM trace"):
        load_azure_trace(other)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 64)
    with pytest.raises(TwinInputError, match=r"UTF-8|Azure"):
        load_azure_trace(binary)
    with pytest.raises(TwinInputError, match="cannot read"):
        load_azure_trace(tmp_path / "missing.csv")


def uniform_trace(n: int, gap: float = 1.0) -> Trace:
    return Trace(np.arange(n, dtype=float) * gap, np.arange(n, dtype=np.int64) + 1, np.full(n, 5, dtype=np.int64))


def test_compress_divides_times_and_keeps_tokens() -> None:
    out = transform_azure_trace(uniform_trace(10), AzureTraffic("x", compress=4.0), 100.0, np.random.default_rng(0))
    assert out.arrival_s.tolist() == [i / 4.0 for i in range(10)]
    assert out.input_tokens.tolist() == list(range(1, 11))


def test_start_offset_skips_the_head() -> None:
    out = transform_azure_trace(uniform_trace(10), AzureTraffic("x", start_s=4.0), 100.0, np.random.default_rng(0))
    assert out.arrival_s.tolist() == [float(i) for i in range(6)]
    assert out.input_tokens[0] == 5


def test_loop_repeats_back_to_back_until_the_duration() -> None:
    out = transform_azure_trace(uniform_trace(5), AzureTraffic("x", loop=True), 12.0, np.random.default_rng(0))
    # span = last arrival (4) + median gap (1) = 5 s per copy
    assert out.arrival_s.tolist() == [float(t) for t in range(12)]
    assert out.input_tokens.tolist() == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]


def test_without_loop_the_trace_ends_where_it_ends() -> None:
    out = transform_azure_trace(uniform_trace(5), AzureTraffic("x"), 100.0, np.random.default_rng(0))
    assert len(out) == 5


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(0.1, 6.0), seed=st.integers(0, 2**16))
def test_rate_scale_changes_the_count_not_the_timeline(scale: float, seed: int) -> None:
    base = uniform_trace(2000, gap=0.5)
    out = transform_azure_trace(base, AzureTraffic("x", rate_scale=scale), 1e9, np.random.default_rng(seed))
    assert np.all(np.diff(out.arrival_s) >= 0)
    assert out.arrival_s[-1] < base.arrival_s[-1] + 0.5  # extra requests stay inside the trace's span
    assert abs(len(out) / len(base) - scale) < 0.1 * scale + 0.02
    # every request carries tokens of a real request of the trace
    assert set(out.input_tokens.tolist()) <= set(base.input_tokens.tolist())


def test_rate_scale_is_deterministic_per_seed() -> None:
    base = uniform_trace(500)
    a = transform_azure_trace(base, AzureTraffic("x", rate_scale=2.5), 1e9, np.random.default_rng(7))
    b = transform_azure_trace(base, AzureTraffic("x", rate_scale=2.5), 1e9, np.random.default_rng(7))
    assert a.arrival_s.tobytes() == b.arrival_s.tobytes()


@pytest.mark.parametrize("field", ["rate_scale", "compress"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf"), 1e6])
def test_out_of_range_factors_are_refused(field: str, value: float) -> None:
    with pytest.raises(TwinInputError, match=field):
        AzureTraffic("x", **{field: value})


def test_loop_is_bounded() -> None:
    with pytest.raises(TwinInputError, match="looping"):
        transform_azure_trace(uniform_trace(1000), AzureTraffic("x", loop=True), 1e12, np.random.default_rng(0))


def test_names_resolve_to_the_shared_folder_and_paths_to_the_base(tmp_path: Path) -> None:
    assert resolve_azure_source("code", tmp_path) == default_dir() / SERVICES["code"]
    assert resolve_azure_source("mine.csv", tmp_path) == tmp_path / "mine.csv"


@pytest.mark.parametrize(("service", "rows", "minutes"), [("code", 8819, 57), ("conv", 19366, 58)])
def test_the_real_trace_matches_its_readme(service: str, rows: int, minutes: int) -> None:
    path = default_dir() / SERVICES[service]
    if not path.exists():
        pytest.skip(f"the shared Azure trace is not at {path}")
    trace = load_azure_trace(path)
    assert len(trace) == rows
    assert int(trace.arrival_s[-1] // 60) == minutes
    assert np.all(np.diff(trace.arrival_s) >= 0)


AZURE_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "llm-serving-azure.yaml"


def _needs_shared_trace() -> None:
    if not (default_dir() / SERVICES["conv"]).exists():
        pytest.skip(f"the shared Azure trace is not at {default_dir()}")


def test_shipped_azure_scenario_replays_the_trace_with_its_bursts(tmp_path: Path) -> None:
    from twin.sim.serving_scenario import load_serving_scenario, scenario_trace

    _needs_shared_trace()
    scenario = load_serving_scenario(AZURE_SCENARIO)
    assert scenario.traffic.azure is not None and scenario.traffic.azure.file == "conv"
    trace = scenario_trace(scenario, AZURE_SCENARIO.parent, seed=0)
    raw = load_azure_trace(default_dir() / SERVICES["conv"])
    expected = 0.7 * np.count_nonzero(raw.arrival_s / 3.0 < scenario.duration)
    assert abs(len(trace) - expected) < 0.03 * expected
    # bursty, unlike a Poisson source: the per-second counts are over-dispersed (variance > mean)
    per_second = np.bincount(trace.arrival_s.astype(np.int64))
    assert per_second.var() > 1.5 * per_second.mean()
    assert np.array_equal(trace.arrival_s, scenario_trace(scenario, AZURE_SCENARIO.parent, seed=0).arrival_s)


def test_shipped_azure_scenario_runs_shortened(tmp_path: Path) -> None:
    from twin.sim.serving_scenario import run_serving_scenario

    _needs_shared_trace()
    report = run_serving_scenario(AZURE_SCENARIO, tmp_path, seed=0, overrides=["duration=3m"])
    assert report["requests"] > 1000
    assert set(report["autoscalers"]) == {"model-based", "saturation-v1", "saturation-v2", "hpa-queue"}


def test_csv_and_azure_together_are_refused(tmp_path: Path) -> None:
    import yaml

    from twin.sim.serving_scenario import load_serving_scenario

    doc = yaml.safe_load(AZURE_SCENARIO.read_text())
    doc["traffic"]["csv"] = "x.csv"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(TwinInputError, match="either csv or azure"):
        load_serving_scenario(path)
