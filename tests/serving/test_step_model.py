"""The step-time model's limits: decode is bandwidth-bound, big prefills compute-bound, TP adds communication."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.hardware import default_catalog
from twin.policy.serving.queue_model import QueueModel, ServiceTimes
from twin.policy.serving.step_model import (
    PLAUSIBLE,
    BatchShape,
    Efficiency,
    GpuSpec,
    StepModel,
    chunk_attention_pairs,
)
from twin.policy.serving.step_params import derive_wva_params
from twin.spec.hf_config import resolve_model

LLAMA8 = resolve_model("Llama-3.1-8B")
H100 = GpuSpec.from_profile(default_catalog().get("H100"))


PLAIN = Efficiency(roofline_p=math.inf)  # the plain roofline (max of compute and memory): exact formulas


def _model(
    gpu: GpuSpec = H100, tp: int = 1, dtype: str = "bf16", model: str = "Llama-3.1-8B", eff: Efficiency | None = None
) -> StepModel:
    return StepModel(resolve_model(model), gpu, tp, dtype, eff)


def test_pure_decode_is_bandwidth_bound() -> None:
    m = _model()
    b = m.breakdown(BatchShape.decode(1, 1000))
    assert not b.linear_compute_bound and not b.attention_compute_bound
    eff = Efficiency()
    weights = (m.weight_bytes_per_gpu - LLAMA8.embedding_params * 2) / (H100.mem_bandwidth_gbps * 1e6 * eff.memory)
    # The soft roofline adds (compute/memory)^2/2 ~ 1e-5 of it here (one token against a ~260-token ridge).
    assert b.linear_ms == pytest.approx(weights, rel=1e-4)
    # Twice the bandwidth halves everything but the fixed overheads; twice the FLOPs changes nothing.
    fast_mem = _model(dataclasses.replace(H100, mem_bandwidth_gbps=2 * H100.mem_bandwidth_gbps))
    fast_flops = _model(dataclasses.replace(H100, fp16_tflops=2 * H100.fp16_tflops))
    fixed = b.overhead_ms
    assert fixed == pytest.approx(eff.step_overhead_ms + LLAMA8.layers * eff.seq_layer_overhead_us / 1000)
    base = m.step_ms(BatchShape.decode(1, 1000)) - fixed
    assert fast_mem.step_ms(BatchShape.decode(1, 1000)) - fixed == pytest.approx(base / 2, rel=1e-3)
    assert fast_flops.step_ms(BatchShape.decode(1, 1000)) == pytest.approx(
        m.step_ms(BatchShape.decode(1, 1000)), rel=1e-4
    )


def test_decode_pays_for_the_kv_it_reads() -> None:
    m = _model(eff=PLAIN)  # the KV read is the attention's memory side: exact under the plain roofline
    short, long = m.step_ms(BatchShape.decode(64, 100)), m.step_ms(BatchShape.decode(64, 4000))
    extra_bytes = 64 * 3900 * m.kv_bytes_per_token
    # Paged KV reads run at their own efficiency, not the weight stream's.
    kv_bw = H100.mem_bandwidth_gbps * 1e6 * Efficiency().kv_memory
    assert long - short == pytest.approx(extra_bytes / kv_bw, rel=1e-6)


def test_large_prefill_is_compute_bound_and_linear_in_tokens() -> None:
    m = _model()
    b = m.breakdown(BatchShape.prefill(8192))
    assert b.linear_compute_bound
    fast_flops = _model(dataclasses.replace(H100, fp16_tflops=2 * H100.fp16_tflops))
    # Half, within the soft roofline's share of the weight read (8192 tokens against a ridge of a few hundred).
    assert fast_flops.breakdown(BatchShape.prefill(8192)).linear_ms == pytest.approx(b.linear_ms / 2, rel=5e-3)
    half = m.breakdown(BatchShape.prefill(4096)).linear_ms
    assert b.linear_ms / half == pytest.approx(2.0, rel=0.01)
    # 2 FLOPs per parameter per token: exactly under the plain roofline, within 0.5 % under the soft one.
    flops = 2 * 8192 * (LLAMA8.active_params - LLAMA8.embedding_params) + 2 * LLAMA8.embedding_params
    bound = flops / (H100.fp16_tflops * 1e9 * Efficiency().compute)
    assert _model(eff=PLAIN).breakdown(BatchShape.prefill(8192)).linear_ms == pytest.approx(bound, rel=1e-9)
    assert b.linear_ms == pytest.approx(bound, rel=5e-3)


def test_fp8_uses_the_fp8_peak_and_halves_the_weights() -> None:
    bf16, fp8 = _model(), _model(dtype="fp8")
    assert fp8.weight_bytes_per_gpu == pytest.approx(bf16.weight_bytes_per_gpu / 2)
    assert fp8.breakdown(BatchShape.prefill(8192)).linear_ms < 0.6 * bf16.breakdown(BatchShape.prefill(8192)).linear_ms
    with pytest.raises(TwinInputError, match="no FP8"):
        _model(GpuSpec.from_profile(default_catalog().get("A100_SXM_80G")), dtype="fp8")


def test_tensor_parallelism_adds_communication() -> None:
    one, two = _model(), _model(tp=2)
    assert one.breakdown(BatchShape.decode(32, 1000)).comm_ms == 0.0
    comm = two.breakdown(BatchShape.decode(32, 1000)).comm_ms
    assert comm > 0
    # It grows with the tokens in the step, and with a slower interconnect.
    assert two.breakdown(BatchShape.prefill(4096)).comm_ms > comm
    pcie = _model(dataclasses.replace(H100, interconnect_gbps=32), tp=2)
    assert pcie.breakdown(BatchShape.prefill(4096)).comm_ms > two.breakdown(BatchShape.prefill(4096)).comm_ms
    # Splitting the weights halves the per-GPU weight reads, but the step costs more than half.
    b1, b2 = one.breakdown(BatchShape.decode(1, 100)), two.breakdown(BatchShape.decode(1, 100))
    assert b2.linear_ms == pytest.approx(b1.linear_ms / 2, rel=0.01)
    assert two.step_ms(BatchShape.decode(1, 100)) > one.step_ms(BatchShape.decode(1, 100)) / 2
    with pytest.raises(TwinInputError, match="interconnect"):
        _model(dataclasses.replace(H100, interconnect_gbps=None), tp=2)
    with pytest.raises(TwinInputError):
        _model(tp=3)  # 32 heads do not split 3 ways


def test_tensor_parallel_logits_are_all_gathered_once_per_step() -> None:
    """vLLM v1 all-gathers the vocab-parallel LM head's bf16 logits of the sampled sequences (every rank
    samples): one collective per step, (tp-1)/tp of sampled x vocab x 2 bytes over the link."""
    qwen = resolve_model("Qwen3-32B")
    pro = GpuSpec.from_profile(default_catalog().get("RTXPRO6000"))
    two = StepModel(qwen, pro, 2)
    # Same tokens: a chunk that finishes its prompt samples one token, one that does not samples none.
    sampling = two.breakdown(BatchShape(prefill_tokens=128, prefill_attn_ctx=8256.0, prefill_done=1)).comm_ms
    silent = two.breakdown(BatchShape(prefill_tokens=128, prefill_attn_ctx=8256.0, prefill_done=0)).comm_ms
    link = pro.interconnect_gbps * 1e6 * two.eff.interconnect / 2.0  # PCIe: host-staged, half the link (bytes/ms)
    gather = two.eff.pcie_latency_us / 1000.0 + 0.5 * 1 * qwen.vocab * 2.0 / link
    assert sampling - silent == pytest.approx(gather, rel=1e-9)
    # It grows with the sampled sequences: 128 decodes gather 128 rows of 151,936 logits (~0.9 ms here).
    d128 = two.breakdown(BatchShape.decode(128, 1000)).comm_ms
    per_layer = 2 * qwen.layers * (two.eff.pcie_latency_us / 1000.0 + 128 * qwen.hidden * 2.0 / link)
    assert d128 - per_layer == pytest.approx(two.eff.pcie_latency_us / 1000.0 + 0.5 * 128 * qwen.vocab * 2.0 / link)
    assert 0.5 < d128 - per_layer < 1.5
    # Without tensor parallelism there is nothing to gather.
    assert StepModel(qwen, pro, 1).breakdown(BatchShape.decode(128, 1000)).comm_ms == 0.0


def test_moe_reads_only_the_experts_its_tokens_touch() -> None:
    moe = _model(model="Qwen3-30B-A3B-Instruct-2507")
    arch = moe.arch
    assert arch.is_moe and arch.active_params < arch.total_params / 5
    one = moe.breakdown(BatchShape.decode(1, 100)).moe_ms
    many = moe.breakdown(BatchShape.decode(256, 100)).moe_ms
    assert many > 5 * one  # one token reads 8 of 128 experts per layer, 256 tokens nearly all
    ep = StepModel(arch, dataclasses.replace(H100), ep=2)
    assert ep.weight_bytes_per_gpu < moe.weight_bytes_per_gpu * 0.6
    assert ep.breakdown(BatchShape.decode(8, 100)).comm_ms > 0


def test_kv_blocks_match_the_run_that_reports_them() -> None:
    """The RTX 4090 run's vLLM allocated 2588 blocks of 16 tokens for Llama-3.1-8B at utilisation 0.9."""
    m = _model(GpuSpec.from_profile(default_catalog().get("RTX4090")))
    assert m.kv_blocks(0.9, 16) == pytest.approx(2588, rel=0.03)
    assert m.kv_blocks(0.9, 32) == pytest.approx(m.kv_blocks(0.9, 16) / 2, abs=1)
    assert _model(GpuSpec.from_profile(default_catalog().get("L4")), model="Llama-3.1-70B").kv_blocks() == 0


