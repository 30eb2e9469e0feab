"""One vLLM pod's ``/metrics`` text: vLLM's metric names, types, labels and buckets.

vLLM (V1 engine) exports through prometheus_client, so the text here is produced the same way.
Every series carries ``model_name`` and ``engine`` like vLLM's; ``namespace`` and ``pod`` are not
in vLLM's output (Prometheus adds them from service discovery, see ``live.wva.pods``).
The pod's data comes through the :class:`PodData` protocol (the wall-clock fleet provides it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector


class HistogramData(Protocol):
    @property
    def total(self) -> float: ...

    def cumulative(self) -> Sequence[tuple[float, int]]: ...


class CounterData(Protocol):
    @property
    def success(self) -> int: ...

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def generation_tokens(self) -> int: ...

    @property
    def ttft(self) -> HistogramData: ...

    @property
    def itl(self) -> HistogramData: ...

    @property
    def e2e(self) -> HistogramData: ...

    @property
    def prompt_hist(self) -> HistogramData: ...

    @property
    def gen_hist(self) -> HistogramData: ...


class PodData(Protocol):
    @property
    def running(self) -> int: ...

    @property
    def waiting(self) -> int: ...

    @property
    def kv_usage(self) -> float: ...

    @property
    def num_gpu_blocks(self) -> int: ...

    @property
    def block_size(self) -> int: ...

    @property
    def expose_cache_config(self) -> bool: ...

    @property
    def counters(self) -> CounterData: ...

    @property
    def prefix_queries(self) -> int: ...

    @property
    def prefix_hits(self) -> int: ...


Family = GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily


def _buckets(h: HistogramData) -> list[tuple[str, float]]:
    return [("+Inf" if b == float("inf") else repr(float(b)), float(c)) for b, c in h.cumulative()]


def pod_families(model_name: str, p: PodData) -> list[Family]:
    """Every family one pod exposes (call under the fleet's lock: counters are live objects)."""
    labels = ["model_name", "engine"]
    values = [model_name, "0"]
    out: list[Family] = []

    def gauge(name: str, doc: str, v: float) -> None:
        fam = GaugeMetricFamily(name, doc, labels=labels)
        fam.add_metric(values, v)
        out.append(fam)

    def counter(name: str, doc: str, v: float) -> None:
        fam = CounterMetricFamily(name, doc, labels=labels)
        fam.add_metric(values, v)
        out.append(fam)

    def hist(name: str, doc: str, h: HistogramData) -> None:
        fam = HistogramMetricFamily(name, doc, labels=labels)
        fam.add_metric(values, _buckets(h), h.total)
        out.append(fam)

    c = p.counters
    gauge("vllm:num_requests_running", "Number of requests in model execution batches.", p.running)
    gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", p.waiting)
    gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", p.kv_usage)
    if p.expose_cache_config:
        info = GaugeMetricFamily(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            labels=["block_size", "engine", "model_name", "num_gpu_blocks"],
        )
        # model_name too, so WVA's model selector finds it (docs/live-wva.md).
        info.add_metric([str(p.block_size), "0", model_name, str(p.num_gpu_blocks)], 1.0)
        out.append(info)
    success = CounterMetricFamily(
        "vllm:request_success", "Count of successfully processed requests.", labels=[*labels, "finished_reason"]
    )
    success.add_metric([*values, "length"], float(c.success))
    out.append(success)
    counter("vllm:prompt_tokens", "Number of prefill tokens processed.", float(c.prompt_tokens))
    counter("vllm:generation_tokens", "Number of generation tokens processed.", float(c.generation_tokens))
    # vLLM counts prefix-cache queries and hits in tokens; the simulator counts lookups (requests),
    # which is also what its own hit rate divides. The ratio of the two rates is what WVA reads.
    counter("vllm:prefix_cache_queries", "Prefix cache queries.", float(p.prefix_queries))
    counter("vllm:prefix_cache_hits", "Prefix cache hits.", float(p.prefix_hits))
    hist("vllm:request_prompt_tokens", "Number of prefill tokens processed.", c.prompt_hist)
    hist("vllm:request_generation_tokens", "Number of generation tokens processed.", c.gen_hist)
    hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", c.ttft)
    hist("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", c.itl)
    hist("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", c.itl)
    hist("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", c.e2e)
    return out


class VllmPodCollector(Collector):
    """Renders one pod per scrape; ``read`` returns its families now, or [] once the pod is gone."""

    def __init__(self, read: Callable[[], list[Family]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Family]:
        yield from self.read()
