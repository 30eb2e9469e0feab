"""WVA's alpha/beta/gamma derived from the step-time model, so the queue model needs no hand-made parameters.

WVA prices one step as ``alpha + beta * tokens + gamma * kv_tokens`` (ms). The step model is a
roofline (a max of compute and memory terms), so no single triple reproduces it everywhere; the
derived triple is its best linear fit, in relative least squares with non-negative coefficients,
over the steps the queue model prices for one request shape: decode steps of 1 to ``max_batch``
sequences at contexts I/2, I + O/2 and I + O, and prefill chunks up to the token budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.errors import TwinInputError
from twin.policy.serving.step_model import BatchShape, StepModel


@dataclass(frozen=True)
class WvaParams:
    alpha: float  # ms per step
    beta: float  # ms per scheduled token
    gamma: float  # ms per KV token read


def _batch_sizes(max_batch: int) -> list[int]:
    sizes, n = [], 1
    while n < max_batch:
        sizes.append(n)
        n *= 2
    return [*sizes, max_batch]


def derive_wva_params(
    step: StepModel, input_tokens: float, output_tokens: float, max_batch: int, token_budget: int = 8192
) -> WvaParams:
    """The (alpha, beta, gamma) that best reproduce ``step`` for requests of I input and O output tokens."""
    if not (max_batch >= 1 and token_budget >= 1 and input_tokens >= 0 and output_tokens >= 0):
        raise TwinInputError(
            "needs max_batch >= 1, token_budget >= 1 and non-negative token counts",
            obj="derive_wva_params",
            value=(max_batch, token_budget, input_tokens, output_tokens),
        )
    rows: list[tuple[float, float, float]] = []
    times: list[float] = []
    i, o = float(input_tokens), float(output_tokens)
    for n in _batch_sizes(max_batch):
        for ctx in (max(i / 2.0, 1.0), i + o / 2.0, i + o):
            b = BatchShape.decode(n, ctx)
            rows.append((1.0, float(n), float(b.decode_ctx)))
            times.append(step.step_ms(b))
    for tokens in sorted({max(int(min(i, token_budget)), 1), max(token_budget // 2, 1), token_budget}):
        b = BatchShape.prefill(tokens)
        rows.append((1.0, float(tokens), float(tokens)))  # the queue model counts a prefill's own tokens as KV
        times.append(step.step_ms(b))
    a = np.array(rows)
    t = np.array(times)
    w = 1.0 / t  # relative error: small steps count as much as big ones
    active = [0, 1, 2]
    coef = np.zeros(3)
    while active:  # non-negative least squares by dropping negative coefficients (3 unknowns: at most 3 passes)
        sol, *_ = np.linalg.lstsq(a[:, active] * w[:, None], t * w, rcond=None)
        if (sol >= 0).all():
            coef[:] = 0.0
            coef[active] = sol
            break
        active = [c for c, v in zip(active, sol, strict=True) if v >= 0] if (sol >= 0).any() else []
    return WvaParams(float(coef[0]), float(coef[1]), float(coef[2]))
