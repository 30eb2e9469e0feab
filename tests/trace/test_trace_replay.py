"""``twin trace replay``: pods arrive at creation_time, wait, run, and leave at deletion_time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from twin.cli import main
from twin.errors import TwinInputError
from twin.experiments.trace_replay import (
    MIB,
    build_cluster,
    replay,
    replay_pods,
    report_json,
    series_csv,
    summary_csv,
)
from twin.resources import QoS
from twin.spec.openb import load_nodes, load_pods

POD_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time"
)

# One node: 8 cores, 16 GiB, one T4. The outcome below is worked out by hand (see each pod).
NODES = "sn,cpu_milli,memory_mib,gpu,model\nn0,8000,16384,1,T4\n"
PODS = [
    # a: whole GPU at 0, leaves at 100.
    "a,1000,1024,1,1000,,LS,Running,0,100,0",
    # b: half GPU at 10; the GPU is full until a leaves at 100 -> waits 90 (after h, which is LS).
    "b,1000,1024,1,500,,BE,Running,10,300,100",
    # c: half GPU at 20, deleted at 50 while still pending -> withdrawn, never placed.
    "c,1000,1024,1,500,,LS,Pending,20,50,",
    # d: CPU-only at 30; 1000 + 5000 cores of 8000 -> placed at once, holds 5 cores until 400.
    "d,5000,1024,0,0,,LS,Running,30,400,30",
    # h: half GPU at 60 (LS): first in the pass at 100 (QoS before arrival) -> waits 40.
    "h,500,1024,1,500,,LS,Running,60,150,100",
    # e: half GPU, 2.5 cores at 70: GPU full until h leaves at 150; then CPU d 5000 + b 1000 + 2500
    #    > 8000 until b leaves at 300 -> waits 230.
    "e,2500,1024,1,500,,BE,Running,70,500,300",
    # g: whole GPU at 450 (the last arrival, the replay's horizon); e holds half -> cut off.
    "g,1000,1024,1,1000,,LS,Running,450,600,",
]
EXPECTED_WAITS = {"a": 0.0, "b": 90.0, "d": 0.0, "h": 40.0, "e": 230.0}


def _write(tmp_path: Path, pods: list[str] = PODS) -> tuple[Path, Path]:
    nodes_file = tmp_path / "nodes.csv"
    pods_file = tmp_path / "pods.csv"
    nodes_file.write_text(NODES)
    pods_file.write_text("\n".join([POD_HEADER, *pods]) + "\n")
    return nodes_file, pods_file


@pytest.mark.parametrize("policy", ["bestfit", "fgd", "random", "CompactFirst", "LowLoadFirst"])
def test_hand_computed_waits_departures_and_outcomes(tmp_path: Path, policy: str) -> None:
    nodes_file, pods_file = _write(tmp_path)
    pods = replay_pods(load_pods(pods_file))
    result = replay(load_nodes(nodes_file), pods, policy, samples=9)
    assert result.wait_by_pod == EXPECTED_WAITS
    assert (result.placed, result.failed, result.withdrawn, result.cut_off) == (5, 0, 1, 1)
    assert result.never_placed == 2
    assert result.horizon == 450.0
    p = result.pending_percentiles()
    assert p["max"] == 230.0
    assert p["mean"] == pytest.approx((90 + 40 + 230) / 5)
    assert set(result.node_by_pod) == set(EXPECTED_WAITS)


def test_samples_show_capacity_taken_and_given_back(tmp_path: Path) -> None:
    nodes_file, pods_file = _write(tmp_path)
    result = replay(load_nodes(nodes_file), replay_pods(load_pods(pods_file)), "bestfit", samples=9)
    by_time = {s.time: s for s in result.samples}
    # Samples every 50 s. At 50: a holds the GPU, c was withdrawn, b waits; d runs (CPU only).
    assert (by_time[50.0].gpu_share_pct, by_time[50.0].running, by_time[50.0].pending) == (100.0, 2, 1)
    # At 200: h left at 150; b (half) runs, e still waits for CPU; d still runs.
    assert (by_time[200.0].gpu_share_pct, by_time[200.0].running, by_time[200.0].pending) == (50.0, 2, 1)
    # At 450 (arrivals run before the sample of the same instant): b and d gone, e runs alone, g waits.
    assert (by_time[450.0].gpu_share_pct, by_time[450.0].running, by_time[450.0].pending) == (50.0, 1, 1)
    assert by_time[450.0].gpu_busy_pct == 100.0


def test_time_scale_compresses_arrivals_and_keeps_lifetimes(tmp_path: Path) -> None:
    _nodes, pods_file = _write(tmp_path)
    pods = {p.request.uid: p for p in replay_pods(load_pods(pods_file), time_scale=2.0)}
    assert (pods["b"].arrive, pods["b"].leave) == (5.0, 295.0)
    assert (pods["g"].arrive, pods["g"].leave) == (225.0, 375.0)


def test_limit_takes_the_earliest_pods_and_request_mapping(tmp_path: Path) -> None:
    _nodes, pods_file = _write(tmp_path, [*PODS[::-1]])  # file order reversed: creation order still wins
    pods = replay_pods(load_pods(pods_file), limit=3)
    assert [p.request.uid for p in pods] == ["a", "b", "c"]
    b = pods[1].request
    assert (b.gpu_count, b.gpu_milli, b.request.tflops, b.cpu_milli, b.memory) == (
        1,
        500,
        500.0,
        1000,
        MIB * 1024,
    )
    assert b.qos is QoS.LOW and pods[0].request.qos is QoS.HIGH


def test_gpu_spec_one_model_is_a_constraint_several_are_dropped(tmp_path: Path) -> None:
    rows = [
        "x,1000,1024,1,500,V100M16,LS,Running,0,100,0",  # T4-only cluster: can never run -> failed
        "y,1000,1024,1,500,T4|V100M16,LS,Running,5,100,5",  # two models: dropped, runs on the T4
    ]
    nodes_file, pods_file = _write(tmp_path, rows)
    pods = replay_pods(load_pods(pods_file))
    assert pods[0].request.gpu_model == "V100M16" and pods[1].request.gpu_model is None
    result = replay(load_nodes(nodes_file), pods, "bestfit", samples=1)
    assert result.wait_by_pod == {"y": 0.0}
    assert result.spec_dropped == 1
    assert result.failed + result.withdrawn + result.cut_off == 1


def test_cluster_uses_catalogue_models_and_node_cpu_memory(tmp_path: Path) -> None:
    nodes_file, _pods = _write(tmp_path)
    state = build_cluster(load_nodes(nodes_file))
    assert state.nodes["n0"].cpu_milli == 8000 and state.nodes["n0"].memory == 16384 * MIB
    gpu = state.gpus["n0-gpu0"]
    assert (gpu.model, gpu.capacity.tflops, gpu.capacity.vram) == ("T4", 1000.0, 16 * 1024 * MIB)


def test_bad_inputs_name_the_field(tmp_path: Path) -> None:
    _nodes, pods_file = _write(tmp_path)
    with pytest.raises(TwinInputError, match="time-scale"):
        replay_pods(load_pods(pods_file), time_scale=0.0)
    short = tmp_path / "short.csv"
    short.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1000,1024,1,500\n")
    with pytest.raises(TwinInputError, match="creation/deletion"):
        replay_pods(load_pods(short))
    backwards = tmp_path / "back.csv"
    backwards.write_text(POD_HEADER + "\np,1000,1024,1,500,,LS,Running,50,10,50\n")
    with pytest.raises(TwinInputError, match="deletion_time"):
        replay_pods(load_pods(backwards))


def test_cli_writes_outputs_and_json_deterministically(tmp_path: Path) -> None:
    nodes_file, pods_file = _write(tmp_path)
    outs = []
    for run in ("one", "two"):
        out = tmp_path / run
        args = ["trace", "replay", "--nodes", str(nodes_file), "--pods", str(pods_file)]
        args += ["--policies", "bestfit,CompactFirst", "--samples", "9", "--json", "-o", str(out)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        outs.append(out)
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == sorted(
        ["replay-series.csv", "replay-summary.csv", "replay.json", "replay-allocation.png", "replay-fragmentation.png"]
    )
    for name in names:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    doc = json.loads((outs[0] / "replay.json").read_text())
    assert [p["policy"] for p in doc["policies"]] == ["bestfit", "CompactFirst"]
    first = doc["policies"][0]
    assert (first["placed"], first["withdrawn"], first["cut_off"], first["waited"]) == (5, 1, 1, 3)
    assert first["pending_s"]["max"] == 230.0
    assert len(first["series"]["time_s"]) == 10
    assert (outs[0] / "replay-series.csv").read_text().count("\n") == 1 + 2 * 10
    assert (outs[0] / "replay-allocation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_unknown_policy(tmp_path: Path) -> None:
    nodes_file, pods_file = _write(tmp_path)
    args = ["trace", "replay", "--nodes", str(nodes_file), "--pods", str(pods_file), "--policies", "nope"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--policies" in result.output


def test_report_text_is_deterministic(tmp_path: Path) -> None:
    nodes_file, pods_file = _write(tmp_path)
    nodes, pods = load_nodes(nodes_file), replay_pods(load_pods(pods_file))
    runs = [[replay(nodes, pods, "random", seed=7, samples=5)] for _ in range(2)]
    assert report_json(runs[0]) == report_json(runs[1])
    assert series_csv(runs[0]) == series_csv(runs[1])
    assert summary_csv(runs[0]) == summary_csv(runs[1])


def test_real_trace_prefix(openb_dir: Path) -> None:
    nodes = load_nodes(openb_dir / "openb_node_list_gpu_node.csv")
    pods = replay_pods(load_pods(openb_dir / "openb_pod_list_default.csv"), limit=150)
    result = replay(nodes, pods, "bestfit", samples=20)
    assert result.placed + result.failed + result.withdrawn + result.cut_off == 150
    # The real trace is sparse (tens of pods alive at once on 6,212 GPUs): nothing waits at 1x.
    assert result.placed == 150 and max(result.waits) == 0.0
    assert 0.0 < result.mean_of("gpu_share_pct") < 5.0


@pytest.mark.slow
def test_real_trace_compressed_prefix_all_policies(openb_dir: Path) -> None:
    nodes = load_nodes(openb_dir / "openb_node_list_gpu_node.csv")
    pods = replay_pods(load_pods(openb_dir / "openb_pod_list_default.csv"), limit=1000, time_scale=1000.0)
    for policy in ("random", "dotproduct", "gpuclustering", "gpupacking", "bestfit", "fgd", "CompactFirst"):
        result = replay(nodes, pods, policy, samples=20)
        assert result.placed + result.failed + result.withdrawn + result.cut_off == 1000, policy
        assert all(0.0 <= s.gpu_share_pct <= 100.0 for s in result.samples)