def test_chunk_attention_pairs_counts_causal_pairs() -> None:
    assert chunk_attention_pairs(0, 1) == 1
    assert chunk_attention_pairs(0, 4) == 1 + 2 + 3 + 4
    assert chunk_attention_pairs(10, 2) == 11 + 12


def test_efficiency_bounds() -> None:
    with pytest.raises(TwinInputError, match="compute"):
        Efficiency(compute=0.0)
    with pytest.raises(TwinInputError, match="step_overhead_ms"):
        Efficiency(step_overhead_ms=float("nan"))
    with pytest.raises(TwinInputError, match="seq_layer_overhead_us"):
        Efficiency(seq_layer_overhead_us=-1.0)
    # The shipped (fitted) constants lie in their physically plausible ranges; the old fit's did not.
    assert Efficiency().plausible()
    assert not Efficiency(compute=0.35, memory=1.0).plausible()
    assert set(PLAUSIBLE) <= {f.name for f in dataclasses.fields(Efficiency)}


def test_soft_roofline_limits() -> None:
    """A kernel's time is the p-norm of its compute and memory times: the plain max as p grows, their sum
    at p = 1, and always the bound that dominates in the limits (pure decode, large prefill)."""
    assert Efficiency(roofline_p=math.inf).roof(3.0, 4.0) == 4.0
    assert Efficiency(roofline_p=1.0).roof(3.0, 4.0) == pytest.approx(7.0)
    assert Efficiency(roofline_p=2.0).roof(3.0, 4.0) == pytest.approx(5.0)
    assert Efficiency(roofline_p=2.0).roof(0.0, 0.0) == 0.0
    assert Efficiency(roofline_p=1e6).roof(1e300, 1e300) == pytest.approx(1e300)  # no overflow
    # At the ridge point (compute = memory) the soft roofline costs 2^(1/p) times the plain one.
    assert Efficiency(roofline_p=4.0).roof(2.0, 2.0) == pytest.approx(2.0 * 2**0.25)
    with pytest.raises(TwinInputError, match="roofline_p"):
        Efficiency(roofline_p=0.5)
    with pytest.raises(TwinInputError, match="roofline_p"):
        Efficiency(roofline_p=float("nan"))
    for p in (1.0, 2.0, Efficiency().roofline_p):
        m = StepModel(LLAMA8, H100, eff=Efficiency(roofline_p=p))
        plain = StepModel(LLAMA8, H100, eff=Efficiency(roofline_p=math.inf))
        # Decode of one sequence: compute is ~1/200 of the weight read (the ridge is ~200 tokens on an
        # H100 at these efficiencies), so even the sum adds < 1 %.
        one, one_plain = m.breakdown(BatchShape.decode(1, 1000)), plain.breakdown(BatchShape.decode(1, 1000))
        assert not one.linear_compute_bound and one_plain.linear_ms <= one.linear_ms <= 1.01 * one_plain.linear_ms
        # A 16k-token prefill: the weights are read once for 16k tokens of FLOPs, the sum adds < 2 %.
        big, big_plain = m.breakdown(BatchShape.prefill(16384)), plain.breakdown(BatchShape.prefill(16384))
        assert big.linear_compute_bound and big_plain.linear_ms <= big.linear_ms <= 1.02 * big_plain.linear_ms
        # Near the ridge (a decode batch of a few hundred) it costs more than the max, at most the sum.
        mid, mid_plain = m.breakdown(BatchShape.decode(256, 1000)), plain.breakdown(BatchShape.decode(256, 1000))
        assert mid.linear_ms >= mid_plain.linear_ms and mid.linear_ms <= 2 * mid_plain.linear_ms
        if p < 8:
            assert mid.linear_ms > 1.01 * mid_plain.linear_ms


