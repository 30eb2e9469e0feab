"""Why a replay misses: the step model against the real engine's step times, second by second (open loop).

A recorded run gives, per second, the prompt and generation tokens vLLM processed, and per request when
its first and last tokens came. Every decoding sequence gains one token per step, so a second in which
``n`` sequences decode (time-averaged over the second) and ``G`` tokens were generated (``f`` of them
first tokens) held ``S = (G - f) / n`` steps of ``1000 / S`` ms each, carrying ``P / S`` prompt tokens.
The step model prices that same batch (``n`` decodes at their estimated contexts, ``P / S`` prefill
tokens): the ratio isolates the step-time model from the scheduler, the queue and the feedback between
them, which a closed-loop replay mixes. Rows are grouped by phase (decode only, by batch size; mixed, by
prefill tokens per step) with the model's mean breakdown.

Assumptions (stated, not fitted): the series' ``t`` and the requests share an origin (the first request
is queued within a second of the benchmark's start); a sequence's tokens are spread evenly between its
first and last token (its context at a moment is interpolated); seconds with fewer than two steps are
skipped (one step's boundary falls anywhere in them), so are seconds whose prompt tokens per step would
exceed the token budget (vLLM logs a prompt's tokens in lumps), and so are seconds whose KV cache was at
least 95 % full (vLLM preempts there, so a sequence may sit out steps between its first and last token
and the step count would be too low). With data-parallel ranks the batch is split evenly over the ranks,
which is rough where a prefill chunk lands on one rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twin.policy.serving.step_model import BatchShape, StepBreakdown, StepModel
from twin.spec.vllm_run import VllmRun

MIN_STEPS = 2.0  # a second with fewer steps says little about a step's length
KV_FULL_PCT = 95.0  # past this vLLM preempts: a sequence between its first and last token may not decode every step
DECODE_BATCHES = ((1, 8), (8, 32), (32, 64), (64, 100), (100, 1 << 30))
PREFILL_TOKENS = ((1, 100), (100, 400), (400, 1000), (1000, 1 << 30))


@dataclass(frozen=True)
class SecondRow:
    """One second of a real run: what a step carried, how long it really took, and the model's price."""

    t: float
    decode_seqs: float  # per rank
    ctx_per_seq: float
    prefill_tokens: float  # per step and rank
    steps: float  # per rank in this second
    real_ms: float
    model: StepBreakdown

    @property
    def model_ms(self) -> float:
        return self.model.total_ms


def second_rows(run: VllmRun, step: StepModel, ranks: int = 1) -> list[SecondRow]:
    """The open-loop comparison, one row per usable second (empty without the throughput columns)."""
    first = run.arrival_s + run.ttft_s
    last = run.arrival_s + run.e2e_s
    out = run.output_tokens
    inp = run.input_tokens
    rows: list[SecondRow] = []
    for t, prompt, gen, kv in run.throughput:
        lo, mid = t - 1.0, t - 0.5
        # Time-averaged decoding sequences in the second (each decodes from its first to its last token).
        overlap = np.clip(np.minimum(last, t) - np.maximum(first, lo), 0.0, 1.0) * (out > 1)
        n = float(overlap.sum())
        firsts = int(((first > lo) & (first <= t)).sum())
        if n < 1 or gen <= 0 or kv >= KV_FULL_PCT:  # NaN (not recorded) compares False
            continue
        steps = max(gen - firsts, 1.0) / n
        tokens = prompt / steps / ranks
        if steps < MIN_STEPS or tokens + n / ranks > run.max_num_batched_tokens:
            continue  # too few steps to time, or prompt tokens logged in a lump (more than the budget allows)
        span = np.maximum(last - first, 1e-9)
        generated = np.clip((mid - first) / span, 0.0, 1.0) * (out - 1)
        ctx = float((overlap * (inp + generated)).sum()) / n
        seqs = n / ranks
        batch = BatchShape(
            prefill_tokens=int(round(tokens)),
            # A chunk's own causal pairs; chunks further into long prompts attend to more (ShareGPT prompts are short).
            prefill_attn_ctx=tokens * (tokens + 1) / 2.0,
            prefill_done=int(round(firsts / steps / ranks)),
            decode_seqs=max(int(round(seqs)), 1),
            decode_ctx=int(round(seqs * ctx)),
        )
        rows.append(SecondRow(float(t), seqs, ctx, tokens, steps, 1000.0 / steps, step.breakdown(batch)))
    return rows


@dataclass(frozen=True)
class PhaseRow:
    phase: str
    seconds: int
    real_ms: float  # mean step time
    model_ms: float
    ratio: float  # model over real, summed over the seconds
    parts: dict[str, float]  # the model's mean breakdown (ms)


def _phase(label: str, rows: Sequence[SecondRow]) -> PhaseRow | None:
    if not rows:
        return None
    real = np.array([r.real_ms for r in rows])
    model = np.array([r.model_ms for r in rows])
    parts = {
        k: float(np.mean([getattr(r.model, f"{k}_ms") for r in rows]))
        for k in ("linear", "moe", "attention", "activation", "comm", "overhead")
    }
    return PhaseRow(label, len(rows), float(real.mean()), float(model.mean()), float(model.sum() / real.sum()), parts)


def phase_table(rows: Sequence[SecondRow]) -> list[PhaseRow]:
    """Decode-only seconds by batch size, then mixed seconds by prefill tokens per step, then all."""
    out: list[PhaseRow | None] = []
    for lo, hi in DECODE_BATCHES:
        sel = [r for r in rows if r.prefill_tokens < 1 and lo <= r.decode_seqs < hi]
        out.append(_phase(f"decode, batch {lo}-{hi - 1}" if hi < 1 << 20 else f"decode, batch {lo}+", sel))
    for lo, hi in PREFILL_TOKENS:
        sel = [r for r in rows if lo <= r.prefill_tokens < hi]
        out.append(_phase(f"mixed, {lo}-{hi - 1} prefill/step" if hi < 1 << 20 else f"mixed, {lo}+ prefill/step", sel))
    out.append(_phase("all seconds", rows))
    return [p for p in out if p is not None]


def step_error(rows: Sequence[SecondRow]) -> float:
    """Mean absolute log ratio of the model's step time to the real one (0 without rows): a calibration term."""
    if not rows:
        return 0.0
    return float(np.mean([abs(math.log(r.model_ms / r.real_ms)) for r in rows if r.model_ms > 0]))


def format_phases(name: str, table: Sequence[PhaseRow]) -> str:
    lines = [
        f"{name}: step time, real vs the step model at the real batch (open loop)",
        f"  {'phase':30s} {'secs':>4s} {'real ms':>8s} {'model ms':>8s} {'ratio':>6s}   model: "
        "linear moe attn act comm ovh (ms)",
    ]
    for p in table:
        parts = " ".join(f"{p.parts[k]:.1f}" for k in ("linear", "moe", "attention", "activation", "comm", "overhead"))
        lines.append(f"  {p.phase:30s} {p.seconds:4d} {p.real_ms:8.1f} {p.model_ms:8.1f} {p.ratio:6.3f}   {parts}")
    return "\n".join(lines)
