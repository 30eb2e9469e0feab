"""The Azure LLM inference trace 2023 as a serving traffic source.

Source: Microsoft's Azure public dataset (``AzureLLMInferenceTrace_code.csv`` and ``..._conv.csv``),
released under CC-BY 4.0 with P. Patel et al., "Splitwise: Efficient generative LLM inference using
phase splitting", ISCA 2024. The files are read from ``../shared/data/azure-llm-2023/`` (or a path the
user gives); they are never copied into the project.

The loader keeps the trace's own burstiness (arrival instants to the microsecond and each request's
context and generated tokens) and offers three transformations, applied in this order:

* ``start``: skip the first seconds of the trace (the offset is taken from the first arrival);
* ``compress``: divide every time by this factor (a 57-minute trace compressed by 4 runs in ~14 min;
  rate and burst lengths both change, as when a recording is played faster);
* ``rate_scale``: keep the timeline but scale the number of requests: below 1 a seeded thinning keeps each
  request with that probability; above 1 each request is kept and ``floor(s)-1`` copies (plus one more with
  probability ``s - floor(s)``) are spread uniformly over the gap to the next arrival, so extra load
  follows the trace's bursts instead of stacking on the same instant;
* ``loop``: repeat the (transformed) trace back to back until the scenario's duration is covered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from twin.errors import TwinInputError
from twin.sim.serving_traffic import Trace

SERVICES = {"code": "AzureLLMInferenceTrace_code.csv", "conv": "AzureLLMInferenceTrace_conv.csv"}
HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MAX_ROWS = 2_000_000  # the public files hold 8,819 and 19,366 rows; this bounds a user-supplied file
MAX_TOKENS = 1_000_000  # per request, either side
MAX_REQUESTS = 20_000_000  # after scaling and looping: bounds the memory of one run (~480 MB of arrays)
_TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_EPOCH = datetime(2000, 1, 1)


def default_dir() -> Path:
    """``<repo>/../shared/data/azure-llm-2023``: where the shared copy of the trace lives."""
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "azure-llm-2023"


def resolve_azure_source(source: str, base: Path) -> Path:
    """``code``/``conv`` name the public files in the shared folder; anything else is a path (relative to ``base``)."""
    if source in SERVICES:
        return default_dir() / SERVICES[source]
    path = Path(source)
    return path if path.is_absolute() else base / path


@dataclass(frozen=True)
class AzureTraffic:
    """How to replay the trace; the defaults replay it as recorded, once."""

    source: str
    rate_scale: float = 1.0
    compress: float = 1.0
    loop: bool = False
    start_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rate_scale", "compress"):
            value = getattr(self, name)
            if not math.isfinite(value) or not 0.0 < value <= 1000.0:
                raise TwinInputError("must be a number in (0, 1000]", field=f"traffic.azure.{name}", value=value)
        if not math.isfinite(self.start_s) or self.start_s < 0:
            raise TwinInputError("must be >= 0 seconds", field="traffic.azure.start", value=self.start_s)


def _timestamp(text: str) -> float:
    # The files carry 7 fractional digits; datetime parses at most 6 (sub-microsecond digits are dropped).
    head, _, frac = text.strip().partition(".")
    parsed = datetime.strptime(f"{head}.{(frac or '0')[:6]}", _TS_FORMAT)
    return (parsed - _EPOCH).total_seconds()  # naive arithmetic: no local time zone, no DST jumps


def load_azure_trace(path: Path) -> Trace:
    """Arrival seconds from the first request, context tokens as input, generated tokens as output."""
    times: list[float] = []
    inputs: list[int] = []
    outputs: list[int] = []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            header = fh.readline().strip().split(",")
            if tuple(h.strip() for h in header) != HEADER:
                raise TwinInputError(
                    f"not an Azure LLM trace: the header must be {','.join(HEADER)}",
                    file=str(path),
                    line=1,
                    value=",".join(header)[:80],
                )
            for lineno, line in enumerate(fh, start=2):
                if not line.strip():
                    continue
                if len(times) >= MAX_ROWS:
                    raise TwinInputError(
                        f"more than {MAX_ROWS:,} requests; split the file", file=str(path), line=lineno
                    )
                cells = line.rstrip("\r\n").split(",")
                try:
                    if len(cells) != 3:
                        raise ValueError
                    t, i, o = _timestamp(cells[0]), int(cells[1]), int(cells[2])
                except ValueError as err:
                    raise TwinInputError(
                        "needs TIMESTAMP (YYYY-MM-DD HH:MM:SS.fffffff),ContextTokens,GeneratedTokens",
                        file=str(path),
                        line=lineno,
                        value=line.strip()[:80],
                    ) from err
                if not (0 <= i <= MAX_TOKENS and 0 <= o <= MAX_TOKENS):
                    raise TwinInputError(
                        f"token counts must be in 0..{MAX_TOKENS:,}",
                        file=str(path),
                        line=lineno,
                        value=line.strip()[:80],
                    )
                times.append(t)
                inputs.append(i)
                outputs.append(max(o, 1))  # a request that generated nothing still takes one decode step
    except OSError as err:
        raise TwinInputError(f"cannot read the Azure trace: {err.strerror}", file=str(path)) from err
    except UnicodeDecodeError as err:
        raise TwinInputError("not a text (UTF-8) file", file=str(path)) from err
    if not times:
        raise TwinInputError("the trace holds no requests", file=str(path))
    arrival = np.asarray(times, dtype=float)
    order = np.argsort(arrival, kind="stable")  # the public files are sorted; a user's might not be
    arrival = arrival[order] - arrival[order[0]]
    return Trace(arrival, np.asarray(inputs, dtype=np.int64)[order], np.asarray(outputs, dtype=np.int64)[order])


def transform_azure_trace(trace: Trace, spec: AzureTraffic, duration_s: float, rng: np.random.Generator) -> Trace:
    """Apply start, compression, rate scaling and looping (in that order); keep arrivals before ``duration_s``."""
    keep = trace.arrival_s >= spec.start_s
    t = (trace.arrival_s[keep] - spec.start_s) / spec.compress
    i, o = trace.input_tokens[keep], trace.output_tokens[keep]
    if t.size == 0:
        raise TwinInputError("no request after the start offset", field="traffic.azure.start", value=spec.start_s)
    span = float(t[-1]) + (float(np.median(np.diff(t))) if t.size > 1 else 1.0)
    t, i, o = _scale_rate(t, i, o, span, spec.rate_scale, rng)
    if spec.loop and span < duration_s:
        copies = math.ceil(duration_s / span)
        if copies * t.size > MAX_REQUESTS:
            raise TwinInputError(
                f"looping to {duration_s:g} s would make more than {MAX_REQUESTS:,} requests; shorten the duration",
                field="traffic.azure.loop",
                value=copies,
            )
        offsets = np.repeat(np.arange(copies, dtype=float) * span, t.size)
        t, i, o = np.tile(t, copies) + offsets, np.tile(i, copies), np.tile(o, copies)
    within = t < duration_s
    return Trace(t[within], i[within], o[within])


def _scale_rate(
    t: np.ndarray, i: np.ndarray, o: np.ndarray, span: float, scale: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if scale == 1.0:
        return t, i, o
    if scale < 1.0:
        kept = rng.uniform(size=t.size) < scale
        return t[kept], i[kept], o[kept]
    if scale * t.size > MAX_REQUESTS:
        raise TwinInputError(
            f"scaling would make more than {MAX_REQUESTS:,} requests", field="traffic.azure.rate_scale", value=scale
        )
    whole = int(math.floor(scale))
    extra = rng.uniform(size=t.size) < (scale - whole)
    copies = np.full(t.size, whole - 1, dtype=np.int64) + extra
    source = np.repeat(np.arange(t.size), copies)
    gaps = np.diff(np.append(t, span))
    new_t = t[source] + rng.uniform(size=source.size) * gaps[source]
    all_t = np.concatenate([t, new_t])
    order = np.argsort(all_t, kind="stable")  # originals first on equal times: a documented tie-break
    return all_t[order], np.concatenate([i, i[source]])[order], np.concatenate([o, o[source]])[order]
