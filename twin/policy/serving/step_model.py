"""The time of one vLLM engine step from the model's architecture and the GPU (a soft roofline model).

``StepModel(arch, gpu, tp, dtype).step_ms(batch)`` prices one iteration of continuous batching:

* **linear layers** (QKV/O projections, the MLP, the LM head for the tokens that sample):
  ``2 * params * tokens`` FLOPs against reading the weights once per step, combined by the soft
  roofline (below; compute-bound prefill, memory-bound decode);
* **MoE experts** as vLLM's fused-MoE kernel runs them: a grouped GEMM in which every touched
  expert multiplies its own tokens, padded up to the kernel's row block, against reading that
  expert's weights; the soft roofline of the two;
* **attention**: ``4 * heads * head_dim * context`` FLOPs per query token per layer against reading
  the KV cache of every scheduled sequence (paged, at its own efficiency), the soft roofline of the two;
* **activations**: the fused elementwise kernels between the GEMMs (norms, rotary, activation,
  residual adds, KV-cache writes) read and write each token's activations: memory-bound;
* **communication**: with tensor parallelism two all-reduces of the step's activations per layer
  (ring: ``2 (tp-1)/tp`` of the bytes, plus a latency each), over NVLink, or over PCIe staged
  through host memory (no NVLink: each byte crosses the link twice), and once per step the all-gather
  of the vocab-parallel LM head's bf16 logits of the sampled sequences (vLLM v1 samples on every
  rank); with expert parallelism an all-gather and a reduce-scatter of the hidden states per MoE layer;
* a fixed **per-step overhead** and a **per-sequence, per-layer overhead** (GPU-side: vLLM 0.19's
  asynchronous scheduling hides host work behind the step, so what a sequence still costs is in the
  layers: attention's per-sequence setup and the paged KV write).

The **soft roofline** combines a kernel's compute time ``c`` and memory time ``m`` as their p-norm
``(c^p + m^p)^(1/p)`` (``Efficiency.roofline_p``; infinite p is the plain ``max``): near the ridge
point a GEMM neither streams nor computes at full speed at once, so it costs more than the max, while
far from it (pure decode, large prefill) the dominant bound is all that counts.

Hardware peaks are scaled by a few efficiency constants (:class:`Efficiency`), each bounded to a
physically plausible range (:data:`PLAUSIBLE`); the defaults were fitted within those bounds on the
two real Llama-3.1-8B runs only (``benchmarks/bench_vllm_replay.py --calibrate``, docs/serving.md)
and the other runs are validation. Pure: no I/O, no clock.
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


# Physically plausible ranges of the efficiency constants: calibration searches inside them only, so a
# fit cannot absorb a missing term by driving a constant to an implausible value.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "compute": (0.4, 0.8),  # cuBLAS/CUTLASS bf16 GEMMs: 60-80 % of dense peak at large M, less in mixed batches
    "attention": (0.3, 0.7),  # FlashAttention-2/3 forward: 35-70 % of dense peak
    "memory": (0.6, 0.9),  # streaming weight reads: 80-90 % of the datasheet bandwidth at best
    "kv_memory": (0.4, 0.9),  # paged KV reads in 16-token blocks: scattered, below streaming
    "step_overhead_ms": (0.0, 3.0),  # per step: launches between CUDA graphs, scheduler, sampler
    # per scheduled sequence and layer, GPU-side (vLLM 0.19 schedules asynchronously, hiding host work):
    # the attention kernel's per-sequence block-table walk, split-KV merge and partial tiles, the paged
    # KV write; 1.6 us is 0.05 ms a sequence for a 32-layer model, a few thousand cycles a layer
    "seq_layer_overhead_us": (0.0, 1.6),
    # how sharply a kernel's time turns from memory- to compute-bound (the p-norm of the two): 1 adds them
    # (no overlap), large p is the plain roofline's max; measured GEMMs sit well below the max near the ridge
    "roofline_p": (1.0, 8.0),
}
PCIE_MAX_GBPS = 64.0  # PCIe Gen5 x16 per direction: any slower interconnect in a profile is PCIe, not NVLink
MOE_BLOCK_ROWS = (16, 64)  # vLLM's untuned Triton fused-MoE row block: 16 when tokens <= local experts, else 64


@dataclass(frozen=True)
class Efficiency:
    """Fractions of the datasheet peaks reached, and fixed costs. Defaults: fitted on Llama-3.1-8B."""

    compute: float = 0.80  # GEMM FLOPs / dense tensor peak (fitted; at its plausible top)
    attention: float = 0.40  # attention-kernel FLOPs / dense FP16 peak (prefill; fitted, weakly identified)
    memory: float = 0.90  # weight and activation reads / memory bandwidth (fitted; at its plausible top)
    kv_memory: float = 0.90  # paged KV-cache reads / memory bandwidth (fitted; at its plausible top)
    step_overhead_ms: float = 1.0  # per step: launches, sampler, what asynchronous scheduling does not hide (fitted)
    seq_layer_overhead_us: float = 1.6  # per scheduled sequence per layer (fitted; at its plausible top)
    roofline_p: float = 2.0  # soft roofline: (compute^p + memory^p)^(1/p); inf = the plain max (fitted)
    # Not identifiable from single-GPU runs: set from NCCL's typical figures, not fitted.
    interconnect: float = 0.70  # all-reduce bus bandwidth / interconnect bandwidth
    nvlink_latency_us: float = 10.0  # per collective over NVLink / xGMI
    pcie_latency_us: float = 20.0  # per collective over PCIe (host-staged)

    def __post_init__(self) -> None:
        for name in ("compute", "attention", "memory", "kv_memory", "interconnect"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 < v <= 1):
                raise TwinInputError("must be in (0, 1]", obj="step model efficiency", field=name, value=v)
        if not (self.roofline_p >= 1.0):  # NaN fails too
            raise TwinInputError(
                "must be >= 1 (inf: the plain roofline)",
                obj="step model efficiency",
                field="roofline_p",
                value=self.roofline_p,
            )
        for name in ("step_overhead_ms", "seq_layer_overhead_us", "nvlink_latency_us", "pcie_latency_us"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 1e4):
                raise TwinInputError("must be in [0, 1e4]", obj="step model efficiency", field=name, value=v)

    def roof(self, compute_ms: float, memory_ms: float) -> float:
        """A kernel's time from its compute and memory times: their p-norm (the max when p is infinite)."""
        p = self.roofline_p
        hi = max(compute_ms, memory_ms)
        if math.isinf(p) or hi <= 0:
            return hi
        lo = min(compute_ms, memory_ms)
        return hi * (1.0 + (lo / hi) ** p) ** (1.0 / p)  # scaled so a large p cannot overflow

    def plausible(self) -> bool:
        """Every fitted constant inside its :data:`PLAUSIBLE` range."""
        return all(lo <= getattr(self, k) <= hi for k, (lo, hi) in PLAUSIBLE.items())


