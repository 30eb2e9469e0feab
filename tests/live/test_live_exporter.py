"""The Prometheus exporter: served on loopback, scraped over HTTP, parsed as exposition text."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from live.agent import LiveAgent
from live.backends.fake import FakeBackend
from live.exporter import DEFAULT_ADDR, start_exporter
from live.workers import parse_workers
from twin.resources import GIB

TF = "tensor-fusion.ai/"


def _agent() -> tuple[LiveAgent, FakeBackend, str, str]:
    fake = FakeBackend(hostname="n1")
    g0 = fake.add_gpu("NVIDIA H100 80GB HBM3")
    g1 = fake.add_gpu("NVIDIA H100 80GB HBM3")
    fake.set_usage(g0, utilization_gpu=60, power_w=400, temperature_c=55)
    fake.add_process(g0, 11, 20 * GIB, sm_util=40)
    fake.mark_unsupported(g1, "power_w")
    wf = parse_workers(
        {
            "workers": [
                {
                    "name": "trainer",
                    "pids": [11],
                    "annotations": {
                        TF + "tflops-request": "100",
                        TF + "vram-request": "30Gi",
                        TF + "vram-limit": "40Gi",
                    },
                }
            ]
        }
    )
    return LiveAgent(fake, wf), fake, g0, g1


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    hits = [v for (n, ls), v in metrics.items() if n == name and all((k, v2) in ls for k, v2 in labels.items())]
    assert len(hits) == 1, (name, labels, hits)
    return hits[0]


def test_exporter_serves_tensorfusion_named_metrics_on_loopback() -> None:
    agent, _fake, g0, g1 = _agent()
    agent.step()
    server, _thread = start_exporter(agent, port=0)
    try:
        assert server.server_address[0] == DEFAULT_ADDR
        m = _scrape(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
    assert _value(m, "tf_gpu_usage_compute_percentage", uuid=g0, node="n1", pool="local") == 60
    assert _value(m, "tf_gpu_usage_compute_tflops", uuid=g0) == pytest.approx(0.6 * 989)
    assert _value(m, "tf_gpu_usage_memory_bytes", uuid=g0) == 20 * GIB
    assert _value(m, "tf_gpu_usage_power_usage", uuid=g0) == 400
    assert not [k for k in m if k[0] == "tf_gpu_usage_power_usage" and ("uuid", g1) in k[1]]  # NotSupported: absent
    assert _value(m, "tf_gpu_metrics_allocated_tflops", gpu=g0, gpu_model="H100_SXM") == 100
    assert _value(m, "tf_gpu_metrics_available_vram_bytes", gpu=g1) == 80 * GIB
    assert _value(m, "tf_worker_resources_vram_bytes_limit", worker="trainer", qos="medium") == 40 * GIB
    assert _value(m, "tf_worker_usage_memory_percentage", worker="trainer", uuid=g0) == pytest.approx(50.0)
    assert _value(m, "tf_worker_usage_compute_tflops", worker="trainer") == pytest.approx(0.4 * 989)
    assert _value(m, "tf_worker_limiter_rate", worker="default/trainer", uuid=g0) > 0
    assert _value(m, "tf_gpu_healthy", uuid=g1) == 1


def test_lost_gpu_is_unhealthy_and_exports_no_usage() -> None:
    agent, fake, _g0, g1 = _agent()
    agent.step()
    fake.lose(g1)
    fake.advance(0.5)
    agent.step()
    server, _thread = start_exporter(agent, port=0)
    try:
        m = _scrape(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
    assert _value(m, "tf_gpu_healthy", uuid=g1) == 0
    assert _value(m, "tf_gpu_metrics_capacity_tflops", gpu=g1, phase="Unknown") == 989
    assert not [k for k in m if k[0].startswith("tf_gpu_usage_") and ("uuid", g1) in k[1]]
