"""End to end with a real Prometheus: the simulated vLLM fleet on the wall clock, Prometheus scraping
it through file_sd, the live WVA loop querying it with WVA's PromQL, and its exporter scraped back.

Parity, two ways (as for the node agent):
* replaying the loop's observations through a fresh autoscaler, called as the simulator calls it
  (``decide(now, observation)`` once per cycle), gives the loop's decisions exactly;
* at every cycle the simulator's own observation of the fleet (``ServingSim.observe``) is taken
  too: same variants and pods, the same token means, per-pod maxima within what the scrape phase
  explains, and the same decisions.
Bounded to about a minute; everything binds 127.0.0.1 and is torn down.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from prom_harness import binaries, free_port, promtool_check_metrics, running_prometheus

from live.wva.exporter import start_wva_exporter
from live.wva.loop import Cycle, WvaLoop
from live.wva.observe import ReplicaCount
from live.wva.pods import PodEndpoints
from live.wva.prom import PromClient, PrometheusUnreachable
from twin.policy.serving.autoscalers import get_autoscaler
from twin.policy.serving.from_spec import variant_infos
from twin.policy.serving.observation import ModelObservation, VariantInfo
from twin.sim.serving_fleet import WallClockFleet
from twin.sim.serving_scenario import load_serving_scenario, scenario_trace, serving_config
from twin.spec.wva import load_wva_documents

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "wva-live"
SCENARIO = EXAMPLES / "fleet.yaml"
VARIANTS = EXAMPLES / "variants.yaml"
WARMUP_S = 10.0
CYCLES = 6
CYCLE_S = 4.0
# Per-pod 1-minute maxima over ~1 s samples taken at different instants (Prometheus scrapes at its
# own phase): a peak between two samples of one side is missed by it.
KV_TOLERANCE = 0.1
WAITING_TOLERANCE = 3.0


def make_fleet() -> WallClockFleet:
    s = load_serving_scenario(SCENARIO)
    trace = scenario_trace(s, SCENARIO.parent, seed=0)
    return WallClockFleet(serving_config(s), trace, get_autoscaler("static", replicas=2), s.duration, speed=1.0)


def decide_like_the_simulator(name: str, observations: list[tuple[float, ModelObservation]]) -> list[dict[str, int]]:
    """A fresh autoscaler, called once per cycle with (now, observation), as ServingSim does."""
    scaler = get_autoscaler(name)
    return [scaler.decide(t, obs) for t, obs in observations]


def _query(url: str, promql: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for s in PromClient(url).query(promql)]


def wait_until_scraped(url: str, pods: int, timeout_s: float = 20.0) -> None:
    """Prometheus's discovery batches updates (every 5 s): wait until every target has been scraped."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        up = _query(url, 'count(up{job="vllm"} == 1)')
        if up and up[0][1] == pods:
            return
        time.sleep(0.2)
    raise AssertionError(f"Prometheus did not scrape the {pods} targets within {timeout_s} s")


def _promtool_findings_are_only_vllm_colons(code: int, findings: str) -> bool:
    """promtool's linter flags ':' in names (exit 3), which vLLM's own names all have; nothing else may appear."""
    lines = [line for line in findings.splitlines() if line.strip()]
    return code in (0, 3) and all(
        line.startswith("vllm:") and line.endswith("metric names should not contain ':'") for line in lines
    )


def _variants() -> list[VariantInfo]:
    return variant_infos(load_wva_documents([VARIANTS]))


# Each loop runs on the same answers. The model-based sizing is continuous in the arrival rate, which
# Prometheus's rate() under-reads until a full 1 m of data exists (longer than this test), so it is
# held to exact replay parity; the saturation analysers read per-pod maxima and are held to both.
AUTOSCALERS = ("saturation-v1", "saturation-v2", "model-based")
COMPARED_WITH_THE_SIMULATOR = ("saturation-v1", "saturation-v2")