@dataclass(frozen=True)
class GpuSpec:
    """The GPU facts the step model reads (from a hardware profile)."""

    name: str
    fp16_tflops: float
    fp8_tflops: float | None
    mem_bandwidth_gbps: float
    interconnect_gbps: float | None
    vram_bytes: int

    @property
    def pcie(self) -> bool:
        """No NVLink/xGMI: the profile's interconnect is no faster than PCIe Gen5 x16."""
        return self.interconnect_gbps is not None and self.interconnect_gbps <= PCIE_MAX_GBPS

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
    linear_ms: float  # dense GEMMs (and the LM head)
    attention_ms: float
    comm_ms: float
    overhead_ms: float  # per step and per sequence
    linear_compute_bound: bool
    attention_compute_bound: bool
    moe_ms: float = 0.0  # the fused-MoE grouped GEMM
    activation_ms: float = 0.0  # elementwise kernels between the GEMMs

    @property
    def total_ms(self) -> float:
        return self.linear_ms + self.moe_ms + self.attention_ms + self.activation_ms + self.comm_ms + self.overhead_ms


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
        self._kv_bytes_per_ms = gpu.mem_bandwidth_gbps * 1e6 * self.eff.kv_memory
        # Over PCIe without NVLink the collective is staged through host memory (peer-to-peer is not
        # assumed: GeForce and workstation cards commonly lack it), so each byte crosses the link twice.
        link = (gpu.interconnect_gbps or 0.0) * 1e6 * self.eff.interconnect  # bytes per ms
        self._comm_bytes_per_ms = link / 2.0 if gpu.pcie else link
        self._collective_ms = (self.eff.pcie_latency_us if gpu.pcie else self.eff.nvlink_latency_us) / 1000.0
        a = arch
        # Per GPU: dense weights split over tp; routed experts split over ep and tp.
        self._dense_params = (a.layers * (a.attn_params_per_layer + a.dense_mlp_params_per_layer)) / tp
        self._head_params = a.embedding_params / tp
        self._local_experts = a.experts / ep
        self._expert_params = a.expert_params / tp
        self._q_width = a.heads * a.head_dim / tp
        self.kv_bytes_per_token = 2.0 * a.layers * max(a.kv_heads / tp, 1.0) * a.head_dim * KV_BYTES
        self.activation_bytes_per_token = a.layers * activation_elements_per_layer(a, tp) * 2.0

    # ------------------------------------------------------------------ sizes

    @property
    def weight_bytes_per_gpu(self) -> float:
        """Resident weights on one GPU (embedding and LM head, dense layers, local experts)."""
        a = self.arch
        embed = a.embedding_params / self.tp * (1 if a.tied_embeddings else 2)
        experts = a.layers * self._local_experts * self._expert_params
        return (self._dense_params + embed + experts) * self.weight_bytes

    def kv_blocks(
        self,
        gpu_memory_utilization: float = 0.9,
        block_size: int = 16,
        reserve_bytes: float = 1.6 * 2**30,
        vram_bytes: float | None = None,
    ) -> int:
        """KV-cache blocks vLLM would allocate: the memory budget less weights and a reserve for activations,
        CUDA graphs and the allocator (the reserve was fitted on the one run that reports its block count).
        ``vram_bytes``: the memory one rank may use (a vGPU slice), default the whole GPU's."""
        memory = self.gpu.vram_bytes if vram_bytes is None else vram_bytes
        free = memory * gpu_memory_utilization - self.weight_bytes_per_gpu - reserve_bytes
        return max(int(free // (self.kv_bytes_per_token * block_size)), 0)

    # ------------------------------------------------------------------ time

    def _touched_experts(self, tokens: int) -> float:
        """Expected local experts hit by ``tokens`` tokens of the whole EP group, each routed to k of E."""
        a = self.arch
        if not a.is_moe or tokens <= 0:
            return 0.0
        miss = (1.0 - a.active_experts / a.experts) ** (tokens * self.ep)
        return self._local_experts * (1.0 - miss)

    def _moe_ms(self, tokens: int) -> float:
        """The fused-MoE grouped GEMM of one step: each touched local expert multiplies its tokens, padded
        to the kernel's row block, against reading its weights; the slower of the two."""
        a = self.arch
        touched = self._touched_experts(tokens)
        if touched <= 0:
            return 0.0
        group_tokens = tokens * self.ep  # the EP group's tokens are all-gathered to every rank
        rows = group_tokens * a.active_experts / self.ep  # (token, expert) pairs routed to this rank
        block = MOE_BLOCK_ROWS[0] if group_tokens <= self._local_experts else MOE_BLOCK_ROWS[1]
        padded = touched * block * math.ceil(rows / touched / block)
        gemm = 2.0 * padded * a.layers * self._expert_params / self._gemm_flops_per_ms
        read = touched * a.layers * self._expert_params * self.weight_bytes / self._bytes_per_ms
        return self.eff.roof(gemm, read)

    def breakdown(self, b: BatchShape) -> StepBreakdown:
        a = self.arch
        tokens = b.prefill_tokens + b.decode_seqs
        if tokens <= 0:
            return StepBreakdown(0.0, 0.0, 0.0, 0.0, False, False)
        sampled = b.decode_seqs + b.prefill_done
        flops = 2.0 * (tokens * self._dense_params + sampled * self._head_params)
        weights = self._dense_params + (self._head_params if sampled else 0.0)
        gemm_ms = flops / self._gemm_flops_per_ms
        read_ms = weights * self.weight_bytes / self._bytes_per_ms
        attn_flops = 4.0 * a.layers * self._q_width * (b.prefill_attn_ctx + b.decode_ctx)
        kv_read = (b.decode_ctx + b.prefill_cached + b.prefill_tokens) * self.kv_bytes_per_token
        attn_c = attn_flops / self._attn_flops_per_ms
        attn_m = kv_read / self._kv_bytes_per_ms
        comm = 0.0
        act = tokens * a.hidden * 2.0  # one bf16 activation row per token
        lat = self._collective_ms
        if self.tp > 1:
            comm += 2 * a.layers * (lat + 2.0 * (self.tp - 1) / self.tp * act / self._comm_bytes_per_ms)
            if sampled:  # the vocab-parallel LM head's logits are all-gathered so every rank can sample
                comm += lat + (self.tp - 1) / self.tp * sampled * a.vocab * 2.0 / self._comm_bytes_per_ms
        if self.ep > 1:  # vLLM's allgather_reducescatter: gather the other ranks' tokens, scatter the sums back
            comm += 2 * a.layers * (lat + (self.ep - 1) * act / self._comm_bytes_per_ms)
        # The sequences a step schedules: every decode, and at least one prefilling sequence.
        seqs = b.decode_seqs + max(b.prefill_done, 1 if b.prefill_tokens else 0)
        return StepBreakdown(
            self.eff.roof(gemm_ms, read_ms),
            self.eff.roof(attn_c, attn_m),
            comm,
            self.eff.step_overhead_ms + seqs * a.layers * self.eff.seq_layer_overhead_us / 1000.0,
            gemm_ms >= read_ms,
            attn_c >= attn_m,
            moe_ms=self._moe_ms(tokens),
            activation_ms=tokens * self.activation_bytes_per_token / self._bytes_per_ms,
        )

    def step_ms(self, b: BatchShape) -> float:
        """Milliseconds of one step with this batch (0 for an empty batch)."""
        return self.breakdown(b).total_ms


def activation_elements_per_layer(a: ModelArch, tp: int = 1) -> float:
    """Activation elements the fused elementwise kernels between the GEMMs read and write per token per
    layer (torch.compile fuses everything between two GEMMs or attention into one kernel): rotary and the
    KV-cache write after QKV (q, k in and out, k and v stored), the residual add and norm after the
    attention output and after the MLP (4 hidden rows each), the gated activation (2 intermediate rows
    in, 1 out); for MoE, the routed tokens' activations and their permutation to and from expert order."""
    q, kv = a.heads * a.head_dim / tp, max(a.kv_heads / tp, 1.0) * a.head_dim
    attn = 2 * (q + kv) + 2 * kv + 2 * 4 * a.hidden
    if a.is_moe:
        mlp = 3.0 * a.active_experts * a.expert_intermediate / tp + 2 * 2 * a.active_experts * a.hidden
        mlp += 3.0 * a.shared_expert_intermediate / tp
    else:
        mlp = 3.0 * a.intermediate / tp
    return attn + mlp
