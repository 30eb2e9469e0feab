"""A recorded vLLM serving run: ``meta.json``, ``requests.jsonl``, ``timeseries.csv`` (the format of
``../shared/data/vllm-real/runs/<GPU>/<model>/``), read and validated at the edge.

``meta.json`` gives the engine settings (``engine_kwargs``: model, tensor and data parallel sizes,
expert parallelism, ``max_num_seqs``, ``max_num_batched_tokens``, dtype) and, when recorded, the KV
cache (``kv_cache.num_gpu_blocks``, ``block_size``, ``gpu_memory_utilization``) and the device name.
Each request line has ``input_toks``, ``output_toks`` and the engine's monotonic ``queued_ts``,
``first_token_ts``, ``last_token_ts``. The time series has per second ``t``, ``running``, ``waiting``.
Every error names the file, the field (or line) and the value.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twin.errors import TwinInputError

MAX_REQUESTS = 1_000_000
MAX_FILE_BYTES = 512 << 20
MAX_TOKENS = 10_000_000
DTYPE_NAMES = {"bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "half": "fp16", "fp16": "fp16", "auto": "bf16"}


@dataclass(frozen=True)
class VllmRun:
    path: Path
    model: str
    gpu_name: str | None  # NVML device name when the run recorded it
    tp: int
    dp: int
    expert_parallel: bool
    max_num_seqs: int
    max_num_batched_tokens: int
    dtype: str
    num_gpu_blocks: int | None
    block_size: int
    gpu_memory_utilization: float
    prefix_caching: bool
    # Per request, sorted by queue time: seconds from the first request, tokens, and the real timings.
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray  # NaN for one-token outputs
    e2e_s: np.ndarray
    # Per second: (t, running, waiting)
    series: np.ndarray
    # Per second, when the file has the columns: (t, prompt tokens/s, generation tokens/s, KV cache use %,
    # NaN where not recorded); else empty
    throughput: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    async_scheduling: bool = False  # vLLM's scheduler prepares the next step while one runs


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TwinInputError(f"larger than {MAX_FILE_BYTES} bytes", file=str(path), value=size)
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise TwinInputError(f"cannot read: {err.strerror or err}", file=str(path)) from err
    except UnicodeDecodeError as err:
        raise TwinInputError("not UTF-8 text", file=str(path)) from err


def _int_field(obj: dict[str, Any], key: str, file: str, lo: int, hi: int, default: int | None = None) -> int:
    value = obj.get(key, default)
    if value is None and default is not None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise TwinInputError(f"must be an integer in [{lo}, {hi}]", file=file, field=key, value=value)
    return value


def _num(obj: dict[str, Any], key: str, file: str, where: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TwinInputError("must be a finite number", file=file, obj=where, field=key, value=value)
    return float(value)


def _meta(path: Path) -> dict[str, Any]:
    file = str(path)
    try:
        meta = json.loads(_read(path))
    except json.JSONDecodeError as err:
        raise TwinInputError(f"not valid JSON: {err.msg}", file=file, line=err.lineno) from err
    if not isinstance(meta, dict) or not isinstance(meta.get("engine_kwargs"), dict):
        raise TwinInputError("needs an engine_kwargs object", file=file, field="engine_kwargs")
    return meta


def load_vllm_run(run_dir: Path) -> VllmRun:
    """Read and validate one run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TwinInputError("run directory not found", file=str(run_dir))
    meta_path = run_dir / "meta.json"
    meta = _meta(meta_path)
    mfile = str(meta_path)
    ek: dict[str, Any] = meta["engine_kwargs"]
    model = ek.get("model", meta.get("model"))
    if not isinstance(model, str) or not model.strip():
        raise TwinInputError("needs the model name", file=mfile, field="engine_kwargs.model", value=model)
    dtype_raw = ek.get("dtype", "auto")
    if dtype_raw not in DTYPE_NAMES:
        raise TwinInputError(
            f"unsupported dtype; known: {', '.join(DTYPE_NAMES)}",
            file=mfile,
            field="engine_kwargs.dtype",
            value=dtype_raw,
        )
    kv_raw = meta.get("kv_cache")
    kv: dict[str, Any] = kv_raw if isinstance(kv_raw, dict) else {}
    blocks = kv.get("num_gpu_blocks")
    if blocks is not None:
        blocks = _int_field(kv, "num_gpu_blocks", mfile, 1, 100_000_000)
    gmu = kv.get("gpu_memory_utilization", 0.9)
    if isinstance(gmu, bool) or not isinstance(gmu, int | float) or not 0 < gmu <= 1:
        raise TwinInputError("must be in (0, 1]", file=mfile, field="kv_cache.gpu_memory_utilization", value=gmu)
    hw_raw = meta.get("hardware")
    hw: dict[str, Any] = hw_raw if isinstance(hw_raw, dict) else {}
    gpu_name = hw.get("device_name") if isinstance(hw.get("device_name"), str) else None
    arrival, inp, out, ttft, tpot, e2e = _requests(run_dir / "requests.jsonl")
    series, throughput = _series(run_dir / "timeseries.csv")
    return VllmRun(
        path=run_dir,
        model=model.strip(),
        gpu_name=gpu_name,
        tp=_int_field(ek, "tensor_parallel_size", mfile, 1, 64, default=1),
        dp=_int_field(ek, "data_parallel_size", mfile, 1, 64, default=1),
        expert_parallel=bool(ek.get("enable_expert_parallel", False)),
        max_num_seqs=_int_field(ek, "max_num_seqs", mfile, 1, 100_000, default=256),
        max_num_batched_tokens=_int_field(ek, "max_num_batched_tokens", mfile, 1, 10_000_000, default=8192),
        dtype=DTYPE_NAMES[dtype_raw],
        num_gpu_blocks=blocks,
        block_size=_int_field(kv, "block_size", mfile, 1, 4096, default=16),
        gpu_memory_utilization=float(gmu),
        prefix_caching=bool(kv.get("enable_prefix_caching", True)),
        arrival_s=arrival,
        input_tokens=inp,
        output_tokens=out,
        ttft_s=ttft,
        tpot_s=tpot,
        e2e_s=e2e,
        series=series,
        throughput=throughput,
        async_scheduling=_async_scheduling(meta, ek),
    )


