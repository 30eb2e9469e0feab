"""The time of one vLLM engine step from the model's architecture and the GPU (a roofline model).

``StepModel(arch, gpu, tp, dtype).step_ms(batch)`` prices one iteration of continuous batching:

* **linear layers** (QKV/O projections, the MLP or the active experts, the LM head for the tokens
  that sample): ``2 * params * tokens`` FLOPs against reading the weights once per step, the
  slower of the two (compute-bound prefill, memory-bound decode);
* **attention**: ``4 * heads * head_dim * context`` FLOPs per query token per layer against reading
  the KV cache of every scheduled sequence, the slower of the two;
* **communication**: with tensor parallelism two all-reduces of the step's activations per layer
  (ring: ``2 (tp-1)/tp`` of the bytes over the interconnect, plus a latency each); with expert
  parallelism two all-to-all exchanges per MoE layer;
* a fixed **per-step overhead** (scheduling, sampling, kernel launches between CUDA graphs).

Hardware peaks are scaled by a few efficiency constants (:class:`Efficiency`); the defaults were
fitted on the two real Llama-3.1-8B runs only (``benchmarks/bench_vllm_replay.py --calibrate``,
docs/serving.md) and the other runs are validation. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from twin.errors import TwinInputError
from twin.hardware import HardwareProfile
from twin.spec.hf_config import ModelArch

Dtype = Literal["bf16", "fp16", "fp8"]
DTYPES: tuple[str, ...] = ("bf16", "fp16", "fp8")
KV_BYTES = 2.0  # the KV cache stays bf16 (vLLM's kv_cache_dtype "auto") whatever the weights


@dataclass(frozen=True)
class Efficiency:
    """Fractions of the datasheet peaks reached, and fixed costs. Defaults: fitted on Llama-3.1-8B."""

    compute: float = 0.35  # GEMM FLOPs / dense tensor peak (fitted; absorbs mixed-batch inefficiency)
    attention: float = 0.80  # attention-kernel FLOPs / dense FP16 peak (prefill)
    memory: float = 1.00  # weight and KV reads / memory bandwidth (fitted to its bound)
    step_overhead_ms: float = 0.0  # per step: vLLM 0.19 schedules asynchronously, the fit finds no visible cost
    # Not identifiable from single-GPU runs: set from NCCL's typical figures, not fitted.
    interconnect: float = 0.70  # all-reduce bus bandwidth / interconnect bandwidth
    collective_latency_us: float = 20.0  # per all-reduce or all-to-all (NCCL over PCIe or NVLink)

    def __post_init__(self) -> None:
        for name in ("compute", "attention", "memory", "interconnect"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 < v <= 1):
                raise TwinInputError("must be in (0, 1]", obj="step model efficiency", field=name, value=v)
        for name in ("step_overhead_ms", "collective_latency_us"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 1e4):
                raise TwinInputError("must be in [0, 1e4]", obj="step model efficiency", field=name, value=v)


@dataclass(frozen=True)
class GpuSpec:
    """The GPU facts the step model reads (from a hardware profile)."""

    name: str
    fp16_tflops: float
    fp8_tflops: float | None
    mem_bandwidth_gbps: float
    interconnect_gbps: float | None
    vram_bytes: int

    @classmethod
    def from_profile(cls, prof: HardwareProfile) -> GpuSpec:
        return cls(
            prof.key,
            prof.fp16_tflops,
            prof.fp8_tflops,
            prof.mem_bandwidth_gbps,
            prof.interconnect_gbps,
            prof.vram_bytes,
        )


@dataclass(frozen=True)
class BatchShape:
    """What one step schedules.

    ``prefill_tokens`` new prompt tokens (chunks within the token budget) whose attention spans
    ``prefill_attn_ctx`` (query, key) pairs in total and which read ``prefill_cached`` KV tokens
    already in the cache; ``prefill_done`` of the prefilling sequences finish their prompt and
    sample a token. ``decode_seqs`` sequences each add one token, reading ``decode_ctx`` KV tokens.
    """

    prefill_tokens: int = 0
    prefill_attn_ctx: float = 0.0
    prefill_cached: int = 0
    prefill_done: int = 0
    decode_seqs: int = 0
    decode_ctx: int = 0

    @classmethod
    def decode(cls, seqs: int, ctx_per_seq: float) -> BatchShape:
        return cls(decode_seqs=seqs, decode_ctx=int(round(seqs * ctx_per_seq)))

    @classmethod
    def prefill(cls, tokens: int, start: int = 0, done: int = 1) -> BatchShape:
        """One chunk of ``tokens`` prompt tokens at positions ``start .. start+tokens-1``."""
        return cls(
            prefill_tokens=tokens,
            prefill_attn_ctx=chunk_attention_pairs(start, tokens),
            prefill_cached=start,
            prefill_done=done,
        )


def chunk_attention_pairs(start: int, tokens: int) -> float:
    """Causal (query, key) pairs of a chunk at positions ``start..start+tokens-1``: each attends to all before it."""
    return tokens * start + tokens * (tokens + 1) / 2.0


@dataclass(frozen=True)
class StepBreakdown:
    linear_ms: float
    attention_ms: float
    comm_ms: float
    overhead_ms: float
    linear_compute_bound: bool
    attention_compute_bound: bool

    @property
    def total_ms(self) -> float:
        return self.linear_ms + self.attention_ms + self.comm_ms + self.overhead_ms


class StepModel:
    """One engine (``tp`` GPUs, or one rank of an ``ep``-way expert-parallel group) of one model."""

    def __init__(
        self,
        arch: ModelArch,
        gpu: GpuSpec,
        tp: int = 1,
        dtype: str = "bf16",
        eff: Efficiency | None = None,
        ep: int = 1,
    ) -> None:
        if dtype not in DTYPES:
            raise TwinInputError(f"must be one of {', '.join(DTYPES)}", field="dtype", value=dtype)
        if not 1 <= tp <= 64 or arch.heads % tp:
            raise TwinInputError(
                f"must be in [1, 64] and divide the {arch.heads} attention heads", field="tp", value=tp
            )
        if not 1 <= ep <= 64 or (ep > 1 and (not arch.is_moe or arch.experts % ep)):
            raise TwinInputError("must be 1, or divide the number of experts of an MoE model", field="ep", value=ep)
        if dtype == "fp8" and gpu.fp8_tflops is None:
            raise TwinInputError(
                "this GPU has no FP8 tensor cores (no fp8_tflops in its profile)", field="gpu", value=gpu.name
            )
        if (tp > 1 or ep > 1) and gpu.interconnect_gbps is None:
            raise TwinInputError(
                "tensor or expert parallelism needs the GPU's interconnect_gbps in its profile",
                field="gpu",
                value=gpu.name,
            )
        self.arch = arch
        self.gpu = gpu
        self.tp = tp
        self.ep = ep
        self.dtype = dtype
        self.eff = eff or Efficiency()
        self.weight_bytes = 1.0 if dtype == "fp8" else 2.0
        peak = gpu.fp8_tflops if dtype == "fp8" and gpu.fp8_tflops is not None else gpu.fp16_tflops
        self._gemm_flops_per_ms = peak * 1e9 * self.eff.compute  # TFLOPs = 1e12/s = 1e9/ms
        self._attn_flops_per_ms = gpu.fp16_tflops * 1e9 * self.eff.attention
        self._bytes_per_ms = gpu.mem_bandwidth_gbps * 1e6 * self.eff.memory  # GB/s = 1e6 bytes/ms
        a = arch
        # Per GPU: dense weights split over tp; routed experts split over ep and tp.
        self._dense_params = (a.layers * (a.attn_params_per_layer + a.dense_mlp_params_per_layer)) / tp
        self._head_params = a.embedding_params / tp
        self._local_experts = a.experts / ep
        self._expert_params = a.expert_params / tp
        self._q_width = a.heads * a.head_dim / tp
        self.kv_bytes_per_token = 2.0 * a.layers * max(a.kv_heads / tp, 1.0) * a.head_dim * KV_BYTES

    # ------------------------------------------------------------------ sizes

    @property
    def weight_bytes_per_gpu(self) -> float:
        """Resident weights on one GPU (embedding and LM head, dense layers, local experts)."""
        a = self.arch
        embed = a.embedding_params / self.tp * (1 if a.tied_embeddings else 2)
        experts = a.layers * self._local_experts * self._expert_params
        return (self._dense_params + embed + experts) * self.weight_bytes

    def kv_blocks(
        self, gpu_memory_utilization: float = 0.9, block_size: int = 16, reserve_bytes: float = 1.6 * 2**30
    ) -> int:
        """KV-cache blocks vLLM would allocate: the memory budget less weights and a reserve for activations,
        CUDA graphs and the allocator (the reserve was fitted on the one run that reports its block count)."""
        free = self.gpu.vram_bytes * gpu_memory_utilization - self.weight_bytes_per_gpu - reserve_bytes
        return max(int(free // (self.kv_bytes_per_token * block_size)), 0)

    # ------------------------------------------------------------------ time

    def _touched_experts(self, tokens: int) -> float:
        """Expected local experts hit by ``tokens`` tokens of the whole EP group, each routed to k of E."""
        a = self.arch
        if not a.is_moe or tokens <= 0:
            return 0.0
        miss = (1.0 - a.active_experts / a.experts) ** (tokens * self.ep)
        return self._local_experts * (1.0 - miss)

    def breakdown(self, b: BatchShape) -> StepBreakdown:
        a = self.arch
        tokens = b.prefill_tokens + b.decode_seqs
        if tokens <= 0:
            return StepBreakdown(0.0, 0.0, 0.0, 0.0, False, False)
        sampled = b.decode_seqs + b.prefill_done
        flops = 2.0 * (tokens * self._dense_params + sampled * self._head_params)
        if a.is_moe:
            # Balanced routing: each GPU computes its share of every token's k experts.
            flops += 2.0 * tokens * a.active_experts * a.layers * self._expert_params
        weights = self._dense_params + (self._head_params if sampled else 0.0)
        weights += a.layers * self._touched_experts(tokens) * self._expert_params
        gemm_ms = flops / self._gemm_flops_per_ms
        read_ms = weights * self.weight_bytes / self._bytes_per_ms
        attn_flops = 4.0 * a.layers * self._q_width * (b.prefill_attn_ctx + b.decode_ctx)
        kv_read = (b.decode_ctx + b.prefill_cached + b.prefill_tokens) * self.kv_bytes_per_token
        attn_c = attn_flops / self._attn_flops_per_ms
        attn_m = kv_read / self._bytes_per_ms
        comm = 0.0
        ic = (self.gpu.interconnect_gbps or 0.0) * 1e6 * self.eff.interconnect  # bytes per ms
        lat = self.eff.collective_latency_us / 1000.0
        act = tokens * a.hidden * 2.0  # one bf16 activation row per token
        if self.tp > 1:
            comm += 2 * a.layers * (lat + 2.0 * (self.tp - 1) / self.tp * act / ic)
        if self.ep > 1:
            comm += 2 * a.layers * (lat + (self.ep - 1) * act / ic)
        return StepBreakdown(
            max(gemm_ms, read_ms),
            max(attn_c, attn_m),
            comm,
            self.eff.step_overhead_ms,
            gemm_ms >= read_ms,
            attn_c >= attn_m,
        )

    def step_ms(self, b: BatchShape) -> float:
        """Milliseconds of one step with this batch (0 for an empty batch)."""
        return self.breakdown(b).total_ms
