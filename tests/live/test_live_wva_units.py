"""The live WVA pieces one by one: PromQL text, API answers, pod mapping, the loop's safety net and
actuation, the exporter, the fleet's per-pod counters and endpoints, the cluster port, promtool."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from live_fixtures import fake_demo
from prom_harness import promtool_check_metrics
from prometheus_client import generate_latest

from live.agent import LiveAgent
from live.exporter import make_registry as tf_registry
from live.wva.exporter import make_registry
from live.wva.kube import ClusterCounts, ClusterScaler, bundle_from_documents, scale_targets
from live.wva.loop import WvaLoop
from live.wva.observe import ReplicaCount, natural_key, variant_of
from live.wva.pods import PodEndpoints
from live.wva.prom import PromClient, PrometheusError, Sample, parse_response
from live.wva.promql import ModelQueries, prom_duration, selector
from live.wva.vllm_metrics import pod_families
from twin.errors import TwinInputError
from twin.policy.serving.autoscalers import get_autoscaler
from twin.policy.serving.from_spec import variant_infos
from twin.sim.serving_fleet import WallClockFleet, buckets_1_2_5
from twin.sim.serving_scenario import load_serving_scenario, scenario_trace, serving_config
from twin.spec.wva import load_wva_documents

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "wva-live"


# ---------------------------------------------------------------- PromQL


def test_queries_are_wvas_promql_verbatim() -> None:
    q = ModelQueries("meta/llama-8b", "llm-d", retention_s=600)
    f = 'model_name="meta/llama-8b",namespace="llm-d"'
    assert q.arrival == f"sum(rate(vllm:request_success_total{{{f}}}[1m]))"
    assert q.avg_tokens("prompt") == (
        f"sum(rate(vllm:request_prompt_tokens_sum{{{f}}}[5m])) / sum(rate(vllm:request_prompt_tokens_count{{{f}}}[5m]))"
    )
    assert (
        q.kv_usage == f"max by (instance, pod, llm_d_ai_variant) (max_over_time(vllm:kv_cache_usage_perc{{{f}}}[1m]))"
    )
    assert (
        q.waiting == f"max by (instance, pod, llm_d_ai_variant) (max_over_time(vllm:num_requests_waiting{{{f}}}[1m]))"
    )
    assert q.pod_avg_tokens("generation") == (
        f"max by (pod) (rate(vllm:request_generation_tokens_sum{{{f}}}[5m])"
        f" / rate(vllm:request_generation_tokens_count{{{f}}}[5m]))"
    )
    assert q.success_in_retention == f"sum(increase(vllm:request_success_total{{{f}}}[10m]))"
    assert q.epp_queue == 'sum(inference_extension_flow_control_queue_size{target_model_name="meta/llama-8b"})'
    assert q.pod_latency_ms("time_to_first_token_seconds") == (
        f"max by (pod) (rate(vllm:time_to_first_token_seconds_sum{{{f}}}[1m])"
        f" / rate(vllm:time_to_first_token_seconds_count{{{f}}}[1m]))"
    )
    assert q.pod_dispatch_rate == (
        "sum by (pod_name, port, namespace) "
        f'(rate(inference_extension_scheduler_attempts_total{{status="success",{f}}}[1m]))'
    )


def test_label_values_are_escaped_and_durations_are_promql() -> None:
    assert selector('a"b\\c', "ns") == 'model_name="a\\"b\\\\c",namespace="ns"'
    assert (prom_duration(600), prom_duration(90), prom_duration(0.2)) == ("10m", "90s", "1s")


# ---------------------------------------------------------------- API answers


def test_vector_and_scalar_answers_parse() -> None:
    body = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {"pod": "p-1"}, "value": [10.5, "0.25"]}]},
    }
    assert parse_response(json.dumps(body).encode(), "q", "u") == [Sample({"pod": "p-1"}, 10.5, 0.25)]
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [3, "NaN"]}}
    [s] = parse_response(json.dumps(scalar).encode(), "q", "u")
    assert s.value != s.value  # NaN stays NaN; the observation turns it into 0


def test_an_error_answer_names_the_query_and_the_reason() -> None:
    body = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}).encode()
    with pytest.raises(PrometheusError, match=r"failed the query 'sum\(x' : parse error|parse error at char 3"):
        parse_response(body, "sum(x", "http://p")


_JSON = st.recursive(
    st.none() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=10,
)


@given(st.one_of(st.binary(max_size=200), _JSON.map(lambda d: json.dumps(d).encode())))
def test_any_answer_parses_or_raises_the_one_error_type(body: bytes) -> None:
    try:
        out = parse_response(body, "q", "http://p")
    except PrometheusError:
        return
    assert all(isinstance(s, Sample) for s in out)


def test_a_bad_url_is_refused_before_any_query() -> None:
    with pytest.raises(PrometheusError, match="must look like http://host:9090"):
        PromClient("localhost:9090")


# ---------------------------------------------------------------- pods and variants


def test_pods_map_to_variants_by_label_else_by_deployment_name() -> None:
    names = ["llama", "llama-big"]
    assert variant_of({"llm_d_ai_variant": "llama", "pod": "x"}, names) == "llama"
    assert variant_of({"llm_d_ai_variant": "other"}, names) is None
    assert variant_of({"pod": "llama-big-7d9f-abcde"}, names) == "llama-big"  # the longest matching Deployment
    assert variant_of({"pod": "llama-5c4b-xyz"}, names) == "llama"
    assert variant_of({"pod": "mistral-1"}, names) is None
    assert sorted(["v-10", "v-2", "v-1"], key=natural_key) == ["v-1", "v-2", "v-10"]


# ---------------------------------------------------------------- the loop, with a scripted Prometheus


class ScriptedProm(PromClient):
    """Answers by query prefix from a table: the loop's logic without a server (the server is in the e2e test)."""

    def __init__(self, answers: dict[str, list[Sample]]) -> None:
        super().__init__("http://scripted:9090")
        self.answers = answers
        self.asked: list[str] = []

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        self.asked.append(promql)
        for prefix, samples in self.answers.items():
            if promql.startswith(prefix):
                return samples
        return []


