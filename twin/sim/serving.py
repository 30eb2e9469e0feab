"""A SimPy model of vLLM-like serving replicas under a WVA/HPA closed loop.

Each replica runs vLLM's continuous batching: up to ``max_num_seqs`` sequences, a per-step token
budget ``max_num_batched_tokens`` shared by decodes (one token each) and chunked prefills, and a KV
cache of ``num_gpu_blocks`` blocks of ``block_size`` tokens. A step with ``t`` scheduled tokens over
sequences holding ``c`` KV tokens takes ``alpha + beta*t + gamma*c`` ms (the accelerator's WVA
parameters: per-iteration overhead, compute per token, KV memory access per token), or, when the
engine has a step-time model (``EngineConfig.step``, from the model's architecture and the GPU),
what that model says. ``kv_on_demand`` and ``prefix_caching`` select vLLM v1's KV policy (blocks
taken as tokens are computed, preemption of the newest request, cached prefixes).

Efficiency: the replica does not tick per token. Steps with prefill run one at a time; a run of
pure-decode steps (fixed batch, context growing by one token per sequence per step) is advanced
in closed form to the next completion, and cut short at a step boundary when a request arrives.

Around the replicas: a router (round robin or least loaded), pod start-up delay, a Prometheus-like
scrape of the series WVA reads, the chosen autoscaler at its interval, and the HPA (or KEDA)
turning its output into replicas. Replicas are placed by a :class:`ReplicaPlacer` (the seam to the
GPU pool's placement policy).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

import numpy as np
import simpy

from twin.errors import TwinInputError
from twin.policy.cycle import PREEMPTED_BY
from twin.policy.serving.autoscalers import Autoscaler
from twin.policy.serving.hpa import HPAController, HPASpec, KedaScaler, MetricSignal
from twin.policy.serving.inferno import AcceleratorPerf
from twin.policy.serving.observation import ModelObservation, ReplicaMetrics, VariantInfo
from twin.policy.serving.queue_model import SizeTargets
from twin.policy.serving.saturation import BYTES_PER_TOKEN
from twin.policy.serving.step_model import BatchShape, StepModel, chunk_attention_pairs
from twin.sim.kernel import new_environment
from twin.sim.serving_traffic import Trace

# Request status codes in the result arrays.
PENDING, DONE, TIMEOUT, REJECTED = 0, 1, 2, 3
WVA_SCALE_FROM_ZERO_DELAY_S = 0.1  # the scale-from-zero engine polls every 100 ms


@dataclass(frozen=True)
class EngineConfig:
    """One vLLM engine on one accelerator (per replica)."""

    alpha_ms: float
    beta_ms: float
    gamma_ms: float
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    num_gpu_blocks: int = 4096
    block_size: int = 16
    max_waiting: int = 1000  # llm-d-inference-sim's waiting-queue limit; beyond it requests are rejected
    expose_cache_config: bool = True  # vllm:cache_config_info present (False mimics the inference simulator)
    # A step-time model from the architecture and the GPU replaces alpha/beta/gamma when given.
    step: StepModel | None = None
    # vLLM v1's KV policy: blocks allocated as tokens are computed, the newest request preempted
    # (recomputed later) when the cache is full. False: reserve prompt + output at admission.
    kv_on_demand: bool = False
    # Automatic prefix caching: a request whose shared prefix is cached skips computing it, and a
    # preempted request's blocks stay cached, so resuming it recomputes only its last token.
    prefix_caching: bool = False
    # Data-parallel ranks of an MoE model with expert parallelism step together: vLLM pads every rank
    # to the largest rank's tokens and the MoE layers exchange tokens, so a step lasts the slowest's.
    dp_lockstep: bool = False
    # vLLM's async scheduling (on by default in 0.19): step k+1 is prepared while step k runs, so a
    # request arriving during step k is first scheduled in step k+2 (at idle, at once).
    async_scheduling: bool = False


@dataclass(frozen=True)
class VariantConfig:
    name: str
    engine: EngineConfig
    accelerator: str = "H100"
    cost: float = 10.0  # per replica-hour, and WVA's variant cost
    initial_replicas: int = 1
    min_replicas: int = 1
    max_replicas: int = 10
    startup_s: float = 65.0
    gpus_per_replica: int = 1
    perf: AcceleratorPerf | None = None  # model-based autoscaler: defaults to the engine's parameters


@dataclass(frozen=True)
class ServingConfig:
    model_id: str
    variants: tuple[VariantConfig, ...]
    namespace: str = "default"
    slo_ttft_ms: float = 1000.0
    slo_itl_ms: float = 50.0
    router: str = "least-loaded"
    scrape_interval_s: float = 15.0
    request_timeout_s: float = 60.0
    hpa: HPASpec = field(default_factory=HPASpec)
    keda: bool = False
    scale_to_zero: bool = False
    retention_s: float = 600.0
    timeline_step_s: float = 15.0


class ReplicaPlacer(Protocol):
    """Where a replica's vGPU worker lands. ``place`` returns a location, or None when the pool is full."""

    def place(self, replica_id: str, variant: str, gpus: int) -> str | None: ...

    def release(self, replica_id: str) -> None: ...


class ReplicaPods(Protocol):
    """Replicas as pods of a simulated GPU pool (twin.sim.serving_pool): a replica is created pending
    and the pool binds it later, or never; it may be evicted (pending again) and its speed follows
    the share of its GPUs it receives. The pool calls back :meth:`ServingSim.replica_bound`,
    :meth:`ServingSim.replica_evicted`, :meth:`ServingSim.replica_lost` and :meth:`Replica.set_stretch`."""

    def create(self, rep: Replica) -> None: ...

    def delete(self, rep: Replica) -> None: ...


