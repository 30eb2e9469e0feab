"""``twin live wva`` and ``twin live fleet`` from the command line: exit codes, messages, the log."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from click.testing import CliRunner
from prom_harness import binaries, free_port, running_prometheus

from live.wva.pods import PodEndpoints
from twin.cli import main
from twin.policy.serving.autoscalers import get_autoscaler
from twin.sim.serving_fleet import WallClockFleet
from twin.sim.serving_scenario import load_serving_scenario, scenario_trace, serving_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "wva-live"
VARIANTS = str(EXAMPLES / "variants.yaml")


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["live", *args], catch_exceptions=False, env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_wva_needs_documents_or_the_cluster() -> None:
    code, out = _invoke("wva", "--prometheus", "http://127.0.0.1:9")
    assert code == 2 and "give either --va FILE... or --kube" in out


def test_wva_refuses_actuation_without_the_cluster_and_bad_replica_flags() -> None:
    code, out = _invoke("wva", "--prometheus", "http://127.0.0.1:9", "--va", VARIANTS, "--actuate")
    assert code == 2 and "--actuate patches Deployments and needs --kube" in out
    code, out = _invoke("wva", "--prometheus", "http://127.0.0.1:9", "--va", VARIANTS, "--replicas", "llama-8b-h100")
    assert code == 2 and "field --replicas: must look like VARIANT=N" in out
    code, out = _invoke("wva", "--prometheus", "http://127.0.0.1:9", "--va", VARIANTS, "--replicas", "nope=2")
    assert code == 2 and "names no variant" in out
    code, out = _invoke("wva", "--prometheus", "http://127.0.0.1:9", "--kube", "--replicas", "a=1")
    assert code == 2 and "with --kube the Deployments say" in out
    code, out = _invoke("wva", "--prometheus", "127.0.0.1:9090", "--va", VARIANTS)
    assert code == 2 and "must look like http://host:9090" in out
    code, out = _invoke("wva", "--prometheus", "http://127.0.0.1:9", "--va", VARIANTS, "--autoscaler", "nope")
    assert code == 2 and "unknown autoscaler" in out


def test_wva_against_nothing_says_prometheus_is_unreachable_and_exits_4() -> None:
    port = free_port()
    code, out = _invoke("wva", "--prometheus", f"http://127.0.0.1:{port}", "--va", VARIANTS, "--cycles", "1")
    assert code == 4
    assert f"cannot reach Prometheus at http://127.0.0.1:{port}" in out
    assert "not patching anything" in out and "metrics on http://127.0.0.1:" in out


def test_fleet_runs_sped_up_and_leaves_an_empty_target_list(tmp_path: Path) -> None:
    sd = tmp_path / "sd.json"
    code, out = _invoke(
        "fleet", str(EXAMPLES / "fleet.yaml"), "--sd-file", str(sd), "--duration", "20s", "--speed", "100"
    )
    assert code == 0, out
    assert "4 pods ready" in out and "fleet done at t=20 s" in out
    assert json.loads(sd.read_text()) == []


def test_fleet_names_an_unknown_autoscaler(tmp_path: Path) -> None:
    code, out = _invoke("fleet", str(EXAMPLES / "fleet.yaml"), "--sd-file", str(tmp_path / "sd"), "--autoscaler", "x")
    assert code == 2 and "field --autoscaler: not in the scenario; known: static" in out


def test_wva_cli_against_a_real_prometheus_logs_each_cycle(tmp_path: Path) -> None:
    binaries()
    s = load_serving_scenario(EXAMPLES / "fleet.yaml")
    fleet = WallClockFleet(
        serving_config(s), scenario_trace(s, EXAMPLES, 0), get_autoscaler("static", replicas=2), s.duration
    )
    sd = tmp_path / "sd.json"
    sd.write_text("[]\n")
    pods = PodEndpoints(fleet, sd_file=sd)
    stop = threading.Event()
    runner = threading.Thread(target=fleet.run, args=(stop,), kwargs={"tick_s": 0.05, "on_tick": pods.sync})
    log = tmp_path / "cycles.jsonl"
    try:
        with running_prometheus(tmp_path, sd) as url:
            fleet.start()
            pods.sync()
            runner.start()
            time.sleep(8)
            code, out = _invoke(
                "wva",
                "--prometheus",
                url,
                "--va",
                VARIANTS,
                "--cycles",
                "2",
                "--interval",
                "1",
                "--decisions",
                str(log),
            )
    finally:
        stop.set()
        if runner.is_alive():
            runner.join(timeout=10)
        pods.close()
    assert code == 0, out
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(c["model"], c["skipped"]) for c in lines] == [("meta/llama-8b|llm-d", None)] * 2
    assert all(set(c["desired"]) == {"llama-8b-h100", "llama-8b-a100"} for c in lines)
    assert sorted(r["pod"] for r in lines[0]["observation"]["replicas"]) == sorted(
        ["llama-8b-h100-1", "llama-8b-h100-2", "llama-8b-a100-3", "llama-8b-a100-4"]
    )
    assert "meta/llama-8b|llm-d: desired llama-8b-a100=" in out
