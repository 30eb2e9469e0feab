"""The architecture-based step model (``step_model.StepModel``) as the fluid mode's step function.

Pure. The fluid model asks for whole arrays of batch shapes at once; ``StepModel.step_ms`` takes
one ``BatchShape``. :class:`ArchStep` evaluates each distinct shape once (KV contexts rounded to
~0.2 %, results cached) and interpolates linearly between whole sequence counts (the fluid model
works with mean, so fractional, batch sizes).
A prefill chunk is described by its size and start position, as the simulator's mixed step does
(attention pairs, cached tokens); every chunk is taken to sample a token (in the simulator only a
prompt's last chunk does, a difference of one token's head compute for chunked prompts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twin.policy.serving.step_model import BatchShape, StepModel, chunk_attention_pairs

CACHE_LIMIT = 1_000_000


@dataclass(frozen=True)
class ArchStep:
    """``batch_ms(prefill_tokens, prefill_start, decode_seqs, decode_ctx)`` from a ``StepModel``."""

    model: StepModel
    # Shapes already evaluated (a table evaluates the same decode steps at many loads).
    cache: dict[tuple[float, float, float, float], float] = field(default_factory=dict, compare=False, repr=False)

    def batch_ms(
        self, prefill_tokens: np.ndarray, prefill_start: np.ndarray, decode_seqs: np.ndarray, decode_ctx: np.ndarray
    ) -> np.ndarray:
        p, s, d, c = np.broadcast_arrays(
            *(np.asarray(x, dtype=np.float64) for x in (prefill_tokens, prefill_start, decode_seqs, decode_ctx))
        )
        lo = np.floor(d)
        frac = d - lo
        per_seq = np.where(d > 0, c / np.maximum(d, 1e-12), 0.0)
        at_lo = self._eval(p, s, lo, per_seq * lo)
        at_hi = self._eval(p, s, lo + 1.0, per_seq * (lo + 1.0))
        return np.where(frac > 0, at_lo + frac * (at_hi - at_lo), at_lo)

    def _eval(self, p: np.ndarray, s: np.ndarray, d: np.ndarray, c: np.ndarray) -> np.ndarray:
        # The KV context to ~0.2 % (a power-of-two grid): the step is piecewise linear in it, and the
        # many nearly equal contexts of a fluid evaluation then share one StepModel call.
        grid = np.exp2(np.maximum(np.floor(np.log2(np.maximum(c, 1.0))) - 9.0, 0.0))
        keys = np.stack([np.rint(p), np.rint(s), np.rint(d), np.rint(c / grid) * grid], axis=-1).reshape(-1, 4)
        rows = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.dtype.itemsize * 4))).ravel()
        _, first, inv = np.unique(rows, return_index=True, return_inverse=True)  # bytes: faster than axis=0
        uniq = keys[first]
        cache = self.cache
        values = np.empty(len(uniq))
        for j, row in enumerate(uniq.tolist()):
            key = (row[0], row[1], row[2], row[3])
            hit = cache.get(key)
            if hit is None:
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                hit = cache[key] = self._one(*key)
            values[j] = hit
        return values[inv.reshape(-1)].reshape(p.shape)

    def _one(self, p: float, s: float, d: float, c: float) -> float:
        tokens, start = int(p), int(s)
        shape = BatchShape(
            prefill_tokens=tokens,
            prefill_attn_ctx=chunk_attention_pairs(start, tokens) if tokens > 0 else 0.0,
            prefill_cached=start if tokens > 0 else 0,
            prefill_done=1 if tokens > 0 else 0,
            decode_seqs=int(d),
            decode_ctx=int(c),
        )
        return self.model.step_ms(shape)
