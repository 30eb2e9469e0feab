"""Read multi-document YAML into a SpecBundle, collecting every error with its file, line, object and field."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from twin import yamlsafe
from twin.errors import TwinInputError, TwinInputErrors
from twin.resources import QuotaSpec, Resource
from twin.spec import annotations as A
from twin.spec.annotation_values import parse_annotation_values
from twin.spec.base import field_path
from twin.spec.go_values import ignored_go_values
from twin.spec.kube import Deployment, Job, ObjectMeta, Pod, ReplicaSet, StatefulSet
from twin.spec.tensorfusion import (
    GPU,
    TF_API_VERSION,
    GPUNode,
    GPUPool,
    GPUResourceQuota,
    SchedulingConfigTemplate,
    TensorFusionWorkload,
    WorkloadProfile,
)
from twin.spec.webhook import PodSource, WebhookContext, normalise
from twin.spec.worker import WorkerSpec

Controller = Deployment | StatefulSet | ReplicaSet | Job

# kind -> (apiVersion, model, namespaced)
KINDS: dict[str, tuple[str, type[BaseModel], bool]] = {
    "Pod": ("v1", Pod, True),
    "Deployment": ("apps/v1", Deployment, True),
    "StatefulSet": ("apps/v1", StatefulSet, True),
    "ReplicaSet": ("apps/v1", ReplicaSet, True),
    "Job": ("batch/v1", Job, True),
    "GPUPool": (TF_API_VERSION, GPUPool, False),
    "GPUNode": (TF_API_VERSION, GPUNode, False),
    "GPU": (TF_API_VERSION, GPU, False),
    "WorkloadProfile": (TF_API_VERSION, WorkloadProfile, True),
    "TensorFusionWorkload": (TF_API_VERSION, TensorFusionWorkload, True),
    "GPUResourceQuota": (TF_API_VERSION, GPUResourceQuota, True),
    "SchedulingConfigTemplate": (TF_API_VERSION, SchedulingConfigTemplate, False),
}
_EXTRA_KINDS: dict[str, tuple[str, type[BaseModel], bool]] = {}


def register_kind(kind: str, api_version: str, model: type[BaseModel], *, namespaced: bool = True) -> None:
    """Let another part of the twin (e.g. WVA objects) load its kinds from the same files into ``bundle.extra``."""
    if kind in KINDS:
        raise ValueError(f"kind {kind} is already a core kind")
    _EXTRA_KINDS[kind] = (api_version, model, namespaced)


def supported_kinds() -> list[str]:
    return sorted([*KINDS, *_EXTRA_KINDS])


@dataclass(frozen=True, slots=True)
class SpecWarning:
    """Something TensorFusion would accept but probably not what the author meant."""

    message: str
    file: str | None = None
    obj: str | None = None
    field: str | None = None
    line: int | None = None

    def render(self) -> str:
        where = []
        if self.file:
            where.append(f"{self.file}:{self.line}" if self.line is not None else self.file)
        if self.obj:
            where.append(self.obj)
        if self.field:
            where.append(f"field {self.field}")
        return f"{': '.join(where)}: {self.message}" if where else self.message


@dataclass(frozen=True, slots=True)
class Origin:
    file: str
    document: int  # 0-based index in the file
    line: int  # 1-based line where the document starts


@dataclass
class SpecBundle:
    """Every object read from the input files, by kind. Cluster-scoped kinds are keyed by name,
    namespaced TensorFusion kinds by (namespace, name), pods and controllers by ``Kind/ns/name``."""

    pods: dict[str, Pod] = field(default_factory=dict)
    controllers: dict[str, Controller] = field(default_factory=dict)
    pools: dict[str, GPUPool] = field(default_factory=dict)
    nodes: dict[str, GPUNode] = field(default_factory=dict)
    gpus: dict[str, GPU] = field(default_factory=dict)
    profiles: dict[tuple[str, str], WorkloadProfile] = field(default_factory=dict)
    workloads: dict[tuple[str, str], TensorFusionWorkload] = field(default_factory=dict)
    quotas: dict[tuple[str, str], GPUResourceQuota] = field(default_factory=dict)
    templates: dict[str, SchedulingConfigTemplate] = field(default_factory=dict)
    extra: dict[str, dict[str, BaseModel]] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)  # object id -> where it was read
    warnings: list[SpecWarning] = field(default_factory=list)
    yaml_nodes: dict[str, yaml.Node] = field(default_factory=dict, repr=False)  # object id -> its YAML tree

    def file_of(self, obj_id: str) -> str | None:
        origin = self.origins.get(obj_id)
        return origin.file if origin else None

    # --- derived views ---------------------------------------------------------------------------

    def quota_specs(self) -> tuple[dict[str, QuotaSpec], list[TwinInputError]]:
        """The quota in force per namespace (the first by name, as TensorFusion lists them) and the
        errors of invalid ones (TensorFusion ignores an invalid quota; the twin reports it)."""
        specs: dict[str, QuotaSpec] = {}
        errors: list[TwinInputError] = []
        for (ns, name), quota in sorted(self.quotas.items()):
            if ns in specs:
                continue
            try:
                specs[ns] = quota.to_quota_spec(file=self.file_of(f"GPUResourceQuota/{ns}/{name}"))
            except TwinInputError as err:
                errors.append(err)
        return specs, errors

    def model_capacity(self, extra: Mapping[str, Resource] | None = None) -> Mapping[str, Resource]:
        """GPU model -> per-device capacity, from the first GPU CR of each model (by name, as the
        webhook does); ``extra`` (e.g. hardware profiles) answers for models with no GPU CR."""
        capacity: dict[str, Resource] = {}
        for name in sorted(self.gpus):
            status = self.gpus[name].status
            if status.gpu_model and status.gpu_model not in capacity:
                capacity[status.gpu_model] = status.capacity.to_resource()
        return _LayeredCapacity(capacity, extra or {})

    def pod_sources(self) -> list[PodSource]:
        """Every TensorFusion-enabled pod and pod template, in input order."""
        out: list[PodSource] = []
        for obj_id, pod in self.pods.items():
            if pod.metadata.labels.get(A.ENABLED_LABEL) != "true":
                continue
            owner = pod.metadata.controller_owner()
            namespace = pod.metadata.namespace or "default"
            # A pod of a controller in the input counts that controller's replicas (gang size, canary).
            owner_obj = self.controllers.get(f"{owner.kind}/{namespace}/{owner.name}") if owner else None
            out.append(
                PodSource(
                    kind="Pod",
                    namespace=namespace,
                    name=obj_id.split("/", 2)[2],
                    meta=pod.metadata,
                    spec=pod.spec,
                    replicas=owner_obj.replicas if owner_obj is not None else 1,
                    has_controller=owner is not None,
                    owner_name=owner.name if owner else "",
                    meta_path="metadata",
                    file=self.file_of(obj_id),
                    obj=obj_id,
                )
            )
        for obj_id, ctl in self.controllers.items():
            template = ctl.template
            if template.metadata.labels.get(A.ENABLED_LABEL) != "true":
                continue
            out.append(
                PodSource(
                    kind=ctl.kind,
                    namespace=ctl.metadata.namespace or "default",
                    name=obj_id.split("/", 2)[2],
                    meta=template.metadata,
                    spec=template.spec,
                    replicas=ctl.replicas,
                    has_controller=True,
                    owner_name=obj_id.split("/", 2)[2],
                    meta_path="spec.template.metadata",
                    file=self.file_of(obj_id),
                    obj=obj_id,
                )
            )
        return out

    def check(
        self, model_capacity: Mapping[str, Resource] | None = None
    ) -> tuple[list[tuple[str, WorkerSpec]], list[TwinInputError]]:
        """Normalise every enabled pod (template); return the specs and every error found."""
        quotas, errors = self.quota_specs()
        ctx = WebhookContext(
            pools=self.pools,
            profiles=self.profiles,
            quotas=quotas,
            templates=self.templates,
            model_capacity=self.model_capacity(model_capacity),
        )
        specs: list[tuple[str, WorkerSpec]] = []
        for src in self.pod_sources():
            try:
                specs.append((src.obj_id, normalise(src, ctx)))
            except TwinInputErrors as many:
                errors.extend(many.errors)
            except TwinInputError as err:
                errors.append(err)
        return specs, [self._with_line(e) for e in errors]

    def _with_line(self, err: TwinInputError) -> TwinInputError:
        node = self.yaml_nodes.get(err.obj or "")
        if node is None or err.line is not None:
            return err
        loc = _loc_from_path(err.field or "")
        return TwinInputError(
            err.message,
            file=err.file,
            obj=err.obj,
            field=err.field,
            value=err.value,
            line=_line_of(node, loc),
            real_system_ignores=err.real_system_ignores,
        )

    def worker_specs(self, model_capacity: Mapping[str, Resource] | None = None) -> list[tuple[str, WorkerSpec]]:
        """(object id, WorkerSpec) for every enabled pod (template). Raises every error at once."""
        specs, errors = self.check(model_capacity)
        _raise_all(errors)
        return specs


class _LayeredCapacity(Mapping[str, Resource]):
    """GPU-CR capacities first, then ``fallback``, asked directly so an alias-aware mapping works."""

    def __init__(self, first: Mapping[str, Resource], fallback: Mapping[str, Resource]) -> None:
        self._first = first
        self._fallback = fallback

    def __getitem__(self, model: str) -> Resource:
        if model in self._first:
            return self._first[model]
        return self._fallback[model]

    def __iter__(self) -> Iterator[str]:
        yield from self._first
        yield from (k for k in self._fallback if k not in self._first)

    def __len__(self) -> int:
        return sum(1 for _ in self)


_PATH_PART = re.compile(r'\.?([A-Za-z0-9_-]+)|\["([^"]*)"\]|\[([0-9]+)\]')


def _loc_from_path(path: str) -> tuple[int | str, ...]:
    """The inverse of ``field_path``: ``a.b["x/y"][2]`` -> ("a", "b", "x/y", 2)."""
    loc: list[int | str] = []
    for m in _PATH_PART.finditer(path):
        loc.append(int(m[3]) if m[3] is not None else (m[1] if m[1] is not None else m[2]))
    return tuple(loc)


def _combined(errors: Sequence[TwinInputError]) -> TwinInputError:
    return errors[0] if len(errors) == 1 else TwinInputErrors(list(errors))


def _raise_all(errors: Sequence[TwinInputError]) -> None:
    if errors:
        raise _combined(errors)


# --- YAML -> objects ----------------------------------------------------------------------------


def _yaml_documents(text: str, source: str) -> Iterator[tuple[int, yaml.Node | None, Any]]:
    return yamlsafe.documents(text, source)


def _line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The line of the deepest key on ``loc`` that exists in the YAML tree (1-based)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            hit = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if hit is None:
                return line
            line, node = hit[0].start_mark.line + 1, hit[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _pydantic_errors(err: ValidationError, node: yaml.Node | None, file: str, obj: str) -> list[TwinInputError]:
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        message = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "string_type" and len(loc) >= 2 and loc[-2] in ("labels", "annotations"):
            message = "label and annotation values must be strings in Kubernetes; quote the value"
        value = None if e["type"] == "missing" else e.get("input")
        out.append(
            TwinInputError(message, file=file, obj=obj, field=field_path(loc), value=value, line=_line_of(node, loc))
        )
    return out


class _Builder:
    def __init__(self) -> None:
        self.bundle = SpecBundle()
        self.errors: list[TwinInputError] = []
        self._unnamed = 0

    def add_text(self, text: str, source: str) -> int:
        """Add every document; returns how many were not empty."""
        found = 0
        try:
            for index, node, data in _yaml_documents(text, source):
                if data is None:
                    continue  # an empty document, e.g. between two '---'
                found += 1
                self._add_document(data, node, source, index)
        except TwinInputError as err:
            self.errors.append(err)
            return -1
        return found

    def add_path(self, path: Path) -> None:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            if not files:
                self.errors.append(TwinInputError("no .yaml or .yml files in this folder", file=str(path)))
            for f in files:
                self.add_path(f)
            return
        try:
            text = yamlsafe.read_text(path, what="manifest file")
        except TwinInputError as err:
            self.errors.append(err)
            return
        if self.add_text(text, str(path)) == 0:
            # An empty file (or a wrong path truncated by a shell redirect) is never what was meant.
            self.errors.append(TwinInputError("the file holds no Kubernetes objects", file=str(path)))

    def _add_document(self, data: Any, node: yaml.Node | None, file: str, index: int) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        here = f"document {index + 1}"
        if not isinstance(data, dict):
            self.errors.append(
                TwinInputError(f"{here} is not a mapping (a Kubernetes object)", file=file, line=line, value=data)
            )
            return
        kind = data.get("kind")
        if not kind:
            self.errors.append(TwinInputError(f"{here} has no kind", file=file, line=line, field="kind", obj=here))
            return
        entry = KINDS.get(kind) or _EXTRA_KINDS.get(kind)
        if entry is None:
            self.errors.append(
                TwinInputError(
                    f"{here}: unknown kind; supported kinds: {', '.join(supported_kinds())}",
                    file=file,
                    line=line,
                    field="kind",
                    value=kind,
                )
            )
            return
        api_version, model, namespaced = entry
        raw_meta = data.get("metadata")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        raw_name = meta.get("name") if isinstance(meta.get("name"), str) else ""
        namespace = (meta.get("namespace") if isinstance(meta.get("namespace"), str) else None) or "default"
        name = raw_name
        generate_name = meta.get("generateName") if isinstance(meta.get("generateName"), str) else ""
        if not name:
            # Kubernetes names generateName objects on create; the twin numbers them in input order.
            self._unnamed += 1
            name = f"{generate_name}<generated-{self._unnamed}>" if generate_name else f"<unnamed-{self._unnamed}>"
        obj = f"{kind}/{namespace}/{name}" if namespaced else f"{kind}/{name}"
        if data.get("apiVersion") != api_version:
            self.errors.append(
                TwinInputError(
                    f"apiVersion must be {api_version!r} for kind {kind}",
                    file=file,
                    obj=obj,
                    field="apiVersion",
                    value=data.get("apiVersion"),
                    line=_line_of(node, ("apiVersion",)),
                )
            )
            return
        try:
            parsed = model.model_validate(data)
        except ValidationError as err:
            self.errors.extend(_pydantic_errors(err, node, file, obj))
            return
        if obj in self.bundle.origins:
            first = self.bundle.origins[obj]
            self.errors.append(
                TwinInputError(
                    f"duplicate object; first defined in {first.file}:{first.line}", file=file, obj=obj, line=line
                )
            )
            return
        self.bundle.origins[obj] = Origin(file=file, document=index, line=line or 1)
        if node is not None:
            self.bundle.yaml_nodes[obj] = node
        if not raw_name and not generate_name:
            self.bundle.warnings.append(SpecWarning("object has no metadata.name", file, obj, "metadata.name", line))
        self._store(kind, parsed, obj, name, namespace)
        self._warn_annotations(parsed, file, obj, node)
        has_autoscaling = isinstance(parsed, (WorkloadProfile, TensorFusionWorkload, SchedulingConfigTemplate))
        for loc, key, value in ignored_go_values(parsed) if has_autoscaling else ():
            sub = (*loc, key)
            self.bundle.warnings.append(
                SpecWarning(
                    f"{value!r} is not a Go float (strconv.ParseFloat): TensorFusion ignores it and keeps "
                    'the default; write a plain number such as "0.95"',
                    file,
                    obj,
                    field_path(sub),
                    _line_of(node, sub),
                )
            )

    def _store(self, kind: str, parsed: BaseModel, obj: str, name: str, namespace: str) -> None:
        b = self.bundle
        if isinstance(parsed, Pod):
            b.pods[obj] = parsed
        elif isinstance(parsed, (Deployment, Job)):  # StatefulSet and ReplicaSet subclass Deployment
            b.controllers[obj] = parsed
        elif isinstance(parsed, GPUPool):
            b.pools[name] = parsed
        elif isinstance(parsed, GPUNode):
            b.nodes[name] = parsed
        elif isinstance(parsed, GPU):
            b.gpus[name] = parsed
        elif isinstance(parsed, WorkloadProfile):
            b.profiles[(namespace, name)] = parsed
        elif isinstance(parsed, TensorFusionWorkload):
            b.workloads[(namespace, name)] = parsed
        elif isinstance(parsed, GPUResourceQuota):
            b.quotas[(namespace, name)] = parsed
        elif isinstance(parsed, SchedulingConfigTemplate):
            b.templates[name] = parsed
        else:
            b.extra.setdefault(kind, {})[obj] = parsed

    def _warn_annotations(self, parsed: BaseModel, file: str, obj: str, node: yaml.Node | None) -> None:
        metas: list[tuple[ObjectMeta, tuple[str, ...]]] = []
        if isinstance(parsed, Pod):
            metas.append((parsed.metadata, ("metadata",)))
        elif isinstance(parsed, (Deployment, Job)):
            metas.append((parsed.template.metadata, ("spec", "template", "metadata")))
        for meta, loc in metas:
            path = ".".join(loc)
            for key, message in A.annotation_warnings(meta.annotations):
                sub = (*loc, "annotations", key)
                self.bundle.warnings.append(SpecWarning(message, file, obj, field_path(sub), _line_of(node, sub)))
            for key, message in A.label_warnings(meta.labels):
                sub = (*loc, "labels", key)
                self.bundle.warnings.append(SpecWarning(message, file, obj, field_path(sub), _line_of(node, sub)))
            uses_tf = any(k.startswith(A.PREFIX) for k in meta.annotations)
            if uses_tf and A.ENABLED_LABEL not in meta.labels:
                self.bundle.warnings.append(
                    SpecWarning(
                        f'has tensor-fusion.ai annotations but no label {A.ENABLED_LABEL}: "true"; '
                        "TensorFusion leaves it alone",
                        file,
                        obj,
                        f"{path}.labels",
                        _line_of(node, loc),
                    )
                )

    def finish_quota_warnings(self) -> None:
        seen: dict[str, str] = {}
        for ns, name in sorted(self.bundle.quotas):
            if ns in seen:
                self.bundle.warnings.append(
                    SpecWarning(
                        f"namespace {ns} has several GPUResourceQuotas; TensorFusion uses only {seen[ns]}",
                        self.bundle.file_of(f"GPUResourceQuota/{ns}/{name}"),
                        f"GPUResourceQuota/{ns}/{name}",
                    )
                )
            else:
                seen[ns] = name


def load_documents_lenient(paths: Sequence[str | Path]) -> tuple[SpecBundle, list[TwinInputError]]:
    """Everything that loaded, plus every error (``twin validate`` reports them all)."""
    builder = _Builder()
    for path in paths:
        builder.add_path(Path(path))
    builder.finish_quota_warnings()
    return builder.bundle, builder.errors


def load_documents(paths: Sequence[str | Path]) -> SpecBundle:
    """Read YAML files (or folders of them). Raises TwinInputError(s) naming every problem."""
    bundle, errors = load_documents_lenient(paths)
    _raise_all(errors)
    return bundle


def parse_annotation_block(text: str, source_name: str = "<string>") -> dict[str, Any]:
    """Check a metadata fragment as docs show it (``metadata: {annotations: ..., labels: ...}``, or a bare
    ``key: value`` annotation map) and return the typed annotation values. Raises every error at once."""
    data = yamlsafe.load(text, source_name)
    if not isinstance(data, dict):
        raise TwinInputError("expected a mapping of annotations", file=source_name, value=data)
    meta_raw = data["metadata"] if isinstance(data.get("metadata"), dict) else {"annotations": data}
    try:
        meta = ObjectMeta.model_validate(meta_raw)
    except ValidationError as err:
        raise _combined(_pydantic_errors(err, None, source_name, "metadata")) from None
    values, errors = parse_annotation_values(meta.annotations, file=source_name)
    _raise_all(errors)
    return values


def parse_documents_lenient(text: str, source_name: str = "<string>") -> tuple[SpecBundle, list[TwinInputError]]:
    builder = _Builder()
    builder.add_text(text, source_name)
    builder.finish_quota_warnings()
    return builder.bundle, builder.errors


def parse_documents(text: str, source_name: str = "<string>") -> SpecBundle:
    """Like load_documents, for YAML already in memory."""
    bundle, errors = parse_documents_lenient(text, source_name)
    _raise_all(errors)
    return bundle
