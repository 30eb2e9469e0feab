"""External recommender (semantics 5.4): ask another service what the workload should get.

The live HTTP adapter (``live/``) POSTs ``ExternalRequest.to_json()`` to ``externalScaler.url`` with
``Authorization: Bearer <token from apiKeySecretRef>`` and ``Content-Type: application/json``, and
reads the reply with :meth:`ExternalResponse.from_json`. Payloads (Kubernetes quantity strings)::

    request:  {"workloadName": "nb", "namespace": "ml",
               "currentResources": {"requests": {"tflops": "10", "vram": "8Gi"},
                                    "limits":   {"tflops": "20", "vram": "8Gi"}}}
    response: {"needScaleUp": true, "needScaleDown": false, "reason": "queue growing",
               "recommendedResources": {"requests": {...}, "limits": {...}}}

TFLOPs go out as plain decimal strings and VRAM as whole bytes (``"8589934592"``); incoming VRAM
accepts the binary/decimal suffixes (Ki Mi Gi Ti, k M G T) and TFLOPs a plain number or a ``m``
(milli) suffix. In simulation a Python object with ``recommend`` stands in for the service.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from twin.errors import TwinInputError
from twin.policy.vertical.types import RecResult, Resources, WorkloadView
from twin.resources import Resource

_SUFFIX = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(Ki|Mi|Gi|Ti|k|M|G|T|m)?\s*$")


@dataclass(frozen=True, slots=True)
class ExternalRequest:
    workload_name: str
    namespace: str
    current: Resources

    def to_json(self) -> dict[str, Any]:
        return {
            "workloadName": self.workload_name,
            "namespace": self.namespace,
            "currentResources": resources_to_json(self.current),
        }


@dataclass(frozen=True, slots=True)
class ExternalResponse:
    need_scale_up: bool
    need_scale_down: bool
    reason: str
    recommended: Resources | None

    @staticmethod
    def from_json(data: Mapping[str, Any], *, obj: str = "externalScaler response") -> ExternalResponse:
        rec = data.get("recommendedResources")
        return ExternalResponse(
            need_scale_up=bool(data.get("needScaleUp", False)),
            need_scale_down=bool(data.get("needScaleDown", False)),
            reason=str(data.get("reason", "")),
            recommended=resources_from_json(rec, obj=obj) if rec else None,
        )


class ExternalScaler(Protocol):
    def recommend(self, request: ExternalRequest) -> ExternalResponse: ...


def _fmt_tflops(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def resources_to_json(res: Resources) -> dict[str, dict[str, str]]:
    return {
        "requests": {"tflops": _fmt_tflops(res.request.tflops), "vram": str(res.request.vram)},
        "limits": {"tflops": _fmt_tflops(res.limit.tflops), "vram": str(res.limit.vram)},
    }


def parse_quantity(text: object, *, obj: str, field: str, milli_ok: bool) -> float:
    value = str(text)
    match = _QUANTITY.match(value)
    if not match or (match.group(2) == "m" and not milli_ok):
        raise TwinInputError("not a Kubernetes quantity", obj=obj, field=field, value=text)
    number = float(match.group(1))
    suffix = match.group(2) or ""
    result = number / 1000 if suffix == "m" else number * _SUFFIX[suffix]
    if not math.isfinite(result):
        raise TwinInputError("quantity out of range", obj=obj, field=field, value=text)
    return result


def _side(data: Mapping[str, Any], key: str, obj: str) -> Resource:
    part = data.get(key) or {}
    if not isinstance(part, Mapping):
        raise TwinInputError("must be a mapping", obj=obj, field=key, value=part)
    tflops = parse_quantity(part.get("tflops", "0"), obj=obj, field=f"{key}.tflops", milli_ok=True)
    vram = parse_quantity(part.get("vram", "0"), obj=obj, field=f"{key}.vram", milli_ok=False)
    return Resource(tflops=tflops, vram=int(vram))


def resources_from_json(data: object, *, obj: str) -> Resources:
    if not isinstance(data, Mapping):
        raise TwinInputError("recommendedResources must be a mapping", obj=obj, value=data)
    return Resources(_side(data, "requests", obj), _side(data, "limits", obj))


class CallableScaler:
    """Wraps a plain function ``(ExternalRequest) -> ExternalResponse`` (simulation stand-in)."""

    def __init__(self, fn: Callable[[ExternalRequest], ExternalResponse]) -> None:
        self._fn = fn

    def recommend(self, request: ExternalRequest) -> ExternalResponse:
        return self._fn(request)


class ExternalRecommender:
    """Asks ``scaler``; a reply that needs no scaling, or repeats the current resources, is applied."""

    name = "external"

    def __init__(self, scaler: ExternalScaler) -> None:
        self.scaler = scaler

    def recommend(self, view: WorkloadView, now_s: float) -> RecResult | None:
        cfg = view.config.external_scaler
        if cfg is None or not cfg.enable:
            return None
        reply = self.scaler.recommend(ExternalRequest(view.name, view.namespace, view.current))
        if not (reply.need_scale_up or reply.need_scale_down) or reply.recommended is None:
            return None
        return RecResult(
            "external",
            reply.recommended,
            has_applied=reply.recommended == view.current,
            reason=reply.reason or "external scaler",
        )