# The first vLLM release whose default engine schedules asynchronously, as far as the runs tell: a
# 0.19.0 run's resolved config says async_scheduling: true with the default engine arguments.
ASYNC_SCHEDULING_DEFAULT_FROM = (0, 19)


def _async_scheduling(meta: dict[str, Any], ek: dict[str, Any]) -> bool:
    """The engine argument if given, else the run's resolved scheduler config, else the version's default."""
    if isinstance(ek.get("async_scheduling"), bool):
        return bool(ek["async_scheduling"])
    resolved = meta.get("resolved_config")
    sched = resolved.get("scheduler_config") if isinstance(resolved, dict) else None
    if isinstance(sched, dict) and isinstance(sched.get("async_scheduling"), bool):
        return bool(sched["async_scheduling"])
    version = meta.get("vllm_version")
    if isinstance(version, str):
        parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
        return len(parts) == 2 and tuple(parts) >= ASYNC_SCHEDULING_DEFAULT_FROM
    return False


def _requests(path: Path) -> tuple[np.ndarray, ...]:
    file = str(path)
    rows: list[tuple[float, int, int, float, float]] = []
    for lineno, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        if len(rows) >= MAX_REQUESTS:
            raise TwinInputError(f"more than {MAX_REQUESTS} requests", file=file, line=lineno)
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise TwinInputError(f"not valid JSON: {err.msg}", file=file, line=lineno) from err
        if not isinstance(rec, dict):
            raise TwinInputError("each line is a JSON object", file=file, line=lineno)
        where = f"line {lineno}"
        i = _num(rec, "input_toks", file, where)
        if not (1 <= i <= MAX_TOKENS and i == int(i)):
            raise TwinInputError(
                f"must be an integer in [1, {MAX_TOKENS}]", file=file, obj=where, field="input_toks", value=i
            )
        o = _num(rec, "output_toks", file, where)
        if not (1 <= o <= MAX_TOKENS and o == int(o)):
            raise TwinInputError(
                f"must be an integer in [1, {MAX_TOKENS}]", file=file, obj=where, field="output_toks", value=o
            )
        q = _num(rec, "queued_ts", file, where)
        f = _num(rec, "first_token_ts", file, where)
        last = _num(rec, "last_token_ts", file, where)
        if not q <= f <= last:
            raise TwinInputError(
                "needs queued_ts <= first_token_ts <= last_token_ts",
                file=file,
                obj=where,
                field="first_token_ts",
                value=f,
            )
        rows.append((q, int(i), int(o), f, last))
    if not rows:
        raise TwinInputError("no requests", file=file)
    rows.sort(key=lambda r: r[0])
    a = np.array(rows, dtype=float)
    q0 = a[0, 0]
    out = a[:, 2].astype(np.int64)
    tpot = np.where(out > 1, (a[:, 4] - a[:, 3]) / np.maximum(out - 1, 1), np.nan)
    return a[:, 0] - q0, a[:, 1].astype(np.int64), out, a[:, 3] - a[:, 0], tpot, a[:, 4] - a[:, 0]


