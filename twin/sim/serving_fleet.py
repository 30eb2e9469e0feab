"""The serving simulation on the wall clock, with vLLM's per-pod counters (``twin live fleet``).

No new clock: :class:`WallClockFleet` drives the simulator's own environment with
``env.run(until=...)`` in small wall-clock increments, ``speed`` simulated seconds per wall second.
It keeps, per pod, what vLLM accumulates (request counts, token counts, latency histograms with
vLLM's buckets) so an adapter can serve each ready pod's ``/metrics`` (``live.wva.pods``).
Every public read takes ``lock``.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twin.errors import TwinInputError
from twin.policy.serving.autoscalers import Autoscaler
from twin.policy.serving.observation import ModelObservation
from twin.policy.serving.saturation import BYTES_PER_TOKEN
from twin.sim.serving import Replica, ServingConfig, ServingSim, _Seq
from twin.sim.serving_traffic import Trace

# vLLM's bucket boundaries (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
E2E_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
    960.0, 1920.0, 7680.0,
)  # fmt: skip


def buckets_1_2_5(max_value: int) -> tuple[float, ...]:
    """vLLM's ``build_1_2_5_buckets(max_model_len)`` for the token-count histograms."""
    out: list[float] = []
    exp = 0
    while True:
        for m in (1, 2, 5):
            v = m * 10**exp
            if v > max_value:
                return tuple(out)
            out.append(float(v))
        exp += 1


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.total += value * times
        self.n += times

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, cumulative count) per bucket, ``inf`` last, as Prometheus buckets are."""
        out: list[tuple[float, int]] = []
        acc = 0
        for bound, c in zip(self.bounds, self.counts, strict=False):
            acc += c
            out.append((bound, acc))
        out.append((float("inf"), self.n))
        return out


@dataclass
class PodCounters:
    """What vLLM accumulates per engine over a pod's life."""

    max_model_len: int = 32768
    success: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(E2E_BUCKETS))
    prompt_hist: Histogram = field(init=False)
    gen_hist: Histogram = field(init=False)

    def __post_init__(self) -> None:
        self.prompt_hist = Histogram(buckets_1_2_5(self.max_model_len))
        self.gen_hist = Histogram(buckets_1_2_5(self.max_model_len))

    def observe(self, inp: int, out: int, ttft_s: float, itl_s: float | None, e2e_s: float) -> None:
        self.success += 1
        self.prompt_tokens += inp
        self.generation_tokens += out
        self.prompt_hist.observe(inp)
        self.gen_hist.observe(out)
        self.ttft.observe(ttft_s)
        if itl_s is not None:
            # vLLM observes every inter-token gap; the simulator knows their mean, one per later token.
            self.itl.observe(itl_s, out - 1)
        self.e2e.observe(e2e_s)


@dataclass(frozen=True)
class PodView:
    """One ready pod at one instant: its gauges (read now) and its counters (live object)."""

    name: str
    variant: str
    running: int
    waiting: int
    kv_usage: float
    num_gpu_blocks: int
    block_size: int
    expose_cache_config: bool
    counters: PodCounters
    prefix_queries: int = 0  # prefix-cache lookups (requests) since the pod started
    prefix_hits: int = 0


class FleetSim(ServingSim):
    """The serving simulator keeping vLLM's per-pod counters as requests complete."""

    def __init__(self, *args: Any, max_model_len: int = 32768, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_model_len = max_model_len
        self.pod_counters: dict[str, PodCounters] = {}

    def counters(self, pod: str) -> PodCounters:
        c = self.pod_counters.get(pod)
        if c is None:
            c = self.pod_counters[pod] = PodCounters(self.max_model_len)
        return c

    def finish_ok(self, seq: _Seq, now: float, variant: str, replica: Replica | None = None) -> None:
        super().finish_ok(seq, now, variant, replica)
        if replica is None:
            return
        i = seq.idx
        itl = float(self.itl[i]) if seq.out > 1 else None
        self.counters(replica.name).observe(seq.inp, seq.out, float(self.ttft[i]), itl, float(self.e2e[i]))


class WallClockFleet:
    """One serving model paced by the wall clock. ``advance(sim_t)`` moves it (tests drive it
    directly); ``run`` paces it until the duration or until ``stop`` is set."""

    def __init__(
        self,
        config: ServingConfig,
        trace: Trace,
        autoscaler: Autoscaler,
        duration_s: float,
        *,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not speed > 0:
            raise TwinInputError("must be > 0", field="speed", value=speed)
        self.config = config
        self.speed = speed
        self.duration_s = duration_s
        self.clock = clock
        self.lock = threading.RLock()
        self.sim = FleetSim(config, trace, autoscaler, duration_s=duration_s)
        self._started = False

    @property
    def model_id(self) -> str:
        return self.config.model_id

    @property
    def namespace(self) -> str:
        return self.config.namespace

    def start(self) -> None:
        with self.lock:
            if not self._started:
                self.sim.start()
                self._started = True
                env = self.sim.env
                while env.peek() == env.now:  # the initial pods come up at t=0
                    env.step()

    def advance(self, sim_t: float) -> None:
        """Run the simulation to ``sim_t`` (capped at the duration)."""
        with self.lock:
            self.start()
            target = min(sim_t, self.duration_s)
            if target > self.sim.env.now:
                self.sim.env.run(until=target)

    @property
    def now(self) -> float:
        with self.lock:
            return float(self.sim.env.now)

    def run(self, stop: threading.Event, tick_s: float = 0.1, on_tick: Callable[[float], None] | None = None) -> None:
        """Pace the simulation by the wall clock until its duration, or until ``stop`` is set."""
        self.start()
        t0 = self.clock()
        while not stop.is_set():
            sim_t = min((self.clock() - t0) * self.speed, self.duration_s)
            self.advance(sim_t)
            if on_tick is not None:
                on_tick(sim_t)
            if sim_t >= self.duration_s:
                return
            stop.wait(tick_s)

    def observe(self) -> ModelObservation:
        """What the simulator itself would hand its autoscaler now (for parity checks)."""
        with self.lock:
            return self.sim.observe()

    def epp_queue(self) -> tuple[int, float]:
        """The EPP's flow-control queue now (requests, prompt bytes), counted as ``observe`` counts it."""
        with self.lock:
            q = self.sim.epp_queue
            return len(q), BYTES_PER_TOKEN * sum(seq.inp for seq in q)

    def ready_pods(self) -> dict[str, str]:
        """Ready pod name -> variant, in variant then creation order (what the Service's endpoints list)."""
        with self.lock:
            return {
                r.name: r.variant.name
                for n in sorted(self.sim.replicas)
                for r in self.sim.replicas[n]
                if r.state == "ready"
            }

    def pod(self, name: str) -> PodView | None:
        """The pod's metrics now, or None once it is gone or not ready."""
        with self.lock:
            rep = next((r for rs in self.sim.replicas.values() for r in rs if r.name == name), None)
            if rep is None or rep.state != "ready":
                return None
            e = rep.cfg
            return PodView(
                name=name,
                variant=rep.variant.name,
                running=len(rep.running),
                waiting=len(rep.waiting),
                kv_usage=rep.kv_usage(),
                num_gpu_blocks=e.num_gpu_blocks,
                block_size=e.block_size,
                expose_cache_config=e.expose_cache_config,
                counters=self.sim.counters(name),
                prefix_queries=rep.prefix_lookups,
                prefix_hits=rep.prefix_hits,
            )