def test_pcie_collectives_are_host_staged_and_nvlink_ones_are_not() -> None:
    """Over PCIe (no NVLink) the all-reduce crosses the link twice and pays PCIe's latency: a PCIe link
    priced at NVLink's bandwidth still costs more than the NVLink one of the same speed would."""
    assert GpuSpec.from_profile(default_catalog().get("RTXPRO6000")).pcie and not H100.pcie
    nvlink = _model(dataclasses.replace(H100, interconnect_gbps=128), tp=2)
    pcie = _model(dataclasses.replace(H100, interconnect_gbps=64), tp=2)
    b = BatchShape.prefill(2048)
    eff = Efficiency()
    act = 2048 * LLAMA8.hidden * 2.0
    per_collective_nv = eff.nvlink_latency_us / 1000 + act / (128e6 * eff.interconnect)
    per_collective_pcie = eff.pcie_latency_us / 1000 + act / (64e6 * eff.interconnect / 2)
    # ... plus the all-gather of the one sampled sequence's logits (half of them come from the other rank)
    logits = 0.5 * LLAMA8.vocab * 2.0
    gather_nv = eff.nvlink_latency_us / 1000 + logits / (128e6 * eff.interconnect)
    gather_pcie = eff.pcie_latency_us / 1000 + logits / (64e6 * eff.interconnect / 2)
    assert nvlink.breakdown(b).comm_ms == pytest.approx(2 * LLAMA8.layers * per_collective_nv + gather_nv, rel=1e-9)
    assert pcie.breakdown(b).comm_ms == pytest.approx(2 * LLAMA8.layers * per_collective_pcie + gather_pcie, rel=1e-9)


