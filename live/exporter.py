"""Prometheus exporter for the live agent, named after TensorFusion's metrics (semantics 7).

TensorFusion writes influx lines ``<measurement> <field>=...``; here each field becomes the gauge
``<measurement>_<field>`` with the measurement's tags as labels:

* ``tf_gpu_usage_*`` {uuid, node, pool}: ``memory_bytes``, ``memory_percentage``,
  ``compute_percentage``, ``compute_tflops``, ``power_usage`` (W), ``temperature`` (°C);
* ``tf_worker_usage_*`` {uuid, node, pool, pod_name, namespace, workload, worker}:
  ``memory_bytes``, ``memory_percentage`` (of the VRAM limit, else the device), ``compute_percentage``,
  ``compute_tflops`` (percent x the device's TFLOPs, as the Rust hypervisor computes it; the Go
  hypervisor hard-codes 0);
* ``tf_gpu_metrics_*`` {gpu, node, pool, gpu_model, phase}: ``capacity_tflops``, ``available_tflops``,
  ``allocated_tflops``, ``allocated_tflops_percent``, ``capacity_vram_bytes``, ``available_vram_bytes``,
  ``allocated_vram_bytes``, ``allocated_vram_percent``;
* ``tf_worker_resources_*`` {namespace, pool, qos, worker, workload}: ``gpu_count``, ``tflops_request``,
  ``tflops_limit``, ``vram_bytes_request``, ``vram_bytes_limit``;
* twin additions: ``tf_worker_limiter_rate`` and ``tf_worker_limiter_tokens`` {worker, uuid}, and
  ``tf_gpu_healthy`` {uuid, node, pool} (0 once NVML reports the GPU lost).

A reading the device cannot give (NotSupported) is left out, never exported as 0.
The HTTP server binds 127.0.0.1 unless told otherwise: metrics name workloads and namespaces.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from live.agent import LiveAgent, WorkerPhase
from live.backends.base import Health

DEFAULT_ADDR = "127.0.0.1"
DEFAULT_PORT = 9400


def _family(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class LiveCollector(Collector):
    """Reads the agent's last tick on every scrape (under the agent's lock)."""

    def __init__(self, agent: LiveAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.agent.lock:
            families = self._collect()
        yield from families

    def _collect(self) -> list[GaugeMetricFamily]:
        a = self.agent
        if a.state is None or a.last_sample is None or a.inventory is None:
            return []
        node, pool = a.node, a.inventory.pool
        fams: dict[str, GaugeMetricFamily] = {}

        def put(name: str, doc: str, labels: dict[str, str], value: float | None) -> None:
            if value is None:
                return
            fam = fams.get(name)
            if fam is None:
                fam = fams[name] = _family(name, doc, list(labels))
            fam.add_metric(list(labels.values()), float(value))

        for dev in a.last_sample.devices:
            gl = {"uuid": dev.uuid, "node": node, "pool": pool}
            put("tf_gpu_healthy", "1 while NVML reports the GPU healthy", gl, 0.0 if dev.health is Health.LOST else 1.0)
            if dev.health is Health.LOST:
                continue
            gpu = a.state.gpus.get(dev.uuid)
            cap_tflops = gpu.capacity.tflops if gpu is not None else 0.0
            total = dev.memory_total or 0
            put("tf_gpu_usage_memory_bytes", "GPU memory used, bytes", gl, dev.memory_used)
            if dev.memory_used is not None and total > 0:
                put("tf_gpu_usage_memory_percentage", "GPU memory used, percent", gl, 100.0 * dev.memory_used / total)
            put("tf_gpu_usage_compute_percentage", "GPU utilisation, percent", gl, dev.utilization_gpu)
            if dev.utilization_gpu is not None:
                put(
                    "tf_gpu_usage_compute_tflops",
                    "GPU compute in use, TFLOPs",
                    gl,
                    dev.utilization_gpu * cap_tflops / 100,
                )
            put("tf_gpu_usage_power_usage", "GPU power draw, watts", gl, dev.power_w)
            put("tf_gpu_usage_temperature", "GPU temperature, Celsius", gl, dev.temperature_c)

        for gpu in sorted(a.state.gpus.values(), key=lambda g: g.index):
            ml = {"gpu": gpu.uid, "node": gpu.node, "pool": pool, "gpu_model": gpu.model, "phase": gpu.phase.value}
            cap, avail = gpu.capacity, gpu.available
            alloc_t = cap.tflops - avail.tflops
            alloc_v = cap.vram - avail.vram
            put("tf_gpu_metrics_capacity_tflops", "GPU capacity, TFLOPs", ml, cap.tflops)
            put("tf_gpu_metrics_available_tflops", "GPU TFLOPs not allocated", ml, avail.tflops)
            put("tf_gpu_metrics_allocated_tflops", "GPU TFLOPs allocated", ml, alloc_t)
            put(
                "tf_gpu_metrics_allocated_tflops_percent",
                "GPU TFLOPs allocated, percent",
                ml,
                100.0 * alloc_t / cap.tflops if cap.tflops else None,
            )
            put("tf_gpu_metrics_capacity_vram_bytes", "GPU VRAM capacity, bytes", ml, cap.vram)
            put("tf_gpu_metrics_available_vram_bytes", "GPU VRAM not allocated, bytes", ml, avail.vram)
            put("tf_gpu_metrics_allocated_vram_bytes", "GPU VRAM allocated, bytes", ml, alloc_v)
            put(
                "tf_gpu_metrics_allocated_vram_percent",
                "GPU VRAM allocated, percent",
                ml,
                100.0 * alloc_v / cap.vram if cap.vram else None,
            )

        for uid, tr in a.tracked.items():
            w = tr.worker
            spec = w.spec
            rl = {
                "namespace": w.namespace,
                "pool": spec.pool,
                "qos": spec.qos.value,
                "worker": w.name,
                "workload": spec.workload,
            }
            # What is booked now (after any autoscaler resize), else what the annotations ask for.
            alloc = a.state.allocations.get(uid)
            req = alloc.request if alloc is not None else w.request()
            put("tf_worker_resources_gpu_count", "GPUs per worker", rl, req.gpu_count)
            put("tf_worker_resources_tflops_request", "TFLOPs request per GPU", rl, req.request.tflops)
            put("tf_worker_resources_tflops_limit", "TFLOPs limit per GPU", rl, req.limit.tflops)
            put("tf_worker_resources_vram_bytes_request", "VRAM request per GPU, bytes", rl, req.request.vram)
            put("tf_worker_resources_vram_bytes_limit", "VRAM limit per GPU, bytes", rl, req.limit.vram)
            use = a.usage.get(uid)
            if use is None or tr.phase is not WorkerPhase.RUNNING:
                continue
            for gpu_id in sorted(use.memory):
                gpu = a.state.gpus.get(gpu_id)
                if gpu is None:
                    continue
                wl = {
                    "uuid": gpu_id,
                    "node": node,
                    "pool": pool,
                    "pod_name": w.name,
                    "namespace": w.namespace,
                    "workload": spec.workload,
                    "worker": w.name,
                }
                mem = use.memory[gpu_id]
                vram_limit = spec.limit.vram or gpu.capacity.vram
                put("tf_worker_usage_memory_bytes", "worker GPU memory, bytes", wl, mem)
                put(
                    "tf_worker_usage_memory_percentage",
                    "worker GPU memory, percent of its VRAM limit",
                    wl,
                    100.0 * mem / vram_limit if vram_limit else None,
                )
                pct = use.sm_util.get(gpu_id)
                put("tf_worker_usage_compute_percentage", "worker SM utilisation, percent", wl, pct)
                if pct is not None:
                    put("tf_worker_usage_compute_tflops", "worker compute, TFLOPs", wl, pct * gpu.capacity.tflops / 100)
        for (uid, gpu_id), st in sorted(a.limiters.items()):
            ll = {"worker": uid, "uuid": gpu_id}
            put("tf_worker_limiter_rate", "soft limiter token rate, tokens/s", ll, st.rate)
            put("tf_worker_limiter_tokens", "soft limiter bucket level, tokens", ll, st.tokens)
        return list(fams.values())


def make_registry(agent: LiveAgent) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveCollector(agent))
    return registry


def start_exporter(
    agent: LiveAgent, *, addr: str = DEFAULT_ADDR, port: int = DEFAULT_PORT
) -> tuple[Any, threading.Thread]:
    """Serve /metrics in a daemon thread. ``port=0`` picks a free port (``server.server_port``)."""
    server, thread = start_http_server(port, addr=addr, registry=make_registry(agent))
    return server, thread
