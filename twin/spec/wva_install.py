"""A WVA installation file: the Helm commands of the seed (or their structured form), plus plain manifests.

```yaml
kind: WVAInstallation
chartVersion: 0.4.3                  # the chart every step uses unless it says --version
steps:
  - helm install wva-controller ./charts/workload-variant-autoscaler -n workload-variant-autoscaler-system
      --create-namespace --set installMode=controller-only --set wva.namespaceScoped=false
  - {action: install, release: wva-model-a, namespace: default,
     set: {installMode: model-resources-only, llmd.namespace: llm-d-model-a}, values: model-a-values.yaml}
manifests: [hpa-override.yaml]       # HorizontalPodAutoscalers applied beside Helm (optional)
```

A step string is read the way a shell would (quotes, backslash line continuations) and then as Helm
reads its flags: ``install NAME CHART``, ``upgrade [--install] NAME CHART``, ``uninstall NAME``, ``-n/--namespace``,
``--set``/``--set-string`` (comma-separated pairs), ``--set-file`` (the path is recorded, not read),
``-f/--values`` (a YAML file of nested values, relative to the installation file), ``--version``.
Later ``--set`` wins over ``-f``, as in Helm. Every input is bounded.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from twin import yamlsafe
from twin.errors import TwinInputError

Action = Literal["install", "upgrade", "uninstall"]


def parse_version(text: str) -> tuple[int, int, int]:
    """``v0.4.3`` / ``0.4.3`` / ``0.5`` -> (0, 4, 3); ValueError otherwise."""
    parts = text.strip().lstrip("v").split("-")[0].split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        raise ValueError(f"not a chart version: {text[:40]!r}")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return nums[0], nums[1], nums[2]


@dataclass(frozen=True)
class HelmStep:
    """One ``helm install|upgrade|uninstall`` of the WVA chart (values already flattened to dotted keys)."""

    action: Action
    release: str
    namespace: str
    values: Mapping[str, str]
    chart_version: tuple[int, int, int]
    install_if_missing: bool = False  # ``helm upgrade --install``
    source: str = ""  # where it came from, for messages (file:step)


@dataclass(frozen=True)
class KubeObject:
    """A rendered object: identity plus the few fields the diagnosis reads."""

    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str
    fields: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.kind, self.namespace, self.name

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


MAX_FILE_BYTES = 1_000_000
MAX_STEPS = 200
MAX_VALUES = 500
MAX_DEPTH = 16
_IGNORED_FLAGS = {"--create-namespace", "--wait", "--atomic", "--debug", "--dry-run", "--install"}


@dataclass(frozen=True)
class Installation:
    file: str
    chart_version: tuple[int, int, int]
    steps: tuple[HelmStep, ...]
    manifests: tuple[KubeObject, ...]


def load_installation(path: Path) -> Installation:
    file = str(path)
    doc = _read_yaml(path)
    if not isinstance(doc, dict) or doc.get("kind") != "WVAInstallation":
        raise TwinInputError("a WVA installation file is a mapping with kind: WVAInstallation", file=file, field="kind")
    unknown = sorted(set(doc) - {"kind", "apiVersion", "chartVersion", "steps", "manifests"})
    if unknown:
        raise TwinInputError("unknown field", file=file, field=str(unknown[0]))
    version = _version(doc.get("chartVersion", "0.5.0"), file, "chartVersion")
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise TwinInputError("needs a non-empty list of steps", file=file, field="steps")
    if len(raw_steps) > MAX_STEPS:
        raise TwinInputError(f"at most {MAX_STEPS} steps", file=file, field="steps", value=len(raw_steps))
    steps = tuple(_step(raw, path, version, f"steps[{i}]") for i, raw in enumerate(raw_steps))
    manifests = tuple(m for i, name in enumerate(doc.get("manifests") or []) for m in _manifest(path, name, i))
    return Installation(file, version, steps, manifests)


def _read_yaml(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise TwinInputError(f"cannot read: {err.strerror}", file=str(path)) from err
    if len(raw) > MAX_FILE_BYTES:
        raise TwinInputError(f"larger than {MAX_FILE_BYTES:,} bytes", file=str(path))
    # The shared bounded reader: alias expansion and nesting are measured before construction.
    return yamlsafe.load(yamlsafe.decode(raw, str(path)), str(path))


def _version(value: object, file: str, where: str) -> tuple[int, int, int]:
    try:
        return parse_version(str(value))
    except ValueError as err:
        raise TwinInputError(str(err), file=file, field=where, value=str(value)[:40]) from err


def _step(raw: object, path: Path, version: tuple[int, int, int], where: str) -> HelmStep:
    source = f"{path.name}:{where}"
    if isinstance(raw, str):
        return _helm_command(raw, path, version, where, source)
    if isinstance(raw, dict):
        return _structured(raw, path, version, where, source)
    raise TwinInputError("a step is a helm command string or a mapping", file=str(path), field=where)


def _structured(raw: dict[str, Any], path: Path, version: tuple[int, int, int], where: str, source: str) -> HelmStep:
    file = str(path)
    allowed = {"action", "release", "namespace", "set", "values", "version", "install"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise TwinInputError("unknown field", file=file, field=f"{where}.{unknown[0]}")
    action = raw.get("action", "install")
    if action not in ("install", "upgrade", "uninstall"):
        raise TwinInputError("must be install, upgrade or uninstall", file=file, field=f"{where}.action", value=action)
    release = raw.get("release")
    if not isinstance(release, str) or not release:
        raise TwinInputError("needs a release name", file=file, field=f"{where}.release")
    values: dict[str, str] = {}
    if raw.get("values") is not None:
        values.update(_values_file(path, str(raw["values"]), f"{where}.values"))
    sets = raw.get("set") or {}
    if not isinstance(sets, dict):
        raise TwinInputError("must be a mapping of dotted keys", file=file, field=f"{where}.set")
    values.update(_flatten(sets, file, f"{where}.set"))
    step_version = _version(raw["version"], file, f"{where}.version") if "version" in raw else version
    return HelmStep(
        action,
        release,
        str(raw.get("namespace", "default")),
        _bounded(values, file, where),
        step_version,
        install_if_missing=bool(raw.get("install", False)),
        source=source,
    )


def _helm_command(text: str, path: Path, version: tuple[int, int, int], where: str, source: str) -> HelmStep:
    file = str(path)
    try:
        words = shlex.split(text.replace("\\\n", " "), comments=True)
    except ValueError as err:
        raise TwinInputError(f"cannot split the command: {err}", file=file, field=where, value=text[:80]) from err
    if len(words) < 3 or words[0] != "helm" or words[1] not in ("install", "upgrade", "uninstall"):
        raise TwinInputError(
            "expected 'helm install|upgrade|uninstall ...'", file=file, field=where, value=" ".join(words[:3])
        )
    action = words[1]
    namespace, positional, values, sets, install_if_missing = "default", [], {}, {}, False
    step_version = version
    valued = {"-n", "--namespace", "--set", "--set-string", "--set-file", "-f", "--values", "--version"}
    tokens: list[str] = []
    for word in words[2:]:  # "--set=a=1" reads as "--set a=1"
        head, eq, rest = word.partition("=")
        tokens += [head, rest] if word.startswith("--") and eq and head in valued else [word]
    i = 0
    while i < len(tokens):
        flag = tokens[i]
        if flag in valued:
            if i + 1 >= len(tokens):
                raise TwinInputError(f"{flag} needs a value", file=file, field=where)
            i += 1
            value = tokens[i]
            if flag in ("-n", "--namespace"):
                namespace = value
            elif flag in ("--set", "--set-string"):
                for pair in _split_pairs(value):
                    key, sep, item = pair.partition("=")
                    if not sep or not key:
                        raise TwinInputError("--set needs key=value", file=file, field=where, value=pair[:80])
                    sets[key] = item
            elif flag == "--set-file":
                key, _, item = value.partition("=")
                sets[key] = f"<file:{item}>"
            elif flag in ("-f", "--values"):
                values.update(_values_file(path, value, where))
            else:
                step_version = _version(value, file, where + " --version")
        elif flag == "--install" and action == "upgrade":
            install_if_missing = True
        elif flag in _IGNORED_FLAGS:
            pass
        elif flag.startswith("-"):
            raise TwinInputError("unsupported helm flag", file=file, field=where, value=flag[:40])
        else:
            positional.append(flag)
        i += 1
    needed = 1 if action == "uninstall" else 2
    if len(positional) != needed:
        raise TwinInputError(
            f"helm {action} takes {'NAME' if needed == 1 else 'NAME CHART'}", file=file, field=where, value=positional
        )
    values.update(sets)
    return HelmStep(
        action,  # type: ignore[arg-type]  # checked against the three actions above
        positional[0],
        namespace,
        _bounded(values, file, where),
        step_version,
        install_if_missing=install_if_missing,
        source=source,
    )


def _split_pairs(text: str) -> list[str]:
    """Helm splits ``--set a=1,b=2`` on commas not escaped with a backslash."""
    parts, current, escaped = [], "", False
    for ch in text:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p]


def _values_file(path: Path, name: str, where: str) -> dict[str, str]:
    target = Path(name) if Path(name).is_absolute() else path.parent / name
    data = _read_yaml(target)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TwinInputError("a values file is a YAML mapping", file=str(target), field=where)
    return _flatten(data, str(target), where)


def _flatten(data: Mapping[str, Any], file: str, where: str, prefix: str = "", depth: int = 0) -> dict[str, str]:
    if depth > MAX_DEPTH:
        raise TwinInputError(f"values nested deeper than {MAX_DEPTH}", file=file, field=where)
    out: dict[str, str] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, file, where, dotted + ".", depth + 1))
        elif isinstance(value, bool):
            out[dotted] = "true" if value else "false"
        elif value is None or isinstance(value, str | int | float):
            out[dotted] = "" if value is None else str(value)
        else:
            raise TwinInputError("values are scalars or mappings", file=file, field=f"{where}.{dotted}")
    return out


def _bounded(values: dict[str, str], file: str, where: str) -> dict[str, str]:
    if len(values) > MAX_VALUES:
        raise TwinInputError(f"more than {MAX_VALUES} values", file=file, field=where, value=len(values))
    return {k[:200]: v[:1000] for k, v in values.items()}


def _manifest(installation: Path, name: object, index: int) -> list[KubeObject]:
    """HorizontalPodAutoscalers from a plain manifest file, flattened to the fields the diagnosis reads."""
    target = installation.parent / str(name)
    try:
        docs = list(yaml.safe_load_all(target.read_bytes()[: MAX_FILE_BYTES + 1].decode("utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
        raise TwinInputError("cannot read the manifest", file=str(target), field=f"manifests[{index}]") from err
    out: list[KubeObject] = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "HorizontalPodAutoscaler":
            continue
        meta = doc.get("metadata") or {}
        spec = doc.get("spec") or {}
        fields = {
            "spec.scaleTargetRef.name": str((spec.get("scaleTargetRef") or {}).get("name", "")),
            "spec.minReplicas": str(spec.get("minReplicas", 1)),
            "spec.maxReplicas": str(spec.get("maxReplicas", "")),
        }
        for m, metric in enumerate(spec.get("metrics") or []):
            ext = (metric or {}).get("external") or {}
            mm = ext.get("metric") or {}
            if m == 0:
                fields["spec.metrics[0].external.metric.name"] = str(mm.get("name", ""))
                labels = (mm.get("selector") or {}).get("matchLabels") or {}
                for k, v in labels.items():
                    fields[f"spec.metrics[0].external.metric.selector.matchLabels.{k}"] = str(v)
        out.append(
            KubeObject(
                "HorizontalPodAutoscaler", str(meta.get("namespace", "default")), str(meta.get("name", "")), fields
            )
        )
    return out
