"""``twin live``: status, record, run and fork, through the real command line entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from live_fixtures import DATA, SYNTHETIC_RECORDING

from live.agent import LiveAgent
from live.backends.nvml import nvml_available
from live.backends.replay import ReplayBackend
from live.workers import load_workers
from twin.cli import main
from twin.scenario import load_scenario

WORKERS = DATA / "live_synthetic_workers.yaml"


def _invoke(*args: str) -> tuple[int, str]:
    # A wide terminal so rich does not fold table cells.
    result = CliRunner().invoke(main, ["live", *args], catch_exceptions=False, env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_status_without_a_gpu_says_so_with_exit_code_3() -> None:
    if nvml_available():
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(main, ["live", "status"])
    assert result.exit_code == 3
    assert "no NVIDIA driver found" in result.output and "Traceback" not in result.output
    assert "--replay" in result.output


def test_status_of_a_recording_shows_gpus_and_workers() -> None:
    code, out = _invoke("status", "--replay", str(SYNTHETIC_RECORDING), "--workers", str(WORKERS))
    assert code == 0, out
    assert "H100_SXM" in out and "A100_SXM_80G" in out and "LOST" in out
    assert "research/big-batch" in out and "placed" in out


def test_record_a_fake_node_then_replay_it(tmp_path: Path) -> None:
    out_file = tmp_path / "rec.jsonl"
    code, out = _invoke("record", "--backend", "fake", "-o", str(out_file), "--interval", "0.05", "--duration", "0.2")
    assert code == 0, out
    replay = ReplayBackend(out_file)
    assert len(replay) == 5 and replay.header.synthetic is True
    times = [n.t for n in replay.samples()]
    assert times == sorted(times) and times[-1] > times[0]


def test_run_on_a_replay_logs_decisions(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    code, out = _invoke("run", "--replay", str(SYNTHETIC_RECORDING), "--workers", str(WORKERS), "--decisions", str(log))
    assert code == 0, out
    assert "Placed" in out and "actuators dry-run" in out
    kinds = [json.loads(line)["kind"] for line in log.read_text().splitlines()]
    assert kinds.count("Placed") == 2 and "GpuLost" in kinds


def test_run_refuses_dry_run_with_a_real_actuator() -> None:
    code, out = _invoke("run", "--replay", str(SYNTHETIC_RECORDING), "--dry-run", "--actuator", "launcher")
    assert code == 2 and "--dry-run cannot be combined" in out


def test_k8s_actuator_without_lightkube_is_a_clear_error() -> None:
    try:
        import lightkube  # noqa: F401
    except ImportError:
        code, out = _invoke("run", "--replay", str(SYNTHETIC_RECORDING), "--actuator", "k8s")
        assert code == 2 and "pip install" in out and "Traceback" not in out
    else:
        pytest.skip("lightkube is installed")


def test_fork_writes_a_valid_scenario(tmp_path: Path) -> None:
    target = tmp_path / "fork.yaml"
    code, out = _invoke("fork", "--replay", str(SYNTHETIC_RECORDING), "--workers", str(WORKERS), "-o", str(target))
    assert code == 0, out
    loaded = load_scenario(target).scenario
    assert set(loaded.pools) == {"a100-sxm-80g", "h100-sxm"}
    assert loaded.pools["h100-sxm"].gpus_per_node == 2
    names = [w.name for w in loaded.workloads]
    # burst exited at 40 s; the others are running or placed at the end of the recording.
    assert names == ["research-trainer", "serving-serve", "research-mig-job", "research-notebook", "research-big-batch"]
    text = target.read_text()
    assert text.startswith("# Forked from the live node synthetic-node-1")
    assert "tensor-fusion.ai/gpu-indices" in text


def test_the_forked_scenario_simulates_with_the_live_layout(tmp_path: Path) -> None:
    """fork -> twin run: every worker binds in the simulator to the device index it has live."""
    target = tmp_path / "fork.yaml"
    assert _invoke("fork", "--replay", str(SYNTHETIC_RECORDING), "--workers", str(WORKERS), "-o", str(target))[0] == 0
    result = CliRunner().invoke(main, ["run", str(target), "-o", str(tmp_path / "run"), "--no-plots", "-q"])
    assert result.exit_code == 0, result.output
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    binds = {e["subject"].rsplit("-", 1)[0]: e["gpus"] for e in events if e["event"] == "bind"}
    agent = LiveAgent(ReplayBackend(SYNTHETIC_RECORDING), load_workers(WORKERS))
    agent.run()
    assert agent.state is not None and agent.inventory is not None
    live_layout = {}
    for uid, alloc in agent.state.allocations.items():
        gpus = []
        for gid in alloc.gpu_ids:
            inv = agent.inventory.gpu(gid)
            assert inv is not None
            same_model = sorted(g.device.index for g in agent.inventory.gpus if g.profile.key == inv.profile.key)
            pool = inv.profile.key.lower().replace("_", "-")
            gpus.append(f"{pool}-0-gpu{same_model.index(inv.device.index)}")
        live_layout[uid.replace("/", "-")] = gpus
    assert binds == live_layout and len(binds) == 5