def _series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(t, running, waiting) per row, and (t, prompt, generation tokens/s, KV cache %) when the file has
    vLLM's throughput columns (else empty; the KV column NaN when absent); an absent file gives empty
    series (the trajectory is then not compared). In the throughputs a row repeated with the same ``t``
    (vLLM's logger sometimes writes one twice) counts once."""
    if not path.exists():
        return np.zeros((0, 3)), np.zeros((0, 4))
    file = str(path)
    reader = csv.DictReader(_read(path).splitlines())
    columns = set(reader.fieldnames or ())
    missing = {"t", "running", "waiting"} - columns
    if missing:
        raise TwinInputError("missing columns", file=file, field=",".join(sorted(missing)))
    rate_cols = ("prompt_throughput", "gen_throughput")
    with_rates = all(c in columns for c in rate_cols)
    points: list[tuple[float, float, float]] = []
    rates: list[tuple[float, float, float, float]] = []
    with_kv = "kv_cache_pct" in columns
    for lineno, row in enumerate(reader, start=2):
        try:
            values = tuple(float(row[k]) for k in ("t", "running", "waiting"))
            rate = tuple(float(row[k]) for k in rate_cols) if with_rates else (0.0, 0.0)
            kv = float(row["kv_cache_pct"]) if with_kv else math.nan
        except (TypeError, ValueError) as err:
            raise TwinInputError(
                "t, running, waiting and the throughputs must be numbers", file=file, line=lineno, value=row
            ) from err
        kv_ok = not with_kv or (math.isfinite(kv) and 0 <= kv <= 100)  # NaN only where the column is absent
        if not all(math.isfinite(v) and v >= 0 for v in (*values, *rate)) or not kv_ok:
            raise TwinInputError(
                "t, running, waiting and the throughputs must be finite and >= 0, kv_cache_pct in [0, 100]",
                file=file,
                line=lineno,
                value=row,
            )
        points.append(values)  # type: ignore[arg-type]
        if with_rates and (not rates or rates[-1][0] != values[0]):
            rates.append((values[0], rate[0], rate[1], kv))
        if len(points) > MAX_REQUESTS:
            raise TwinInputError(f"more than {MAX_REQUESTS} rows", file=file, line=lineno)
    return np.array(points, dtype=float).reshape(-1, 3), np.array(rates, dtype=float).reshape(-1, 4)