def test_moe_grouped_gemm_pads_each_expert_to_the_kernel_block() -> None:
    """A few tokens per expert: every touched expert still runs a whole row block, so the grouped GEMM
    does more work than 2 * active params * tokens; many tokens per expert: the padding vanishes."""
    moe = _model(model="Qwen3-30B-A3B-Instruct-2507", eff=PLAIN)  # the GEMM's compute side, exactly
    a = moe.arch
    per_token = 2.0 * a.active_experts * a.layers * a.expert_params / (H100.fp16_tflops * 1e9 * Efficiency().compute)
    big = moe.breakdown(BatchShape.prefill(8192)).moe_ms
    assert big == pytest.approx(8192 * per_token, rel=0.05)  # 512 rows per expert: under 6 % padding
    # 200 tokens: 1600 (token, expert) rows over ~128 experts, padded to 64 each: ~5x the useful work.
    flops_bound = StepModel(a, dataclasses.replace(H100, mem_bandwidth_gbps=1e9), 1, "bf16", PLAIN)
    assert flops_bound.breakdown(BatchShape.decode(200, 100)).moe_ms > 4 * 200 * per_token
    # The dense part (attention projections, router, LM head) no longer carries the experts.
    dense = a.layers * (a.attn_params_per_layer + a.dense_mlp_params_per_layer) + a.embedding_params
    bw = H100.mem_bandwidth_gbps * 1e6 * Efficiency().memory
    assert moe.breakdown(BatchShape.decode(1, 100)).linear_ms == pytest.approx(dense * 2 / bw, rel=1e-9)


