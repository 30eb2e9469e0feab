"""Runs that carry their inputs: what a worker on another machine needs instead of paths.

A path means nothing on a Dask worker in another folder or on another machine, so a shipped run
carries its inputs (``twin.experiments.run_inputs``) by content hash. The client publishes each
distinct file once as a Dask task keyed by its hash (so it is recomputed from the client's copy if
the worker holding it dies); every run depends on the blobs it needs, so each worker fetches a file
once. On the worker the bytes land in a local cache named by hash, and the run is pointed at those
copies with overrides appended after the user's (``workloads.0.arrival.file=/tmp/.../<sha>.csv``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from twin.atomic import atomic_write_bytes
from twin.experiments.run_inputs import InputFile, RunInputs


def cache_dir() -> Path:
    """Per-user folder where a worker keeps shipped inputs (``$TWIN_INPUT_CACHE`` overrides it)."""
    env = os.environ.get("TWIN_INPUT_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / f"twin-inputs-{os.getuid()}"


def _materialise(f: InputFile, data: bytes, folder: Path) -> Path:
    target = folder / f"{f.sha256}{f.suffix}"
    if target.is_file() and target.stat().st_size == len(data):
        return target  # written atomically before, so complete
    if hashlib.sha256(data).hexdigest() != f.sha256:
        raise RuntimeError(f"shipped copy of {f.path} does not match its hash {f.sha256[:12]}")
    return atomic_write_bytes(target, data)


def localise(inputs: RunInputs, blobs: Mapping[str, bytes], folder: Path | None = None) -> tuple[str, list[str]]:
    """Write the shipped files into the cache; return the main file's copy and the overrides that
    point every reference at its copy."""
    where = folder or cache_dir()
    main = _materialise(inputs.main, blobs[inputs.main.sha256], where)
    extra = [f"{ref.key}={_materialise(ref, blobs[ref.sha256], where)}" for ref in inputs.refs]
    return str(main), extra


def execute_shipped(
    runner: str, inputs: RunInputs, seed: int, overrides: Sequence[str], blobs: Mapping[str, bytes]
) -> dict[str, float]:
    """Runs on the worker: localise the inputs, then run exactly as the local executor would."""
    from twin.experiments.sweep import execute

    main, extra = localise(inputs, blobs)
    return execute(runner, main, seed, [*overrides, *extra])


def read_blob(path: str) -> bytes:
    return Path(path).read_bytes()


def identity(data: bytes) -> bytes:
    """The task that publishes one input file: its result is the bytes it was given."""
    return data
