"""Every file one run reads, by content hash: the single source for run keys and for shipping runs.

A sweep's run key must change when anything the run reads changes, and a run shipped to another
machine must carry everything it reads. Both need the same list, so it is computed here once:

* the main file (a scenario YAML, or a pod list for the FGD paper runs);
* every file the scenario references *after* the run's ``--set`` overrides are applied: replay
  arrival CSVs (``workloads.N.arrival.file``), usage traces (``workloads.N.usage.compute.file``,
  ``...vram_gib.file``), manifest files (``workloads.N.manifest`` naming a .yaml/.yml file), a
  serving scenario's request trace (``traffic.csv``, ``traffic.azure.file``) and model configs
  (``variants.N.model`` naming a .json file); relative paths resolve against the scenario's folder,
  as ``twin run`` resolves them;
* extra named inputs that a runner takes as ``key=path`` overrides (the paper runs' node list).

Each reference records the dotted override key that names it, so a worker on another machine can
point the run at its own copy with one more ``--set``-style override (see ``twin.experiments.shipping``).
The twin's version is part of every run key: the package version and a hash of the twin's own
sources, so results computed by other code are never reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from twin.errors import TwinInputError

_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """One file a run reads. ``key`` is the override naming it (None for the main file)."""

    key: str | None
    path: str  # absolute, on the machine that planned the run
    sha256: str

    @property
    def suffix(self) -> str:
        """The file's extension, kept on shipped copies (a manifest is recognised by .yaml/.yml)."""
        suffix = Path(self.path).suffix
        return suffix if suffix[1:].isalnum() and len(suffix) <= 8 else ""


@dataclass(frozen=True)
class RunInputs:
    main: InputFile
    refs: tuple[InputFile, ...]  # sorted by key
    named: bool = False  # refs are passed to the runner as ``key=path`` overrides (not named by the scenario)

    @property
    def files(self) -> tuple[InputFile, ...]:
        return (self.main, *self.refs)

    def digest(self) -> str:
        """Content of every input plus the twin's version: equal digests read equal bytes."""
        payload = [twin_version(), self.main.sha256, [[f.key, f.sha256] for f in self.refs]]
        return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def file_sha256(path: str | Path, *, what: str = "input") -> str:
    h = hashlib.sha256()
    try:
        with Path(path).open("rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
    except OSError as err:
        raise TwinInputError(f"cannot read the {what}: {err.strerror}", file=str(path)) from None
    return h.hexdigest()


@cache
def _hash_of(path: str, mtime_ns: int, size: int) -> str:
    """Memoised by (path, mtime, size): a sweep plans many runs over the same few files."""
    return file_sha256(path)


def hashed(key: str | None, path: str | Path, *, what: str = "input") -> InputFile:
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as err:
        raise TwinInputError(f"cannot read the {what}: {err.strerror}", file=str(path)) from None
    if not p.is_file():
        raise TwinInputError(f"the {what} is not a file", file=str(path))
    return InputFile(key, str(p), _hash_of(str(p), st.st_mtime_ns, st.st_size))


@cache
def twin_version() -> str:
    """``<package version>+<hash of the twin's sources and bundled data>``."""
    from twin import __version__

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml", ".yml", ".csv", ".json")):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return f"{__version__}+{h.hexdigest()[:12]}"


def scenario_references(data: Any) -> Iterator[tuple[str, str]]:
    """``(override key, path as written)`` for every file a raw scenario mapping names."""
    if not isinstance(data, Mapping):
        return
    traffic = data.get("traffic")
    if isinstance(traffic, Mapping):
        if isinstance(traffic.get("csv"), str):
            yield "traffic.csv", traffic["csv"]
        azure = traffic.get("azure")
        if isinstance(azure, Mapping) and isinstance(azure.get("file"), str):
            yield "traffic.azure.file", azure["file"]
    variants = data.get("variants")
    if isinstance(variants, list):
        for i, variant in enumerate(variants):
            # A model is a catalogue name or a config.json path (serving_scenario._step_model).
            model = variant.get("model") if isinstance(variant, Mapping) else None
            if isinstance(model, str) and model.endswith(".json"):
                yield f"variants.{i}.model", model
    workloads = data.get("workloads")
    if not isinstance(workloads, list):
        return
    for i, wl in enumerate(workloads):
        if not isinstance(wl, Mapping):
            continue
        arrival = wl.get("arrival")
        if isinstance(arrival, Mapping) and isinstance(arrival.get("file"), str):
            yield f"workloads.{i}.arrival.file", arrival["file"]
        usage = wl.get("usage")
        if isinstance(usage, Mapping):
            for resource in ("compute", "vram_gib"):
                prof = usage.get(resource)
                if isinstance(prof, Mapping) and isinstance(prof.get("file"), str):
                    yield f"workloads.{i}.usage.{resource}.file", prof["file"]
        manifest = wl.get("manifest")
        # The engine's rule (sim/sources.py): a one-line string ending in .yaml/.yml is a file name.
        if isinstance(manifest, str) and "\n" not in manifest and manifest.strip().endswith((".yaml", ".yml")):
            yield f"workloads.{i}.manifest", manifest.strip()


def _raw_with_overrides(path: Path, overrides: Sequence[str]) -> Any:
    """The scenario's data as the runner will see it; None when it is not YAML (the runner says why)."""
    from twin.scenario import apply_override

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    for text in overrides:
        try:
            apply_override(data, text)
        except TwinInputError:
            return None  # the runner reports the bad override with its full context
    return data


def scenario_inputs(scenario: str | Path, overrides: Sequence[str] = ()) -> RunInputs:
    """The scenario file and every file it references once ``overrides`` are applied."""
    path = Path(scenario)
    main = hashed(None, path, what="scenario")
    base = Path(main.path).parent
    refs: dict[str, InputFile] = {}
    for key, written in scenario_references(_raw_with_overrides(path, overrides)):
        refs[key] = hashed(key, _resolve(key, written, base), what=f"file named by {key}")
    return RunInputs(main, tuple(refs[k] for k in sorted(refs)))


def _resolve(key: str, written: str, base: Path) -> Path:
    if key == "traffic.azure.file":  # `code`/`conv` name the public Azure files in the shared folder
        from twin.sim.azure_trace import resolve_azure_source

        return resolve_azure_source(written, base)
    ref = Path(written)
    return ref if ref.is_absolute() else base / ref


def named_inputs(main: str | Path, named: Mapping[str, str | Path]) -> RunInputs:
    """A main file plus inputs passed to the runner as ``key=path`` overrides (the paper runs)."""
    refs = tuple(hashed(k, named[k]) for k in sorted(named))
    return RunInputs(hashed(None, main), refs, named=True)
