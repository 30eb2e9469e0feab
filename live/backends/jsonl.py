"""The recording format: JSON Lines, one record per line, written by the recorder, read by replay.

Records (``kind``):
* ``header`` (first line): ``schema``, ``backend``, ``driver_version``, ``nvml_version``,
  ``hostname``, ``interval_s``, ``synthetic`` (true when made with the fake backend) and ``note``;
* ``devices``: ``t`` and the device list (:class:`DeviceInfo`), written first and whenever it changes;
* ``sample``: one :class:`NodeSample`.

Fields that hold their default value are left out to keep files small; reading restores them.
A torn last line (the recorder was killed mid-write) is skipped with a warning; a bad line
anywhere else is an error naming the file and the line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from live.backends.base import DeviceInfo, DeviceSample, Health, MigInstance, NodeSample, ProcessSample
from twin import limits, yamlsafe
from twin.errors import TwinInputError, short

SCHEMA_VERSION = 1
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecordingHeader:
    backend: str
    driver_version: str = ""
    nvml_version: str = ""
    hostname: str = ""
    interval_s: float = 1.0
    synthetic: bool = False
    note: str = ""
    schema: int = SCHEMA_VERSION


def _compact(obj: Any) -> Any:
    """A dataclass as a dict without the fields that hold their default; tuples as lists."""
    if hasattr(obj, "__dataclass_fields__"):
        out: dict[str, Any] = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if f.default is not MISSING and value == f.default:
                continue  # the reader restores the default
            out[f.name] = _compact(value)
        return out
    if isinstance(obj, tuple | list):
        return [_compact(v) for v in obj]
    if isinstance(obj, Health):
        return obj.value
    return obj


def encode(kind: str, payload: Any) -> str:
    """One JSON line (no newline) for a record of ``kind``."""
    body = {"kind": kind, **_compact(payload)}
    if kind == "header":
        # Always explicit: readers must see synthetic=false too, and a later reader must know the schema.
        body["synthetic"] = payload.synthetic
        body["schema"] = payload.schema
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def _process(d: dict[str, Any]) -> ProcessSample:
    return ProcessSample(**d)


def decode_device_sample(d: dict[str, Any]) -> DeviceSample:
    d = dict(d)
    d["health"] = Health(d.get("health", Health.OK.value))
    d["processes"] = tuple(_process(p) for p in d.get("processes", ()))
    d["unsupported"] = tuple(d.get("unsupported", ()))
    return DeviceSample(**d)


def decode_device_info(d: dict[str, Any]) -> DeviceInfo:
    d = dict(d)
    d["mig_instances"] = tuple(MigInstance(**m) for m in d.get("mig_instances", ()))
    return DeviceInfo(**d)


@dataclass(frozen=True, slots=True)
class DevicesRecord:
    t: float
    devices: tuple[DeviceInfo, ...]


Record = RecordingHeader | DevicesRecord | NodeSample


def decode(line: str) -> Record:
    body = json.loads(line)
    kind = body.pop("kind")
    if kind == "header":
        return RecordingHeader(**body)
    if kind == "devices":
        return DevicesRecord(t=float(body["t"]), devices=tuple(decode_device_info(d) for d in body.get("devices", ())))
    if kind == "sample":
        return NodeSample(t=float(body["t"]), devices=tuple(decode_device_sample(d) for d in body.get("devices", ())))
    raise ValueError(f"unknown record kind {kind!r}")


def read_records(path: str | Path) -> Iterator[tuple[int, Record]]:
    """(line number, record) for every complete line; the header must come first."""
    file = str(path)
    text = yamlsafe.read_text(path, what="recording", max_bytes=limits.FILE_MAX_BYTES)
    lines = text.split("\n")
    torn_tail = not text.endswith("\n")  # a killed writer leaves the last line without its newline
    last = len(lines) - 1
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = decode(line)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as err:
            if torn_tail and number == last + 1:
                log.warning("%s:%d: skipped a torn last line (the recorder was stopped mid-write)", file, number)
                return
            raise TwinInputError(f"not a recording record: {short(str(err))}", file=file, line=number) from None
        if number == 1 and not isinstance(record, RecordingHeader):
            raise TwinInputError("the first line of a recording must be its header", file=file, line=1)
        if isinstance(record, RecordingHeader) and record.schema > SCHEMA_VERSION:
            raise TwinInputError(
                f"recording schema {record.schema} is newer than this reader ({SCHEMA_VERSION})",
                file=file,
                line=number,
                field="schema",
            )
        yield number, record