def test_live_wva_loop_against_a_real_prometheus_matches_the_simulator(tmp_path: Path) -> None:
    binaries()
    autoscaler = AUTOSCALERS[0]
    sd_file = tmp_path / "targets.json"
    sd_file.write_text("[]\n")
    fleet = make_fleet()
    pods = PodEndpoints(fleet, sd_file=sd_file)
    stop = threading.Event()
    sim_obs: list[ModelObservation] = []

    def counts() -> dict[tuple[str, str], ReplicaCount]:
        # The Deployment status a cluster would report, taken with the simulator's own observation.
        obs = fleet.observe()
        sim_obs.append(obs)
        return {(v.namespace, v.name): ReplicaCount(v.current, v.ready) for v in obs.variants}

    exporter_port = free_port()
    runner = threading.Thread(target=fleet.run, args=(stop,), kwargs={"tick_s": 0.05, "on_tick": pods.sync})
    cycles: list[Cycle] = []
    others: dict[str, list[Cycle]] = {name: [] for name in AUTOSCALERS[1:]}

    def same_counts() -> dict[tuple[str, str], ReplicaCount]:
        return {(v.namespace, v.name): ReplicaCount(v.current, v.ready) for v in sim_obs[-1].variants}

    try:
        with running_prometheus(tmp_path, sd_file, static_targets=[f"127.0.0.1:{exporter_port}"]) as url:
            loop = WvaLoop(PromClient(url), _variants(), lambda: get_autoscaler(autoscaler), counts=counts)
            server, _ = start_wva_exporter(loop, port=exporter_port)
            more = {
                name: WvaLoop(PromClient(url), _variants(), lambda name=name: get_autoscaler(name), counts=same_counts)
                for name in others
            }
            try:
                # Pods up and scraped before the simulated clock moves: both windows start together.
                fleet.start()
                pods.sync()
                wait_until_scraped(url, len(pods.endpoints) + 1)  # and the EPP
                runner.start()
                time.sleep(WARMUP_S)
                for _ in range(CYCLES):
                    now = time.time()
                    cycles.extend(loop.cycle(at=now))
                    for name, other in more.items():
                        others[name].extend(other.cycle(at=now))
                    time.sleep(CYCLE_S)
                scraped = _query(url, 'wva_desired_replicas{variant_name="llama-8b-h100"}')
                scraped_old = _query(url, 'inferno_desired_replicas{variant_name="llama-8b-a100"}')
                exported = urllib.request.urlopen(f"http://127.0.0.1:{exporter_port}/metrics").read().decode()
                pod_text = urllib.request.urlopen(f"http://{pods.targets()[0]['targets'][0]}/metrics").read().decode()
                # A model nobody serves: an empty answer skips it; a sample older than allowed: stale.
                ghost = replace(_variants()[0], model_id="nobody/none", name="ghost")
                empty = WvaLoop(PromClient(url), [ghost], lambda: get_autoscaler(autoscaler)).cycle()
                stale = WvaLoop(
                    PromClient(url), _variants(), lambda: get_autoscaler(autoscaler), max_age_s=1e-3
                ).cycle()
            finally:
                server.shutdown()
                server.server_close()
    finally:
        stop.set()
        if runner.is_alive():
            runner.join(timeout=10)
        pods.close()

    runs = {autoscaler: cycles, **others}
    for name, run in runs.items():
        assert [c.skipped for c in run] == [None] * CYCLES, name
        # 1. The loop's decisions are the simulator's policy calls on the same observations.
        observed = [(c.t, c.observation) for c in run if c.observation is not None]
        assert decide_like_the_simulator(name, observed) == [c.desired for c in run], name
    live = [(c.t, c.observation) for c in cycles if c.observation is not None]
    # 2. What Prometheus answered agrees with what the simulator observed at the same moment.
    for (_, obs), sim in zip(live, sim_obs, strict=True):
        by_name = {v.name: v for v in obs.variants}
        assert {v.name: replace(v, desired=None) for v in sim.variants} == {
            n: replace(v, desired=None) for n, v in by_name.items()
        }
        assert (obs.input_tokens, obs.output_tokens) == (sim.input_tokens, sim.output_tokens) == (512.0, 128.0)
        assert (obs.prefix_cache_hit_rate, obs.scheduler_queue_bytes) == (sim.prefix_cache_hit_rate, 0.0)
        assert obs.scheduler_queue_size == sim.scheduler_queue_size
        # The queueing-model inputs the simulator leaves at 0 come from vLLM's histograms here.
        assert all(r.ttft_ms > 0 and r.itl_ms > 0 for r in obs.replicas)
        live_pods = {r.pod: r for r in obs.replicas}
        assert sorted(live_pods) == sorted(r.pod for r in sim.replicas)
        for r in sim.replicas:
            p = live_pods[r.pod]
            assert (p.variant, p.num_gpu_blocks, p.block_size) == (r.variant, r.num_gpu_blocks, r.block_size)
            assert abs(p.kv_usage - r.kv_usage) <= KV_TOLERANCE, (r.pod, p.kv_usage, r.kv_usage)
            assert abs(p.waiting - r.waiting) <= WAITING_TOLERANCE, (r.pod, p.waiting, r.waiting)
    for name in COMPARED_WITH_THE_SIMULATOR:
        # The simulator's observation at each cycle, with the desired values this loop had emitted.
        from_sim = []
        for c, sim in zip(runs[name], sim_obs, strict=True):
            assert c.observation is not None
            last = {v.name: v.desired for v in c.observation.variants}
            variants = tuple(replace(v, desired=last[v.name]) for v in sim.variants)
            from_sim.append((c.t, replace(sim, variants=variants)))
        assert decide_like_the_simulator(name, from_sim) == [c.desired for c in runs[name]], name
    # 3. The exporter: WVA's names and labels, scraped by Prometheus, promtool-clean.
    last = cycles[-1].desired
    assert [(lab["namespace"], lab["accelerator_type"], v) for lab, v in scraped] == [
        ("llm-d", "H100", float(last["llama-8b-h100"]))
    ]
    assert [v for _, v in scraped_old] == [float(last["llama-8b-a100"])]
    assert promtool_check_metrics(exported) == (0, "")
    assert _promtool_findings_are_only_vllm_colons(*promtool_check_metrics(pod_text))
    # 4. Clear reasons when the metrics are missing or old; the loop keeps the previous value.
    assert empty[0].observation is None and "no vllm:request_success_total for model 'nobody/none'" in str(
        empty[0].skipped
    )
    assert empty[0].desired == {"ghost": 1}
    assert stale[0].observation is None and "old (limit 0 s)" in str(stale[0].skipped)


def test_an_unreachable_prometheus_is_named_in_the_error() -> None:
    port = free_port()  # nothing listens there
    loop = WvaLoop(PromClient(f"http://127.0.0.1:{port}", timeout_s=2), _variants(), lambda: get_autoscaler("static"))
    with pytest.raises(PrometheusUnreachable, match=f"cannot reach Prometheus at http://127.0.0.1:{port}"):
        loop.cycle()
    assert loop.history == []
