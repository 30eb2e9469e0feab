"""A small client for the Prometheus HTTP API (``/api/v1/query``), with errors that say what to do.

Only instant queries are needed: every WVA input is one instant vector at the cycle's time.
Responses are bounded (``MAX_RESPONSE_BYTES``); anything but a ``success`` answer is an error.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

MAX_RESPONSE_BYTES = 32 * 1024 * 1024


class PrometheusError(Exception):
    """Prometheus could not answer a query usefully. ``str()`` is the message for the user."""


class PrometheusUnreachable(PrometheusError):
    pass


class NoMetrics(PrometheusError):
    """A required series is absent (the model's pods are not scraped, or the names differ)."""


class StaleMetrics(PrometheusError):
    """A required series exists but its newest sample is older than the allowed age."""


@dataclass(frozen=True, slots=True)
class Sample:
    labels: dict[str, str]
    t: float
    value: float


def _value(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


class PromClient:
    """``query(promql, at)`` returns the instant vector (a scalar answer becomes one unlabelled sample)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise PrometheusError(f"the Prometheus URL must look like http://host:9090, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        full = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(full, timeout=self.timeout_s) as resp:
                body = resp.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as err:
            body = err.read(MAX_RESPONSE_BYTES + 1)
            detail = _error_text(body) or f"HTTP {err.code}"
            raise PrometheusError(f"Prometheus at {self.url} rejected the query {promql!r}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise PrometheusUnreachable(
                f"cannot reach Prometheus at {self.url} ({reason}); check --prometheus and that it is running"
            ) from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise PrometheusError(f"the answer to {promql!r} is larger than {MAX_RESPONSE_BYTES} bytes")
        return parse_response(body, promql, self.url)


def _error_text(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    return str(doc.get("error", "")) if isinstance(doc, dict) else ""


def parse_response(body: bytes, promql: str, url: str) -> list[Sample]:
    """The samples of an ``/api/v1/query`` JSON answer; anything malformed is a PrometheusError."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise PrometheusError(f"{url} did not answer {promql!r} with JSON; is it a Prometheus API?") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        detail = doc.get("error", "no status") if isinstance(doc, dict) else "not an object"
        raise PrometheusError(f"Prometheus at {url} failed the query {promql!r}: {detail}")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise PrometheusError(f"Prometheus at {url} answered {promql!r} without data")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return [Sample({}, _value(result[0]), _value(result[1]))]
    if kind != "vector" or not isinstance(result, list):
        raise PrometheusError(f"Prometheus at {url} answered {promql!r} with a {kind}, not an instant vector")
    out: list[Sample] = []
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("value"), list) or len(item["value"]) != 2:
            raise PrometheusError(f"Prometheus at {url} answered {promql!r} with a malformed sample: {item!r}")
        metric = item.get("metric") or {}
        labels = {str(k): str(v) for k, v in metric.items()} if isinstance(metric, dict) else {}
        out.append(Sample(labels, _value(item["value"][0]), _value(item["value"][1])))
    return out