class UnboundedPlacer:
    """A pool with room for every replica (the default when no cluster is modelled)."""

    def place(self, replica_id: str, variant: str, gpus: int) -> str | None:
        return "pool"

    def release(self, replica_id: str) -> None:
        return None


class _Seq:
    __slots__ = ("first_token", "generated", "idx", "inp", "out", "prefill_left", "prefix", "prefix_len", "recompute")

    def __init__(self, idx: int, inp: int, out: int, prefix: int = -1, prefix_len: int = 0) -> None:
        self.idx = idx
        self.inp = inp
        self.out = out
        self.prefill_left = inp
        self.generated = 0
        self.first_token = -1.0
        self.recompute = 0  # generated tokens to prefill again after a preemption
        self.prefix = prefix  # shared-prefix id, -1 for none
        self.prefix_len = prefix_len

    @property
    def prompt(self) -> int:
        """Tokens this sequence prefills: its prompt, plus what it had generated when preempted."""
        return self.inp + self.recompute


class Replica:
    """One vLLM pod: a SimPy process stepping its batch."""

    def __init__(self, sim: ServingSim, variant: VariantConfig, name: str) -> None:
        self.sim = sim
        self.env = sim.env
        self.variant = variant
        self.cfg = variant.engine
        self.name = name
        # pending (pool mode: waiting for GPUs) -> starting -> ready -> draining -> gone
        self.state = "starting"
        self.created = sim.env.now
        self.ready_now = False  # an initial replica bound at once is up when the run starts
        self.stretch = 1.0  # step time multiplier: 1 / the share of its GPUs it receives (pool mode)
        self.evictions = 0
        self._proc: simpy.Process | None = None
        self._step_at = (0.0, 0.0)  # (start s, ms) of the step (or decode run's first step) in progress
        self.busy_s = 0.0  # seconds spent stepping (pool mode: its compute demand is the busy fraction)
        self._busy_from: float | None = None
        self.running: list[_Seq] = []
        self.waiting: deque[_Seq] = deque()
        self.reserved_blocks = 0
        self.usable_blocks = self.cfg.num_gpu_blocks
        self._wake: simpy.Event | None = None
        self.location: str | None = None
        self.step_ms_now = 0.0  # the step it runs now (0 idle): DP lockstep peers wait for it
        self.assumed_ms = 0.0  # the per-step time its current decode epoch was planned with
        # Prefix cache: prefix id -> blocks, least recently used first; lookups and hits for the hit rate.
        self.prefix_cache: OrderedDict[int, int] = OrderedDict()
        self.prefix_lookups = 0
        self.prefix_hits = 0
        # The pool-wide worker id: models in different namespaces may reuse variant names.
        self.uid = f"{sim.config.namespace}/{name}"

    # ---------------------------------------------------------------- observation

    def kv_usage(self) -> float:
        bs = self.cfg.block_size
        used = sum(-(-(s.prompt - s.prefill_left + s.generated - s.recompute) // bs) for s in self.running)
        return used / self.cfg.num_gpu_blocks

    def load(self) -> int:
        return len(self.running) + len(self.waiting)

    def metrics_now(self) -> tuple[float, float, float]:
        """What a scrape of its /metrics reads now: running, waiting, KV cache usage."""
        return len(self.running), len(self.waiting), self.kv_usage()

    def busy_seconds(self) -> float:
        """Seconds spent stepping so far (a step in progress counts up to now)."""
        since = self._busy_from
        return self.busy_s + (self.env.now - since if since is not None else 0.0)

    def _idle(self) -> None:
        if self._busy_from is not None:
            self.busy_s += self.env.now - self._busy_from
            self._busy_from = None

    # ---------------------------------------------------------------- lifecycle

    def start(self, ready_now: bool) -> None:
        self._proc = self.env.process(self._run(ready_now))

    def stop(self) -> list[_Seq]:
        """Killed (its pod was evicted): the process ends at once; returns the requests it held,
        reset to be computed again from their prompt."""
        proc = self._proc
        self._proc = None
        self._idle()
        if proc is not None and proc.is_alive and proc is not self.env.active_process:
            proc.interrupt("evicted")
        held = [*self.running, *self.waiting]
        self.running = []
        self.waiting.clear()
        self.reserved_blocks = 0
        self.prefix_cache.clear()
        self.step_ms_now = 0.0
        self.assumed_ms = 0.0
        self._wake = None
        for s in held:
            s.prefill_left = s.inp
            s.generated = 0
            s.recompute = 0
        return held

    def set_stretch(self, stretch: float) -> None:
        """The share of its GPUs changed (pool mode): steps from now take ``stretch`` times their
        whole-GPU time; a decode run planned with the old speed re-plans after its step in progress."""
        if stretch == self.stretch:
            return
        self.stretch = stretch
        wake = self._wake
        if wake is not None and not wake.triggered and self.assumed_ms > 0:
            wake.succeed()

    def enqueue(self, seq: _Seq) -> None:
        if self.cfg.async_scheduling and self.running:
            start, ms = self._step_at
            if ms > 0:
                # The step after the one in progress was prepared already: it joins at that one's end.
                # A decode run's boundaries are taken at its first step's length.
                k = math.floor((self.env.now - start) * 1000.0 / ms)
                boundary = start + (k + 1) * ms / 1000.0
                if boundary > self.env.now:
                    ev = self.env.timeout(boundary - self.env.now, seq)
                    ev.callbacks.append(self._deferred_enqueue)
                    return
        self._enqueue_now(seq)

    def _deferred_enqueue(self, ev: simpy.Event) -> None:
        seq = cast(_Seq, ev.value)
        if self._proc is not None or self.sim.pods is None:
            self._enqueue_now(seq)
        else:  # evicted meanwhile: back to the router
            self.sim._route(seq)

    def _enqueue_now(self, seq: _Seq) -> None:
        self.waiting.append(seq)
        wake = self._wake
        if wake is not None and not wake.triggered and len(self.running) < self.cfg.max_num_seqs:
            wake.succeed()

    def drain(self) -> None:
        """Stop taking requests; finish what is queued and running, then go (graceful shutdown)."""
        if self.state in ("pending", "starting"):
            self.state = "gone"
            self.sim.replica_gone(self)
            return
        self.state = "draining"
        wake = self._wake
        if wake is not None and not wake.triggered:
            wake.succeed()

    def _run(self, ready_now: bool) -> simpy.events.ProcessGenerator:
        try:
            yield from self._serve(ready_now)
        except simpy.Interrupt:
            return  # evicted: stop() already took its requests back

    def _serve(self, ready_now: bool) -> simpy.events.ProcessGenerator:
        if not ready_now:
            yield self.env.timeout(self.variant.startup_s)
            if self.state == "gone":
                return
        self.state = "ready"
        self.sim.replica_ready(self)
        cfg = self.cfg
        alpha, beta, gamma = cfg.alpha_ms, cfg.beta_ms, cfg.gamma_ms
        while True:
            self._admit()
            if cfg.kv_on_demand:
                self._preempt_for_space()
            if not self.running:
                if self.state == "draining" and not self.waiting:
                    self._idle()
                    self.state = "gone"
                    self.sim.replica_gone(self)
                    return
                self._set_step(0.0)
                self._idle()
                self._wake = self.env.event()
                yield self._wake
                self._wake = None
                continue
            if self._busy_from is None:
                self._busy_from = self.env.now
            if any(s.prefill_left > 0 for s in self.running):
                yield from self._mixed_step(alpha, beta, gamma)
                continue
            yield from self._decode_epoch(alpha, beta, gamma)

    def _admit(self) -> None:
        cfg = self.cfg
        now = self.env.now
        timeout = self.sim.config.request_timeout_s
        bs = cfg.block_size
        if cfg.kv_on_demand:
            self.reserved_blocks = self._kv_need()
        while self.waiting and len(self.running) < cfg.max_num_seqs:
            seq = self.waiting[0]
            if now - self.sim.arrival[seq.idx] > timeout:
                self.waiting.popleft()
                self.sim.finish_error(seq, TIMEOUT)
                continue
            # On demand, vLLM reserves the whole prompt (scheduler_reserve_full_isl); else prompt + output.
            blocks = -(-(seq.prompt if cfg.kv_on_demand else seq.inp + seq.out) // bs)
            if self.reserved_blocks + blocks > self.usable_blocks:
                break  # FCFS: the head waits for KV space
            self.waiting.popleft()
            self.reserved_blocks += blocks
            self.running.append(seq)
            if cfg.prefix_caching and seq.prefix >= 0 and seq.generated == 0:
                self._lookup_prefix(seq)

    def _lookup_prefix(self, seq: _Seq) -> None:
        """A cached prefix's whole blocks are not computed again (vLLM keeps at least one prompt token to run)."""
        self.prefix_lookups += 1
        if seq.prefix in self.prefix_cache:
            self.prefix_hits += 1
            self.prefix_cache.move_to_end(seq.prefix)
            bs = self.cfg.block_size
            cached = min(seq.prefix_len // bs * bs, seq.prefill_left - 1)
            seq.prefill_left -= max(cached, 0)

    def _cache_prefix(self, seq: _Seq) -> None:
        """After its prefill a request's prefix blocks are cached; the least recently used go when the
        cache outgrows the blocks no running request holds."""
        blocks = seq.prefix_len // self.cfg.block_size
        if blocks <= 0:
            return
        self.prefix_cache[seq.prefix] = blocks
        self.prefix_cache.move_to_end(seq.prefix)
        free = self.usable_blocks - (self._kv_need() if self.cfg.kv_on_demand else self.reserved_blocks)
        while self.prefix_cache and sum(self.prefix_cache.values()) > free:
            self.prefix_cache.popitem(last=False)

    def _kv_need(self, extra: int = 0) -> int:
        """Blocks the running batch needs for its next step (plus ``extra`` decode steps)."""
        bs = self.cfg.block_size
        return sum(
            -(-s.prompt // bs) if s.prefill_left > 0 else -(-(s.inp + s.generated + extra) // bs) for s in self.running
        )

    def _preempt_for_space(self) -> None:
        """vLLM v1: when the next step's blocks do not fit, preempt the newest running request (recompute)."""
        while len(self.running) > 1 and self._kv_need() > self.usable_blocks:
            s = self.running.pop()
            # Tokens whose KV it had computed: its blocks stay in the prefix cache when caching is on.
            computed = s.prompt - s.prefill_left if s.prefill_left > 0 else s.inp + s.generated - 1
            s.recompute = s.generated
            s.prefill_left = max(s.prompt - computed, 1) if self.cfg.prefix_caching else s.prompt
            self.waiting.appendleft(s)

    def _mixed_step(self, alpha: float, beta: float, gamma: float) -> simpy.events.ProcessGenerator:
        budget = self.cfg.max_num_batched_tokens
        decodes = [s for s in self.running if s.prefill_left == 0]
        tokens = len(decodes)
        ctx = decode_ctx = sum(s.inp + s.generated + 1 for s in decodes)
        left = budget - tokens
        chunks: list[tuple[_Seq, int]] = []
        pairs, cached, done = 0.0, 0, 0
        for s in self.running:
            if s.prefill_left > 0 and left > 0:
                chunk = min(s.prefill_left, left)
                start = s.prompt - s.prefill_left
                left -= chunk
                tokens += chunk
                ctx += start + chunk
                pairs += chunk_attention_pairs(start, chunk)
                cached += start
                done += chunk == s.prefill_left
                chunks.append((s, chunk))
        step = self.cfg.step
        if step is None:
            ms = alpha + beta * tokens + gamma * ctx
        else:
            n = len(decodes)
            ms = step.step_ms(BatchShape(tokens - n, pairs, cached, done, n, decode_ctx))
        yield self.env.timeout(self._lockstep(ms * self.stretch) / 1000.0)
        now = self.env.now
        for s in decodes:
            s.generated += 1
        for s, chunk in chunks:
            s.prefill_left -= chunk
            if s.prefill_left == 0:
                s.generated += 1  # the prefill step emits the (next) token
                if s.first_token < 0:
                    s.first_token = now
                if self.cfg.prefix_caching and s.prefix >= 0:
                    self._cache_prefix(s)
        self._finish_done(now)

    def _decode_epoch(self, alpha: float, beta: float, gamma: float) -> simpy.events.ProcessGenerator:
        run = self.running
        n = len(run)
        m = min(s.out - s.generated for s in run)
        c0 = sum(s.inp + s.generated for s in run)
        if self.cfg.kv_on_demand:
            m = min(m, self._decode_steps_that_fit(m))
        step = self.cfg.step
        if step is None:
            a = alpha + beta * n + gamma * (c0 + n)  # first step: each sequence reads its context plus the new token
            g = gamma * n  # the context grows by n tokens per step
        else:
            # Linear in the context within a regime: the first step and the growth per step.
            a = step.step_ms(BatchShape(decode_seqs=n, decode_ctx=c0 + n))
            g = max(step.step_ms(BatchShape(decode_seqs=n, decode_ctx=c0 + 2 * n)) - a, 0.0)
        a, g = a * self.stretch, g * self.stretch
        a = self.assumed_ms = self._lockstep(a)

        def elapsed_ms(k: int) -> float:
            return k * a + g * k * (k - 1) / 2.0

        start = self.env.now
        can_admit = len(run) < self.cfg.max_num_seqs and self.state != "draining"
        # Lockstep peers, or a pool that changes its speed, may make it re-plan.
        if (can_admit and not self.waiting) or self.cfg.dp_lockstep or self.sim.pods is not None:
            self._wake = self.env.event()
            yield self.env.timeout(elapsed_ms(m) / 1000.0) | self._wake
            woke = self._wake.triggered
            self._wake = None
        else:
            yield self.env.timeout(elapsed_ms(m) / 1000.0)
            woke = False
        steps = m
        if woke:
            done_ms = (self.env.now - start) * 1000.0
            k = _steps_within(a, g, done_ms)
            steps = min(k + 1, m)  # finish the step in progress, then admit
            rest = elapsed_ms(steps) / 1000.0 - (self.env.now - start)
            if rest > 0:
                yield self.env.timeout(rest)
        self.assumed_ms = 0.0
        for s in run:
            s.generated += steps
        self._finish_done(self.env.now)

    # ---------------------------------------------------------------- DP lockstep

    def _peers(self) -> list[Replica]:
        return [r for r in self.sim.replicas[self.variant.name] if r is not self and r.state == "ready"]

    def _set_step(self, own_ms: float) -> None:
        """Record the step this rank runs now; with lockstep, a peer whose decode epoch was planned with a
        per-step time more than 5 % off the group's new slowest re-plans after its step in progress."""
        self.step_ms_now = own_ms
        if not self.cfg.dp_lockstep:
            return
        for p in self._peers():
            w = p._wake
            if w is None or w.triggered or p.assumed_ms <= 0:
                continue
            target = max([p.step_ms_now, *(q.step_ms_now for q in p._peers())])
            if abs(p.assumed_ms - target) > 0.05 * p.assumed_ms:
                w.succeed()

    def _lockstep(self, own_ms: float) -> float:
        """The step's duration: its own, or with lockstep the slowest busy rank's (an idle rank waits for none)."""
        self._set_step(own_ms)
        ms = own_ms if not self.cfg.dp_lockstep else max([own_ms, *(p.step_ms_now for p in self._peers())])
        self._step_at = (self.env.now, ms)
        return ms

    def _decode_steps_that_fit(self, m: int) -> int:
        """How many decode steps (at most ``m``, at least 1) run before the batch outgrows the KV cache."""
        lo, hi = 0, m - 1  # the step at offset 0 fits (preemption made room); find the last offset that does
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._kv_need(mid) <= self.usable_blocks:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def _finish_done(self, now: float) -> None:
        done = [s for s in self.running if s.prefill_left == 0 and s.generated >= s.out]
        if not done:
            return
        bs = self.cfg.block_size
        self.running = [s for s in self.running if not (s.prefill_left == 0 and s.generated >= s.out)]
        for s in done:
            if not self.cfg.kv_on_demand:
                self.reserved_blocks -= -(-(s.inp + s.out) // bs)
            self.sim.finish_ok(s, now, self.variant.name, self)


def _steps_within(a: float, g: float, t: float) -> int:
    """The number of whole decode steps done in ``t`` ms: max k with k*a + g*k*(k-1)/2 <= t."""
    if a <= 0 and g <= 0:
        return 0
    half = g / 2.0
    b = a - half
    # Positive root of half*k^2 + b*k - t = 0 in the form that stays finite when g is tiny;
    # the loops below fix the float rounding of the estimate.
    denom = b + math.sqrt(b * b + 4.0 * half * t)
    k = int(2.0 * t / denom) if denom > 0 else 0
    while k > 0 and k * a + g * k * (k - 1) / 2.0 > t:
        k -= 1
    while (k + 1) * a + g * (k + 1) * k / 2.0 <= t:
        k += 1
    return k


@dataclass
class _Sample:
    t: float
    running: float  # whole requests at request level; the fluid mode's means are fractional
    waiting: float
    kv: float


@dataclass
class ServingResult:
    """Per-request arrays (indexed like the trace) and the replica timelines."""

    arrival: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_s: np.ndarray
    itl_s: np.ndarray
    e2e_s: np.ndarray
    status: np.ndarray
    timeline: list[tuple[float, str, int, int, float]]  # (t, variant, allocated, ready, desired)
    replica_seconds: dict[str, float]
    cost: float
    duration_s: float
    config: ServingConfig
    autoscaler: str
    # Pool mode: (t, variant, pending replicas, mean step stretch of its ready replicas) and the
    # replicas' evictions by reason.
    pool_timeline: tuple[tuple[float, str, int, float], ...] = ()
    evictions: tuple[tuple[str, int], ...] = ()


class ServingSim:
    """One run: a trace through the replicas of one model, under one autoscaler."""

    replica_type: type[Replica] = Replica  # the fluid mode's replicas do not step (twin.sim.serving_fluid)

    def __init__(
        self,
        config: ServingConfig,
        trace: Trace,
        autoscaler: Autoscaler,
        placer: ReplicaPlacer | None = None,
        duration_s: float | None = None,
        env: simpy.Environment | None = None,
        pods: ReplicaPods | None = None,
        autoscaling_active: bool = True,
    ) -> None:
        """``pods`` runs the replicas as pods of a simulated pool (pending, preempted, slowed by
        neighbours); without it ``placer`` places them at once or drops them when the pool is full.
        ``autoscaling_active=False`` is a WVA installation that leaves the model unscaled (no
        controller reconciling it, no HPA, or an HPA whose metric is ``<unknown>``): no desired
        replicas are published and each variant keeps its initial replica count."""
        self.config = config
        self.autoscaling_active = autoscaling_active
        self.pods = pods
        self.trace = trace
        self.autoscaler = autoscaler
        self.placer = placer or UnboundedPlacer()
        self.env = env if env is not None else new_environment()
        n = len(trace)
        self.arrival = trace.arrival_s.astype(float)
        self.duration_s = float(duration_s if duration_s is not None else (trace.arrival_s.max() if n else 0.0))
        self.ttft = np.full(n, np.nan)
        self.itl = np.full(n, np.nan)
        self.e2e = np.full(n, np.nan)
        self.status = np.zeros(n, dtype=np.int8)
        self.variants = {v.name: v for v in config.variants}
        self.replicas: dict[str, list[Replica]] = {v.name: [] for v in config.variants}
        self._counter = 0
        self._rr = 0
        self.epp_queue: deque[_Seq] = deque()
        self.samples: dict[str, deque[_Sample]] = {}
        # Model-level cumulative counters (vllm:request_success_total and token histograms' sum/count).
        self.success_total = 0
        self.prompt_sum = 0.0
        self.gen_sum = 0.0
        self.success_by_variant: dict[str, int] = {v.name: 0 for v in config.variants}
        self.counter_samples: deque[tuple[float, int, float, float]] = deque()
        self.variant_samples: deque[tuple[float, dict[str, int]]] = deque()
        self.desired: dict[str, int] = {}
        self.hpas: dict[str, HPAController | KedaScaler] = {}
        self.timeline: list[tuple[float, str, int, int, float]] = []
        self.replica_seconds: dict[str, float] = {v.name: 0.0 for v in config.variants}
        self._last_accounting = 0.0
        self._allocated: dict[str, int] = {v.name: 0 for v in config.variants}
        self._from_zero_pending = False
        self.evictions: dict[str, int] = {}  # replica evictions by kind: preempted, node-failure, gpu-failure
        self.pool_timeline: list[tuple[float, str, int, float]] = []

    # ---------------------------------------------------------------- replicas

    def _account(self) -> None:
        now = self.env.now
        dt = now - self._last_accounting
        if dt > 0:
            for name, count in self._allocated.items():
                self.replica_seconds[name] += count * dt
        self._last_accounting = now

    def _add_replica(self, variant: VariantConfig, ready_now: bool = False) -> None:
        self._counter += 1
        rep = self.replica_type(self, variant, f"{variant.name}-{self._counter}")
        if self.pods is not None:
            rep.state = "pending"
            rep.ready_now = ready_now
            self.replicas[variant.name].append(rep)
            self.pods.create(rep)  # the pool may bind it at once (replica_bound) or later
            return
        rep.location = self.placer.place(rep.uid, variant.name, variant.gpus_per_replica)
        if rep.location is None:
            return  # the pool is full: the pod stays unschedulable, the HPA will ask again
        self._account()
        self._allocated[variant.name] += 1
        self.replicas[variant.name].append(rep)
        rep.start(ready_now)

    def replica_bound(self, rep: Replica, location: str) -> None:
        """Pool mode: the replica's pod got its GPUs; it starts (an initial replica bound when the run
        starts is up at once, as without a pool)."""
        if rep.state != "pending":
            return
        rep.location = location
        self._account()
        self._allocated[rep.variant.name] += 1
        rep.state = "starting"
        rep.start(rep.ready_now and self.env.now == rep.created)

    def replica_evicted(self, rep: Replica, reason: str) -> None:
        """Pool mode: the pod lost its GPUs (preempted, node or GPU failure) and is pending again. Its
        requests go back to the router and are computed again from their prompt (the gateway retries
        them; a request keeps its arrival time and its first token time if it had one)."""
        kind = "preempted" if reason.startswith(PREEMPTED_BY) else reason  # a fault's kind names itself
        self.evictions[kind] = self.evictions.get(kind, 0) + 1
        rep.evictions += 1
        held = self._unbind(rep)
        if rep.state == "draining":
            rep.state = "gone"
            self._forget(rep)
        else:
            rep.state = "pending"
        for seq in held:
            self._route(seq)
        self._record(rep.variant.name)

    def replica_lost(self, rep: Replica) -> None:
        """Pool mode: the pod ended without being asked to (rejected, OOM-killed): the replica is gone;
        the HPA creates another when it next reconciles."""
        if rep.state == "gone":
            return
        held = self._unbind(rep) if rep.location is not None else []
        rep.state = "gone"
        self.replicas[rep.variant.name] = [r for r in self.replicas[rep.variant.name] if r is not rep]
        self.samples.pop(rep.name, None)
        for seq in held:
            self._route(seq)

    def _unbind(self, rep: Replica) -> list[_Seq]:
        """Pool mode: a bound replica loses its GPUs; returns the requests it held (to route again)."""
        held = rep.stop()
        self._account()
        self._allocated[rep.variant.name] -= 1
        rep.location = None
        self.samples.pop(rep.name, None)
        return held

    def replica_ready(self, rep: Replica) -> None:
        self.samples[rep.name] = deque()
        while self.epp_queue:
            target = self._pick()
            if target is None:
                break
            target.enqueue(self.epp_queue.popleft())

    def replica_gone(self, rep: Replica) -> None:
        if rep.location is not None:
            self._account()
            self._allocated[rep.variant.name] -= 1
        self._forget(rep)

    def _forget(self, rep: Replica) -> None:
        self.replicas[rep.variant.name] = [r for r in self.replicas[rep.variant.name] if r is not rep]
        self.samples.pop(rep.name, None)
        if self.pods is not None:
            self.pods.delete(rep)
        else:
            self.placer.release(rep.uid)

    def spec_replicas(self, variant: str) -> int:
        """The Deployment's replicas: pending pods count (Kubernetes counts them), going ones do not."""
        return sum(1 for r in self.replicas[variant] if r.state in ("pending", "starting", "ready"))

    def pending_replicas(self, variant: str) -> int:
        return sum(1 for r in self.replicas[variant] if r.state == "pending")

    def ready_replicas(self, variant: str) -> int:
        return sum(1 for r in self.replicas[variant] if r.state == "ready")

    def set_replicas(self, variant: str, target: int) -> None:
        current = self.spec_replicas(variant)
        cfg = self.variants[variant]
        for _ in range(target - current):
            self._add_replica(cfg)
        if target < current:
            # Kubernetes deletes unscheduled pods first, then not-ready ones, then the newest.
            pending = [r for r in self.replicas[variant] if r.state == "pending"][::-1]
            starting = [r for r in self.replicas[variant] if r.state == "starting"][::-1]
            ready = [r for r in self.replicas[variant] if r.state == "ready"][::-1]
            for rep in (pending + starting + ready)[: current - target]:
                rep.drain()
        self._record(variant)

    def _record(self, variant: str) -> None:
        self.timeline.append(
            (
                self.env.now,
                variant,
                self._allocated[variant],
                self.ready_replicas(variant),
                float(self.desired.get(variant, -1)),
            )
        )
        if self.pods is not None:
            ready = [r.stretch for r in self.replicas[variant] if r.state == "ready"]
            stretch = sum(ready) / len(ready) if ready else float("nan")
            self.pool_timeline.append((self.env.now, variant, self.pending_replicas(variant), stretch))

    # ---------------------------------------------------------------- requests

    def _ready(self) -> list[Replica]:
        return [r for name in sorted(self.replicas) for r in self.replicas[name] if r.state == "ready"]

    def _pick(self) -> Replica | None:
        ready = self._ready()
        if not ready:
            return None
        if self.config.router == "round-robin":
            self._rr += 1
            return ready[self._rr % len(ready)]
        # Least loaded: fewest running + waiting; ties go to the earliest in (variant, creation) order.
        return min(ready, key=lambda r: r.load())

    def _route(self, seq: _Seq) -> None:
        rep = self._pick()
        if rep is None:
            self.epp_queue.append(seq)
            if self.config.scale_to_zero and self.autoscaling_active and not self._from_zero_pending:
                self._from_zero_pending = True
                self.env.process(self._scale_from_zero())
            return
        if (
            -(-(seq.inp + seq.out) // rep.cfg.block_size) > rep.cfg.num_gpu_blocks
            or len(rep.waiting) >= rep.cfg.max_waiting
        ):
            self.finish_error(seq, REJECTED)
            return
        rep.enqueue(seq)

    def finish_ok(self, seq: _Seq, now: float, variant: str, replica: Replica | None = None) -> None:
        """A request completed on ``replica`` (subclasses keep per-pod counters, like vLLM's /metrics)."""
        self.success_by_variant[variant] += 1
        i = seq.idx
        self.status[i] = DONE
        self.ttft[i] = seq.first_token - self.arrival[i]
        self.e2e[i] = now - self.arrival[i]
        if seq.out > 1:
            self.itl[i] = (now - seq.first_token) / (seq.out - 1)
        self.success_total += 1
        self.prompt_sum += seq.inp
        self.gen_sum += seq.out

    def finish_error(self, seq: _Seq, code: int) -> None:
        self.status[seq.idx] = code

    # ---------------------------------------------------------------- processes

    def _arrivals(self) -> simpy.events.ProcessGenerator:
        t = self.trace
        inp, out = t.input_tokens, t.output_tokens
        pid, plen = t.prefix_id, t.prefix_len
        for i in range(len(t)):
            dt = self.arrival[i] - self.env.now
            if dt > 0:
                yield self.env.timeout(dt)
            seq = _Seq(i, int(inp[i]), max(int(out[i]), 1))
            if pid is not None and plen is not None and pid[i] >= 0:
                seq.prefix, seq.prefix_len = int(pid[i]), min(int(plen[i]), seq.inp)
            self._route(seq)

    def _scrape(self) -> simpy.events.ProcessGenerator:
        keep = max(self.config.retention_s, 300.0) + self.config.scrape_interval_s
        while True:
            now = self.env.now
            self._before_scrape()
            for rep in self._ready():
                s = self.samples.setdefault(rep.name, deque())
                s.append(_Sample(now, *rep.metrics_now()))
                while s and s[0].t < now - 120.0:
                    s.popleft()
            cs = self.counter_samples
            cs.append((now, self.success_total, self.prompt_sum, self.gen_sum))
            while cs and cs[0][0] < now - keep:
                cs.popleft()
            vs = self.variant_samples
            vs.append((now, dict(self.success_by_variant)))
            while vs and vs[0][0] < now - 60.0 - self.config.scrape_interval_s:
                vs.popleft()
            yield self.env.timeout(self.config.scrape_interval_s)

    def _before_scrape(self) -> None:
        """Bring the counters up to now before a scrape (the fluid mode closes its window here)."""

    def _counter_delta(self, window: float) -> tuple[float, int, float, float] | None:
        cs = self.counter_samples
        if len(cs) < 2:
            return None
        now_t, s1, p1, g1 = cs[-1]
        base = cs[0]
        for sample in cs:
            if sample[0] >= now_t - window:
                break
            base = sample
        dt = now_t - base[0]
        if dt <= 0:
            return None
        return dt, s1 - base[1], p1 - base[2], g1 - base[3]

    def observe(self) -> ModelObservation:
        """What WVA's PromQL would return now, from the scraped samples."""
        cfg = self.config
        now = self.env.now
        rate_1m = self._counter_delta(60.0)
        tok_5m = self._counter_delta(300.0)
        retention = self._counter_delta(cfg.retention_s)
        arrival = rate_1m[1] / rate_1m[0] if rate_1m else 0.0
        i_avg = tok_5m[2] / tok_5m[1] if tok_5m and tok_5m[1] > 0 else 0.0
        o_avg = tok_5m[3] / tok_5m[1] if tok_5m and tok_5m[1] > 0 else 0.0
        replicas: list[ReplicaMetrics] = []
        for rep in self._ready():
            window = [s for s in self.samples.get(rep.name, ()) if s.t >= now - 60.0]
            if not window:
                continue
            e = rep.cfg
            replicas.append(
                ReplicaMetrics(
                    pod=rep.name,
                    variant=rep.variant.name,
                    kv_usage=max(s.kv for s in window),
                    waiting=float(max(s.waiting for s in window)),
                    running=float(window[-1].running),
                    num_gpu_blocks=e.num_gpu_blocks if e.expose_cache_config else 0,
                    block_size=e.block_size,
                    input_tokens=i_avg,
                    output_tokens=o_avg,
                )
            )
        variants = []
        for v in cfg.variants:
            e = v.engine
            perf = v.perf or AcceleratorPerf(
                v.accelerator, e.alpha_ms, e.beta_ms, e.gamma_ms, acc_count=v.gpus_per_replica, max_batch=e.max_num_seqs
            )
            variants.append(
                VariantInfo(
                    name=v.name,
                    model_id=cfg.model_id,
                    namespace=cfg.namespace,
                    accelerator=v.accelerator,
                    cost=v.cost,
                    current=self.spec_replicas(v.name),
                    ready=self.ready_replicas(v.name),
                    desired=self.desired.get(v.name),
                    min_replicas=v.min_replicas,
                    max_replicas=v.max_replicas,
                    gpus_per_replica=v.gpus_per_replica,
                    max_num_seqs=e.max_num_seqs,
                    max_num_batched_tokens=e.max_num_batched_tokens,
                    kv_cache_tokens=e.num_gpu_blocks * e.block_size if e.expose_cache_config else 0,
                    perf=perf,
                    targets=SizeTargets(ttft_ms=cfg.slo_ttft_ms, itl_ms=cfg.slo_itl_ms),
                )
            )
        return ModelObservation(
            cfg.model_id,
            cfg.namespace,
            tuple(variants),
            tuple(replicas),
            arrival_rate=arrival,
            input_tokens=i_avg,
            output_tokens=o_avg,
            success_in_retention=(retention[1] if retention else None),
            scheduler_queue_size=len(self.epp_queue),
            # The gateway's queue in bytes (4 per prompt token, WVA's own conversion), and the engines'
            # prefix-cache hit rate (0 without shared prefixes or with prefix caching off).
            scheduler_queue_bytes=BYTES_PER_TOKEN * sum(seq.inp for seq in self.epp_queue),
            prefix_cache_hit_rate=self._prefix_hit_rate(),
            variant_arrival=self._variant_rates(),
        )

    def _prefix_hit_rate(self) -> float:
        """Prefix-cache hits over lookups, summed over the ready replicas (since they started)."""
        ready = self._ready()
        lookups = sum(r.prefix_lookups for r in ready)
        return sum(r.prefix_hits for r in ready) / lookups if lookups else 0.0

    def _variant_rates(self) -> dict[str, float]:
        """Per-variant completion rate over the last minute (sum over the variant's pods)."""
        vs = self.variant_samples
        if len(vs) < 2:
            return {}
        now_t, last = vs[-1]
        base_t, base = vs[0]
        for t, counts in vs:
            if t >= now_t - 60.0:
                break
            base_t, base = t, counts
        dt = now_t - base_t
        return {k: (last[k] - base[k]) / dt for k in last} if dt > 0 else {}

    def _autoscaler_loop(self) -> simpy.events.ProcessGenerator:
        while True:
            yield self.env.timeout(self.autoscaler.interval_s)
            self.desired.update(self.autoscaler.decide(self.env.now, self.observe()))

    def _hpa_loop(self) -> simpy.events.ProcessGenerator:
        cfg = self.config
        for v in cfg.variants:
            spec = HPASpec(
                min_replicas=v.min_replicas,
                max_replicas=v.max_replicas,
                behavior=cfg.hpa.behavior,
                tolerance=cfg.hpa.tolerance,
                sync_period_s=cfg.hpa.sync_period_s,
            )
            hpa = HPAController(spec)
            self.hpas[v.name] = KedaScaler(hpa) if cfg.keda else hpa
        while True:
            yield self.env.timeout(cfg.hpa.sync_period_s)
            if not self.autoscaling_active:
                # Nothing scales the Deployment: it keeps its replicas and its ReplicaSet replaces a lost pod.
                for v in cfg.variants:
                    if self.spec_replicas(v.name) != v.initial_replicas:
                        self.set_replicas(v.name, v.initial_replicas)
                continue
            obs = self.observe()
            published = {v.name: self.desired[v.name] for v in cfg.variants if v.name in self.desired}
            signals = self.autoscaler.signals(obs, published)
            for v in cfg.variants:
                sig: list[MetricSignal] = signals.get(v.name, [])
                current = self.spec_replicas(v.name)
                target = self.hpas[v.name].reconcile(self.env.now, current, sig)
                if target != current:
                    self.set_replicas(v.name, target)

    def _scale_from_zero(self) -> simpy.events.ProcessGenerator:
        yield self.env.timeout(WVA_SCALE_FROM_ZERO_DELAY_S)
        self._from_zero_pending = False
        if all(self.spec_replicas(v.name) == 0 for v in self.config.variants) and self.epp_queue:
            for v in self.config.variants:
                self.set_replicas(v.name, 1)

    def _timeline_loop(self) -> simpy.events.ProcessGenerator:
        while True:
            for v in self.config.variants:
                self._record(v.name)
            yield self.env.timeout(self.config.timeline_step_s)

    def run(self, progress: Callable[[float], None] | None = None) -> ServingResult:
        self.start()
        run_until(self.env, self.duration_s, progress)
        return self.finish()

    def start(self) -> None:
        """Create the initial replicas and register the processes (``run`` = start, run the clock, finish)."""
        for v in self.config.variants:
            for _ in range(v.initial_replicas):
                self._add_replica(v, ready_now=True)  # initial pods are up when the run starts
        self.env.process(self._arrivals())
        self.env.process(self._scrape())
        if self.autoscaling_active:  # else no controller publishes a desired count: it stays unset
            self.env.process(self._autoscaler_loop())
        self.env.process(self._hpa_loop())
        self.env.process(self._timeline_loop())

    def finish(self) -> ServingResult:
        """Close the books at the end of the run."""
        self._account()
        # Anything still waiting past its timeout at the end counts as a timeout.
        late = (self.status == PENDING) & (self.duration_s - self.arrival > self.config.request_timeout_s)
        self.status[late] = TIMEOUT
        cost = sum(self.replica_seconds[v.name] / 3600.0 * v.cost for v in self.config.variants)
        return ServingResult(
            self.arrival,
            self.trace.input_tokens,
            self.trace.output_tokens,
            self.ttft,
            self.itl,
            self.e2e,
            self.status,
            self.timeline,
            dict(self.replica_seconds),
            cost,
            self.duration_s,
            self.config,
            self.autoscaler.name,
            tuple(self.pool_timeline),
            tuple(sorted(self.evictions.items())),
        )


def run_until(env: simpy.Environment, duration_s: float, progress: Callable[[float], None] | None = None) -> None:
    """Run the clock to ``duration_s`` in 50 slices, reporting progress after each."""
    step = max(duration_s / 50.0, 1.0)
    t = 0.0
    while t < duration_s:
        t = min(t + step, duration_s)
        env.run(until=t)
        if progress is not None:
            progress(t)


@dataclass(frozen=True)
class ModelRun:
    """One model in a shared-pool run: its config, traffic and autoscaler (one instance per model)."""

    config: ServingConfig
    trace: Trace
    autoscaler: Autoscaler


def run_models(
    models: list[ModelRun],
    duration_s: float,
    progress: Callable[[float], None] | None = None,
) -> dict[str, ServingResult]:
    """Several models on one clock with room for every replica: each ``modelID|namespace`` keeps its
    own replicas, metrics, autoscaler and HPAs (WVA analyses models independently). Results are keyed
    by ``modelID|namespace``. On a GPU pool, where replicas pend and compete with other pods:
    ``twin.sim.serving_pool_run.run_on_pool``."""
    keys = [f"{m.config.model_id}|{m.config.namespace}" for m in models]
    if len(set(keys)) != len(keys):
        raise TwinInputError("each model (modelID|namespace) may appear once", field="models", value=keys)
    env = new_environment()
    sims = [ServingSim(m.config, m.trace, m.autoscaler, None, duration_s, env) for m in models]
    for sim in sims:
        sim.start()
    run_until(env, duration_s, progress)
    return {key: sim.finish() for key, sim in zip(keys, sims, strict=True)}