def test_activation_traffic_and_per_sequence_overhead_grow_with_the_batch() -> None:
    m = _model()
    eff = Efficiency()
    one, many = m.breakdown(BatchShape.decode(1, 100)), m.breakdown(BatchShape.decode(64, 100))
    assert many.activation_ms == pytest.approx(64 * one.activation_ms, rel=1e-9)
    assert m.activation_bytes_per_token == pytest.approx(
        LLAMA8.layers * 2 * (2 * (4096 + 1024) + 2 * 1024 + 8 * 4096 + 3 * 14336)
    )
    per_seq = LLAMA8.layers * eff.seq_layer_overhead_us / 1000
    assert many.overhead_ms - one.overhead_ms == pytest.approx(63 * per_seq)
    # GPU-side, it is paid in every layer: a model twice as deep pays twice as much per sequence.
    deep = _model(model="Qwen3-32B")
    d1, d64 = deep.breakdown(BatchShape.decode(1, 100)), deep.breakdown(BatchShape.decode(64, 100))
    assert d64.overhead_ms - d1.overhead_ms == pytest.approx(63 * per_seq * deep.arch.layers / LLAMA8.layers)
    # A prefill chunk counts as one scheduled sequence.
    assert m.breakdown(BatchShape.prefill(512)).overhead_ms == pytest.approx(one.overhead_ms)


def test_derived_wva_parameters_reproduce_the_step_model() -> None:
    m = _model()
    p = derive_wva_params(m, 512, 256, 64)
    assert p.alpha > 0 and p.beta > 0 and p.gamma >= 0
    # A decode step of 32 sequences at the mean context: the linear fit is within 15 % of the roofline.
    ctx = 512 + 128
    linear = p.alpha + p.beta * 32 + p.gamma * 32 * ctx
    assert linear == pytest.approx(m.step_ms(BatchShape.decode(32, ctx)), rel=0.15)
    # And the queue model built from them prices an ITL near the step model's at low load.
    q = QueueModel(ServiceTimes(p.alpha, p.beta, p.gamma, 512, 256), 64, 640)
    itl = q.analyze(0.05 * q.max_rate).itl_ms
    assert itl == pytest.approx(m.step_ms(BatchShape.decode(1, ctx)), rel=0.2)
    # A faster GPU gives a smaller per-step cost.
    h200 = derive_wva_params(_model(GpuSpec.from_profile(default_catalog().get("H200"))), 512, 256, 64)
    assert h200.alpha < p.alpha


_counts = st.integers(0, 4096)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["Llama-3.1-8B", "Qwen3-32B", "Qwen3-30B-A3B-Instruct-2507", "Mixtral-8x7B-v0.1"]),
    st.sampled_from(["H100", "L40S", "RTX4090", "RTXPRO6000"]),
    st.sampled_from([1, 2, 4]),
    _counts,
    _counts,
    st.integers(0, 256),
    st.integers(0, 4096),
    st.sampled_from(["prefill_tokens", "prefill_cached", "decode_seqs", "decode_ctx"]),
)
def test_step_time_is_finite_and_grows_with_the_batch(
    model: str, gpu: str, tp: int, pf: int, cached: int, seqs: int, ctx: int, grow: str
) -> None:
    m = StepModel(resolve_model(model), GpuSpec.from_profile(default_catalog().get(gpu)), tp)
    b = BatchShape(pf, chunk_attention_pairs(cached, pf), cached, int(pf > 0), seqs, seqs * ctx)
    t = m.step_ms(b)
    assert math.isfinite(t) and t >= 0 and (t > 0) == (pf + seqs > 0)
    bigger = dataclasses.replace(b, **{grow: getattr(b, grow) + 64})
    if grow == "decode_ctx" and b.decode_seqs == 0:
        bigger = dataclasses.replace(bigger, decode_seqs=1)
    assert m.step_ms(bigger) >= t
