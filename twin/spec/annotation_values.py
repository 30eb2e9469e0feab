"""Typed values of the tensor-fusion.ai/* pod annotations, parsed in one pass that collects every error.

TensorFusion's webhook treats an unparseable quantity as absent and a boolean other than "true" as
false; the twin refuses both (``real_system_ignores`` marks them) so a typo cannot pass unnoticed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from twin.errors import TwinInputError
from twin.resources import IsolationMode, QoS
from twin.spec import annotations as A
from twin.units import parse_bytes, parse_duration, parse_percent, parse_tflops

MAX_GPU_COUNT = 128
_INTEGER = re.compile(r"[+-]?[0-9]+")
AUTOSCALE_TARGETS = ("compute", "vram", "all")


class _Bad(Exception):
    def __init__(self, message: str, real_system_ignores: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.real_system_ignores = real_system_ignores


def _bool(text: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    # The webhook compares with == "true": "True", "yes" or "1" silently mean false there.
    raise _Bad('must be "true" or "false" (lower case)', real_system_ignores=True)


def _int_in(low: int, high: int | None, message: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        # Go's strconv.Atoi: optional sign and ASCII digits only (Python's int() would also take
        # surrounding spaces and "1_000").
        if _INTEGER.fullmatch(text) is None:
            raise _Bad(message)
        value = int(text)
        if value < low or (high is not None and value > high):
            raise _Bad(message)
        return value

    return parse


def _gpu_indices(text: str) -> tuple[int, ...]:
    out = []
    for token in text.split(","):
        token = token.strip()
        if not token.isascii() or not token.isdigit():
            raise _Bad(f"gpu-indices annotation is not valid: {token!r} is not a non-negative integer")
        out.append(int(token))
    return tuple(out)


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _container_gpu_count(text: str) -> tuple[tuple[str, int], ...]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise _Bad(f'must be a JSON object of container name -> GPU count, such as {{"a":1}} ({err.msg})') from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_GPU_COUNT
        for k, v in data.items()
    ):
        raise _Bad(f"must be a JSON object of container name -> GPU count in 1..{MAX_GPU_COUNT}")
    return tuple(sorted(data.items()))


def _choice(values: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in values:
            raise _Bad(f"must be one of {', '.join(values)}")
        return text

    return parse


def _quantity(fn: Callable[..., Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return fn(text)
        except TwinInputError as err:
            raise _Bad(err.message, real_system_ignores=True) from None

    return parse


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except TwinInputError as err:
        raise _Bad(err.message) from None


def _string(text: str) -> str:
    return text


_PARSERS: Mapping[str, Callable[[str], Any]] = {
    A.TFLOPS_REQUEST: _quantity(parse_tflops),
    A.TFLOPS_LIMIT: _quantity(parse_tflops),
    A.VRAM_REQUEST: _quantity(parse_bytes),
    A.VRAM_LIMIT: _quantity(parse_bytes),
    A.COMPUTE_REQUEST: _quantity(parse_percent),
    A.COMPUTE_LIMIT: _quantity(parse_percent),
    A.GPU_COUNT: _int_in(1, MAX_GPU_COUNT, f"invalid gpuCount value, must be an integer in [1, {MAX_GPU_COUNT}]"),
    A.GPU_INDICES: _gpu_indices,
    A.GPU_MODEL: _string,
    A.VENDOR: _string,
    A.GPUPOOL: _string,
    A.QOS: _choice(tuple(q.value for q in QoS)),
    A.IS_LOCAL_GPU: _bool,
    A.SIDECAR_WORKER: _bool,
    A.ISOLATION: _choice(tuple(m.value for m in IsolationMode)),
    A.PARTITION_ID: _string,
    A.DEDICATED_GPU: _bool,
    A.WORKLOAD: _string,
    A.WORKLOAD_PROFILE: _string,
    A.INJECT_CONTAINER: _names,
    A.CONTAINER_GPU_COUNT: _container_gpu_count,
    A.ENABLED_REPLICAS: _int_in(0, None, "enabled-replicas must be a non-negative integer"),
    A.AUTOSCALE: _bool,
    A.AUTOSCALE_TARGET: _choice(AUTOSCALE_TARGETS),
    A.GANG_ENABLED: _bool,
    A.GANG_MIN_MEMBERS: _int_in(0, None, "gang-min-members must be a non-negative integer"),
    A.GANG_TIMEOUT: _duration,
    A.EVICTION_PROTECTION: _duration,
}


def annotation_field(prefix: str, key: str) -> str:
    return f'{prefix}.annotations["{key}"]'


def parse_annotation_values(
    annotations: Mapping[str, str], *, prefix: str = "metadata", file: str | None = None, obj: str | None = None
) -> tuple[dict[str, Any], list[TwinInputError]]:
    """Typed values of every input annotation that is present and non-empty, plus all parse errors.

    An empty value counts as absent, as in the webhook (it reads ``annotations[key] != ""``).
    """
    values: dict[str, Any] = {}
    errors: list[TwinInputError] = []
    for key, parse in _PARSERS.items():
        text = annotations.get(key)
        if text is None or text == "":
            continue
        try:
            values[key] = parse(text)
        except _Bad as bad:
            errors.append(
                TwinInputError(
                    bad.message,
                    file=file,
                    obj=obj,
                    field=annotation_field(prefix, key),
                    value=text,
                    real_system_ignores=bad.real_system_ignores,
                )
            )
    return values, errors