def _variants() -> list[Any]:
    return variant_infos(load_wva_documents([EXAMPLES / "variants.yaml"]))


def _busy(t: float, kv: float) -> dict[str, list[Sample]]:
    pods = [("llama-8b-h100-1", "llama-8b-h100"), ("llama-8b-a100-1", "llama-8b-a100")]
    return {
        "max(timestamp(": [Sample({}, t, t - 1)],
        "sum(rate(vllm:request_success_total": [Sample({}, t, 5.0)],
        "max by (instance, pod, llm_d_ai_variant) (max_over_time(vllm:kv_cache_usage_perc": [
            Sample({"pod": p, "llm_d_ai_variant": v}, t, kv) for p, v in pods
        ],
    }


def test_the_loop_decides_with_the_simulators_autoscaler_and_tracks_scaling() -> None:
    prom = ScriptedProm(_busy(100.0, 0.95))
    loop = WvaLoop(prom, _variants(), lambda: get_autoscaler("saturation-v1"))
    [c] = loop.cycle(at=100.0)
    assert c.skipped is None and c.observation is not None
    assert c.desired == get_autoscaler("saturation-v1").decide(100.0, c.observation)
    assert sum(c.desired.values()) > 2  # both pods are saturated: more replicas are asked for
    assert {(r.pod, r.kv_usage) for r in c.observation.replicas} == {
        ("llama-8b-a100-1", 0.95),
        ("llama-8b-h100-1", 0.95),
    }
    text = generate_latest(make_registry(loop)).decode()
    for name, want in c.desired.items():
        acc = "H100" if "h100" in name else "A100"
        labels = f'{{accelerator_type="{acc}",namespace="llm-d",variant_name="{name}"}}'
        assert f"wva_desired_replicas{labels} {float(want)}" in text
        assert f"inferno_desired_replicas{labels} {float(want)}" in text


def test_missing_or_stale_metrics_skip_the_model_and_keep_the_last_value() -> None:
    answers = _busy(100.0, 0.95)
    prom = ScriptedProm(answers)
    loop = WvaLoop(prom, _variants(), lambda: get_autoscaler("saturation-v1"))
    [first] = loop.cycle(at=100.0)
    answers["max(timestamp("] = [Sample({}, 500.0, 100.0)]  # newest sample 400 s old
    [stale] = loop.cycle(at=500.0)
    assert stale.observation is None and "is 400 s old (limit 300 s)" in str(stale.skipped)
    assert stale.desired == first.desired  # WVA's safety net re-emits the previous desired value
    answers["max(timestamp("] = []
    [empty] = loop.cycle(at=510.0)
    assert "no vllm:request_success_total for model 'meta/llama-8b'" in str(empty.skipped)
    fresh = WvaLoop(ScriptedProm({}), _variants(), lambda: get_autoscaler("saturation-v1"))
    [never] = fresh.cycle(at=1.0)
    assert never.desired == {"llama-8b-a100": 1, "llama-8b-h100": 1}  # no previous value: the current replicas


