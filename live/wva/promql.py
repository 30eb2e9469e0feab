"""WVA's PromQL, written out (``../shared/docs/wva-semantics.md`` 4.2). Pure string builders.

Every query filters on ``model_name="<modelID>", namespace="<ns>"`` as WVA does. Per-pod queries
group like the latest collector, ``max by (instance, pod, llm_d_ai_variant)``. Era A's arrival
query is kept verbatim; WVA multiplies its answer by 60 for requests per minute, the twin's
policies take requests per second, so the answer is used as is.
"""

from __future__ import annotations

from dataclasses import dataclass

POD_GROUP = "instance, pod, llm_d_ai_variant"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(model_id: str, namespace: str) -> str:
    return f'model_name="{_escape(model_id)}",namespace="{_escape(namespace)}"'


def prom_duration(seconds: float) -> str:
    """A PromQL range like ``10m`` or ``90s`` (whole seconds; at least 1 s)."""
    s = max(round(seconds), 1)
    return f"{s // 60}m" if s % 60 == 0 else f"{s}s"


@dataclass(frozen=True)
class ModelQueries:
    """Every query one model's cycle sends, in the order they are sent."""

    model_id: str
    namespace: str
    retention_s: float = 600.0

    @property
    def f(self) -> str:
        return selector(self.model_id, self.namespace)

    # Era A, model level.
    @property
    def arrival(self) -> str:
        return f"sum(rate(vllm:request_success_total{{{self.f}}}[1m]))"

    @property
    def arrival_by_variant(self) -> str:
        return f"sum by (llm_d_ai_variant) (rate(vllm:request_success_total{{{self.f}}}[1m]))"

    def avg_tokens(self, kind: str) -> str:
        """Mean tokens per request over 5 m (``kind`` is ``prompt`` or ``generation``)."""
        m = f"vllm:request_{kind}_tokens"
        return f"sum(rate({m}_sum{{{self.f}}}[5m])) / sum(rate({m}_count{{{self.f}}}[5m]))"

    @property
    def freshness(self) -> str:
        """The newest sample time of the validity series (WVA skips a VA whose series is > 5 min old)."""
        return f"max(timestamp(vllm:request_success_total{{{self.f}}}))"

    # Era C/D, per pod.
    @property
    def kv_usage(self) -> str:
        return f"max by ({POD_GROUP}) (max_over_time(vllm:kv_cache_usage_perc{{{self.f}}}[1m]))"

    @property
    def waiting(self) -> str:
        return f"max by ({POD_GROUP}) (max_over_time(vllm:num_requests_waiting{{{self.f}}}[1m]))"

    @property
    def running(self) -> str:
        return f"max by ({POD_GROUP}) (vllm:num_requests_running{{{self.f}}})"

    @property
    def cache_config(self) -> str:
        return f"max by (pod, num_gpu_blocks, block_size) (vllm:cache_config_info{{{self.f}}})"

    def pod_avg_tokens(self, kind: str) -> str:
        m = f"vllm:request_{kind}_tokens"
        return f"max by (pod) (rate({m}_sum{{{self.f}}}[5m]) / rate({m}_count{{{self.f}}}[5m]))"

    def pod_latency_ms(self, metric: str) -> str:
        """Mean of a vLLM latency histogram per pod over 1 m (``time_to_first_token_seconds``,
        ``inter_token_latency_seconds``); the caller scales seconds to ms."""
        m = f"vllm:{metric}"
        return f"max by (pod) (rate({m}_sum{{{self.f}}}[1m]) / rate({m}_count{{{self.f}}}[1m]))"

    @property
    def pod_dispatch_rate(self) -> str:
        """The EPP's successful dispatches per pod (the queueing-model analyzer's arrival rate)."""
        sel = f'status="success",{self.f}'
        return f"sum by (pod_name, port, namespace) (rate(inference_extension_scheduler_attempts_total{{{sel}}}[1m]))"

    @property
    def prefix_hit_rate(self) -> str:
        """vLLM exports the counters with ``_total``, as every prometheus_client counter."""
        return (
            f"sum(rate(vllm:prefix_cache_hits_total{{{self.f}}}[5m]))"
            f" / sum(rate(vllm:prefix_cache_queries_total{{{self.f}}}[5m]))"
        )

    @property
    def epp_queue_bytes(self) -> str:
        return f'sum(inference_extension_flow_control_queue_bytes{{target_model_name="{_escape(self.model_id)}"}})'

    @property
    def success_in_retention(self) -> str:
        return f"sum(increase(vllm:request_success_total{{{self.f}}}[{prom_duration(self.retention_s)}]))"

    @property
    def epp_queue(self) -> str:
        return f'sum(inference_extension_flow_control_queue_size{{target_model_name="{_escape(self.model_id)}"}})'
