"""One replica of the fluid serving model: engine limits, request shape, step function, and what the
model derives from them once (token strata, KV context, batch cap, prefill chunks, saturation).

Pure: no simpy, no I/O, no clock. The model itself is ``fluid.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twin.errors import TwinInputError
from twin.policy.serving.fluid_shapes import BatchStep, StepFn, TokenShape

NODES = 8  # equal strata per token distribution below its 90th percentile (plus 8 tail strata)
MAX_CHUNKS = 10_000


@dataclass(frozen=True)
class FluidEngine:
    """The engine limits of one replica (vLLM's flags), as in ``twin.sim.serving.EngineConfig``."""

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    num_gpu_blocks: int = 4096
    block_size: int = 16
    max_waiting: int = 1000

    def __post_init__(self) -> None:
        for name, top in (
            ("max_num_seqs", 100_000),
            ("max_num_batched_tokens", 10_000_000),
            ("num_gpu_blocks", 100_000_000),
            ("block_size", 4096),
            ("max_waiting", 100_000),
        ):
            value = getattr(self, name)
            low = 0 if name == "max_waiting" else 1
            if not isinstance(value, int) or not low <= value <= top:
                raise TwinInputError(
                    f"must be an integer in [{low}, {top}]", obj="fluid engine", field=name, value=value
                )


@dataclass(frozen=True)
class FluidReplica:
    """One replica: engine limits, request shape and the step-time function."""

    engine: FluidEngine
    input_tokens: TokenShape
    output_tokens: TokenShape
    step_ms: StepFn | BatchStep


class ReplicaShape:
    """What the model needs from one replica config, computed once."""

    def __init__(self, rep: FluidReplica) -> None:
        eng = rep.engine
        self.rep = rep
        self.step_fn = rep.step_ms
        self.i_val, self.i_w = rep.input_tokens.nodes(NODES)
        self.o_val, self.o_w = rep.output_tokens.nodes(NODES)
        self.i_mean = float(np.dot(self.i_val, self.i_w))
        d = np.maximum(self.o_val - 1.0, 0.0)
        self.decodes = float(np.dot(d, self.o_w))  # mean decode steps per request
        # Time-averaged KV context of a decoding sequence (steps see inp + generated + 1), weighted by life.
        own = self.i_mean + 1.0 + self.o_val / 2.0
        self.c_own = own
        # With the exact second moment: E[(O-1)(I + 1 + O/2)] / E[O-1] for independent I and O.
        o_mean, o_sq = float(np.dot(self.o_val, self.o_w)), rep.output_tokens.second_moment()
        life_ctx = (o_sq - o_mean) / 2.0
        self.c_other = self.i_mean + 1.0 + (life_ctx / self.decodes if self.decodes > 0 else 0.0)
        i_sq_nodes = float(np.dot(self.i_val**2, self.i_w))
        self.i_sq_ratio = rep.input_tokens.second_moment() / i_sq_nodes if i_sq_nodes > 0 else 1.0
        # Allen-Cunneen: a queue in front of the batch waits (1 + cs^2)/2 of the exponential-service wait.
        cs2 = max(o_sq - o_mean**2, 0.0) / max(self.decodes, 1.0) ** 2
        self.queue_factor = (1.0 + cs2) / 2.0
        bs = eng.block_size
        ii, oo = np.meshgrid(self.i_val, self.o_val)
        blocks = float(np.sum(np.ceil((ii + oo) / bs) * np.outer(self.o_w, self.i_w)))
        self.n_max = max(1, min(eng.max_num_seqs, int(eng.num_gpu_blocks // max(blocks, 1.0))))
        self.kv_per_seq = (self.c_other - 1.0 + bs / 2.0) / (eng.num_gpu_blocks * bs)
        budget_min = max(eng.max_num_batched_tokens - self.n_max, 1)
        if float(self.i_val.max()) / budget_min > MAX_CHUNKS:
            raise TwinInputError(
                "prompts would take more than 10000 prefill chunks",
                obj="fluid engine",
                field="max_num_batched_tokens",
                value=eng.max_num_batched_tokens,
            )

    def step(self, prefill: np.ndarray, start: np.ndarray, decodes: np.ndarray, decode_ctx: np.ndarray) -> np.ndarray:
        """One step: ``prefill`` prompt tokens from position ``start`` beside ``decodes`` sequences."""
        fn = self.step_fn
        if isinstance(fn, BatchStep):
            return np.asarray(fn.batch_ms(prefill, start, decodes, decode_ctx), dtype=np.float64)
        kv = decode_ctx + np.where(prefill > 0, start + prefill, 0.0)
        return np.asarray(fn(prefill, decodes, kv), dtype=np.float64)

    def decode_ms(self, n: np.ndarray | float) -> np.ndarray:
        n = np.asarray(n, dtype=np.float64)
        return self.step(0.0 * n, 0.0 * n, n, n * self.c_other)

    def prefill(self, inp: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Duration of a prompt's prefill steps with ``n`` decodes beside it, and the extra work it adds."""
        inp, n = np.broadcast_arrays(np.asarray(inp, dtype=np.float64), np.asarray(n, dtype=np.float64))
        budget = np.maximum(self.rep.engine.max_num_batched_tokens - n, 1.0)
        chunks = np.ceil(inp / budget)
        ctx = n * self.c_other
        base = self.step(0.0 * n, 0.0 * n, n, ctx)
        dur = np.zeros(inp.shape)
        for j in range(int(chunks.max()) if chunks.size else 0):
            active = chunks > j
            end = np.minimum((j + 1) * budget, inp)
            size = end - np.minimum(j * budget, inp)
            dur += np.where(active, self.step(size, end - size, n, ctx), 0.0)
        return dur, dur - chunks * base

    def prefill_work(self, n: np.ndarray) -> np.ndarray:
        """Mean extra step time one admitted prompt adds, with ``n`` sequences decoding."""
        n = np.asarray(n, dtype=np.float64)
        _, extra = self.prefill(self.i_val[:, None], n[None, :] if n.ndim else n[None])
        return (self.i_w @ extra).reshape(n.shape)

    def saturation_rate(self) -> float:
        """Per-replica throughput at a full batch (req/ms): lambda = n / (a + b / (1 - lambda*P))."""
        n = float(self.n_max)
        a = float(self.i_w @ self.prefill(self.i_val, np.full_like(self.i_val, n - 1.0))[0])
        b = self.decodes * float(self.decode_ms(n))
        p = float(self.prefill_work(np.array(n)))
        if a * p <= 0:
            return n / (a + b) if a + b > 0 else math.inf
        s = a + b + n * p
        return (s - math.sqrt(max(s * s - 4.0 * a * p * n, 0.0))) / (2.0 * a * p)