# ---------------------------------------------------------------- the cluster port


class MemoryCluster:
    def __init__(self, docs: list[dict[str, Any]], replicas: dict[tuple[str, str], int]) -> None:
        self.docs = docs
        self.deployments = dict(replicas)

    def wva_documents(self) -> list[dict[str, Any]]:
        return self.docs

    def replicas(self, namespace: str, deployment: str) -> ReplicaCount | None:
        n = self.deployments.get((namespace, deployment))
        return None if n is None else ReplicaCount(n, n)

    def set_replicas(self, namespace: str, deployment: str, replicas: int) -> None:
        self.deployments[(namespace, deployment)] = replicas


def _docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / "variants.yaml").read_text()) if d]


def test_actuation_patches_the_scale_target_only_when_asked() -> None:
    cluster = MemoryCluster(_docs(), {("llm-d", "llama-8b-h100"): 1, ("llm-d", "llama-8b-a100"): 1})
    bundle = bundle_from_documents(cluster.wva_documents())
    targets = scale_targets(bundle)
    assert targets == {("llm-d", "llama-8b-h100"): "llama-8b-h100", ("llm-d", "llama-8b-a100"): "llama-8b-a100"}
    counts = ClusterCounts(cluster, targets)
    watch = WvaLoop(
        ScriptedProm(_busy(100.0, 0.95)), variant_infos(bundle), lambda: get_autoscaler("saturation-v1"), counts=counts
    )
    [c] = watch.cycle(at=100.0)
    assert c.scaled == () and cluster.deployments[("llm-d", "llama-8b-h100")] == 1
    scaler = ClusterScaler(cluster, targets)
    act = WvaLoop(
        ScriptedProm(_busy(100.0, 0.95)),
        variant_infos(bundle),
        lambda: get_autoscaler("saturation-v1"),
        counts=counts,
        scaler=scaler,
    )
    [c] = act.cycle(at=100.0)
    assert c.scaled and all(cluster.deployments[("llm-d", v)] == n for v, n in c.scaled)
    assert scaler.patched == [("llm-d", v, n) for v, n in c.scaled]


def test_a_bad_cluster_object_is_reported_against_the_cluster() -> None:
    docs = _docs()
    docs[2]["spec"]["minReplicas"] = -1
    with pytest.raises(TwinInputError, match=r"^<kubernetes>.*minReplicas"):
        bundle_from_documents(docs)


def test_without_lightkube_the_cluster_reader_says_what_to_install() -> None:
    try:
        import lightkube  # noqa: F401
    except ImportError:
        from live.wva.kube import LightkubeWvaCluster

        with pytest.raises(RuntimeError, match=r"pip install 'gpu-pool-twin\[k8s\]'"):
            LightkubeWvaCluster()
    else:
        pytest.skip("lightkube is installed")


# ---------------------------------------------------------------- the fleet


def _fleet(seconds: float = 600.0) -> WallClockFleet:
    s = load_serving_scenario(EXAMPLES / "fleet.yaml")
    trace = scenario_trace(s, EXAMPLES, seed=0)
    return WallClockFleet(serving_config(s), trace, get_autoscaler("static", replicas=2), seconds, speed=1.0)


def test_per_pod_counters_add_up_to_the_simulators_totals() -> None:
    fleet = _fleet()
    fleet.advance(90.0)
    pods = [fleet.pod(n) for n in fleet.ready_pods()]
    assert len(pods) == 4 and all(p is not None for p in pods)
    counters = [p.counters for p in pods if p is not None]
    assert sum(c.success for c in counters) == fleet.sim.success_total > 0
    assert sum(c.prompt_tokens for c in counters) == fleet.sim.prompt_sum
    for c in counters:
        cum = [n for _, n in c.ttft.cumulative()]
        assert cum == sorted(cum) and cum[-1] == c.ttft.n == c.success
        assert c.itl.n == c.success * 127  # one inter-token gap per token after the first
    assert buckets_1_2_5(1000) == (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)


def test_pod_endpoints_follow_the_ready_pods_and_clean_up(tmp_path: Path) -> None:
    fleet = _fleet()
    sd = tmp_path / "sd.json"
    pods = PodEndpoints(fleet, sd_file=sd)
    fleet.start()
    pods.sync()
    try:
        *targets, epp = json.loads(sd.read_text())
        assert [t["labels"]["pod"] for t in targets] == sorted(fleet.ready_pods())
        assert epp["labels"] == {"namespace": "llm-d", "pod": "epp"}
        assert all(t["targets"][0].startswith("127.0.0.1:") for t in targets)
        assert {t["labels"]["namespace"] for t in targets} == {"llm-d"}
        text = urllib.request.urlopen(f"http://{targets[0]['targets'][0]}/metrics").read().decode()
        assert 'vllm:num_requests_running{engine="0",model_name="meta/llama-8b"}' in text
        info = 'vllm:cache_config_info{block_size="16",engine="0",model_name="meta/llama-8b",num_gpu_blocks="400"} 1.0'
        assert info in text
        first = targets[0]["targets"][0]
    finally:
        pods.close()
    assert json.loads(sd.read_text()) == []
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{first}/metrics", timeout=2)


# ---------------------------------------------------------------- promtool


def test_promtool_accepts_the_tf_exporter() -> None:
    agent = LiveAgent(fake_demo())
    agent.step()
    text = generate_latest(tf_registry(agent)).decode()
    assert "tf_gpu_metrics_capacity_tflops" in text
    assert promtool_check_metrics(text) == (0, "")


def test_a_pod_scaled_away_loses_its_endpoint_and_its_target(tmp_path: Path) -> None:
    s = load_serving_scenario(EXAMPLES / "fleet.yaml")
    fleet = WallClockFleet(serving_config(s), scenario_trace(s, EXAMPLES, 0), get_autoscaler("static", replicas=1), 600)
    sd = tmp_path / "sd.json"
    pods = PodEndpoints(fleet, sd_file=sd)
    fleet.start()
    pods.sync()
    try:
        before = {t["labels"]["pod"]: t["targets"][0] for t in json.loads(sd.read_text())[:-1]}
        fleet.advance(400.0)  # past the default 300 s scale-down stabilisation
        pods.sync()
        after = {t["labels"]["pod"]: t["targets"][0] for t in json.loads(sd.read_text())[:-1]}
        assert len(before) == 4 and len(after) == 2 and set(after) == set(fleet.ready_pods())
        for pod in set(before) - set(after):
            with pytest.raises(urllib.error.URLError):
                urllib.request.urlopen(f"http://{before[pod]}/metrics", timeout=2)
        for address in after.values():
            assert b"vllm:kv_cache_usage_perc" in urllib.request.urlopen(f"http://{address}/metrics").read()
    finally:
        pods.close()


def test_the_epp_holds_requests_while_no_pod_is_ready(tmp_path: Path) -> None:
    doc = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())
    doc["scale_to_zero"] = True
    for v in doc["variants"]:
        v["replicas"] = {"initial": 0, "min": 0, "max": 4}
    path = tmp_path / "zero.yaml"
    path.write_text(yaml.safe_dump(doc))
    s = load_serving_scenario(path)
    fleet = WallClockFleet(serving_config(s), scenario_trace(s, tmp_path, 0), get_autoscaler("saturation-v1"), 600)
    pods = PodEndpoints(fleet)
    fleet.start()
    fleet.advance(5.0)  # scaled from zero at once, but a pod takes 20 s to start
    pods.sync()
    try:
        assert pods.endpoints == {}
        size, size_bytes = fleet.epp_queue()
        assert size > 0 and size_bytes == 4.0 * 512 * size
        [epp] = pods.targets()
        text = urllib.request.urlopen(f"http://{epp['targets'][0]}/metrics").read().decode()
        assert f'inference_extension_flow_control_queue_size{{target_model_name="meta/llama-8b"}} {float(size)}' in text
        assert size == fleet.observe().scheduler_queue_size
    finally:
        pods.close()


def test_prefix_cache_counters_are_the_simulators_lookups_and_hits(tmp_path: Path) -> None:
    doc = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())
    doc["traffic"]["prefix"] = {"groups": 4, "tokens": 256}
    path = tmp_path / "prefix.yaml"
    path.write_text(yaml.safe_dump(doc))
    s = load_serving_scenario(path)
    fleet = WallClockFleet(serving_config(s), scenario_trace(s, tmp_path, 0), get_autoscaler("static", replicas=2), 600)
    fleet.advance(60.0)
    views = [fleet.pod(n) for n in fleet.ready_pods()]
    queries = sum(v.prefix_queries for v in views if v is not None)
    hits = sum(v.prefix_hits for v in views if v is not None)
    assert 0 < hits < queries  # shared prefixes: most lookups hit once each pod has seen a group
    assert hits / queries == pytest.approx(fleet.observe().prefix_cache_hit_rate)
    first = views[0]
    assert first is not None
    families = {f.name: f for f in pod_families("meta/llama-8b", first)}
    assert families["vllm:prefix_cache_hits"].samples[0].value == float(first.prefix_hits)
