"""The workers file: which processes on this node are which vGPU workers, and what they asked for.

```yaml
pool: local                 # pool of this node's GPUs (default "local")
spec_files: [quota.yaml]    # optional TensorFusion documents (GPUPool, WorkloadProfile, GPUResourceQuota)
tflops: {"NVIDIA Foo": 312} # optional: dense FP16 TFLOPs of models missing from hw_profiles/
workers:
  - name: trainer
    namespace: default
    pids: [4101]            # running processes of this worker, or
    container: 3f2a9c       # a container id (prefix): its processes are found through /proc/<pid>/cgroup
    command: [python, train.py]   # what the launcher actuator starts for a pending worker
    pending: false          # may the agent place it? default: true only without pids and container
    annotations:            # TensorFusion pod annotations, normalised exactly like the webhook does
      tensor-fusion.ai/tflops-request: "100"
      tensor-fusion.ai/vram-request: 20Gi
```

A worker given by ``pids`` or ``container`` is an existing process set: it is booked where it runs
when its processes appear (and released when they exit); the agent never places it. A worker with
neither is pending: the agent places it and, with the launcher actuator, starts its ``command``.

Annotations go through ``twin.spec`` (the same normalisation the simulator uses): each worker
becomes a Pod document labelled ``tensor-fusion.ai/enabled: "true"``. When the spec files define no
GPUPool, a default pool named ``pool`` is added so pods without a ``gpupool`` annotation resolve.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from twin import yamlsafe
from twin.errors import TwinInputError, TwinInputErrors
from twin.policy.quota import QuotaStore
from twin.resources import AllocRequest, QuotaSpec, Resource
from twin.spec.loader import SpecBundle, load_documents, parse_documents
from twin.spec.worker import WorkerSpec

ENABLED_LABEL = "tensor-fusion.ai/enabled"
DEFAULT_POOL_ANNOTATION = "tensor-fusion.ai/is-default-pool"


class _WorkerModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    namespace: str = "default"
    pids: list[int] = Field(default_factory=list)
    container: str | None = Field(default=None, min_length=6)
    command: list[str] = Field(default_factory=list)
    pending: bool | None = None  # default: pending when neither pids nor container is given
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_way_to_find_processes(self) -> _WorkerModel:
        if self.pids and self.container:
            raise ValueError("give pids or container, not both")
        if any(p <= 0 for p in self.pids):
            raise ValueError("pids must be positive")
        return self


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    pool: str = "local"
    spec_files: list[str] = Field(default_factory=list)
    tflops: dict[str, float] = Field(default_factory=dict)
    workers: list[_WorkerModel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> _FileModel:
        keys = [(w.namespace, w.name) for w in self.workers]
        dupes = sorted({f"{ns}/{n}" for ns, n in keys if keys.count((ns, n)) > 1})
        if dupes:
            raise ValueError(f"worker names must be unique per namespace; repeated: {', '.join(dupes)}")
        pids = [p for w in self.workers for p in w.pids]
        if len(pids) != len(set(pids)):
            raise ValueError("a PID may belong to one worker only")
        return self


@dataclass(frozen=True, slots=True)
class Worker:
    """One worker of the file, normalised. ``uid`` is ``namespace/name`` (unique on this node)."""

    uid: str
    name: str
    namespace: str
    spec: WorkerSpec
    pids: tuple[int, ...] = ()
    container: str | None = None
    command: tuple[str, ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()  # as written, for snapshots (twin live fork)
    placeable: bool = True  # the agent may place it (it is not an already-running process set)

    def request(self) -> AllocRequest:
        return self.spec.to_alloc_request(self.uid, self.name)


@dataclass(frozen=True, slots=True)
class WorkersFile:
    pool: str
    workers: tuple[Worker, ...]
    quotas: Mapping[str, QuotaSpec]
    tflops: Mapping[str, float]

    def quota_store(self) -> QuotaStore:
        return QuotaStore(self.quotas)

    def worker(self, uid: str) -> Worker:
        for w in self.workers:
            if w.uid == uid:
                return w
        raise KeyError(uid)


def _pod_document(w: _WorkerModel) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": w.name,
            "namespace": w.namespace,
            "labels": {**w.labels, ENABLED_LABEL: "true"},
            "annotations": dict(w.annotations),
        },
        "spec": {"containers": [{"name": "main", "image": "live-worker"}]},
    }


def _pool_document(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "tensor-fusion.ai/v1",
        "kind": "GPUPool",
        "metadata": {"name": name, "annotations": {DEFAULT_POOL_ANNOTATION: "true"}},
    }


def parse_workers(
    data: Any,
    *,
    file: str = "<workers>",
    base_dir: Path | None = None,
    model_capacity: Mapping[str, Resource] | None = None,
) -> WorkersFile:
    """Validate a workers document (already parsed YAML) and normalise each worker's annotations."""
    try:
        model = _FileModel.model_validate(data if data is not None else {})
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise TwinInputError(first["msg"], file=file, field=loc or None, value=first.get("input")) from None
    base = base_dir or Path(".")
    bundle = load_documents([base / p for p in model.spec_files]) if model.spec_files else SpecBundle()
    generated: list[dict[str, Any]] = [_pod_document(w) for w in model.workers]
    if not bundle.pools:
        generated.insert(0, _pool_document(model.pool))
    extra = parse_documents(yaml.safe_dump_all(generated, sort_keys=False), source_name=file)
    bundle.pods.update(extra.pods)
    bundle.pools.update(extra.pools)
    bundle.origins.update(extra.origins)
    try:
        specs = dict(bundle.worker_specs(model_capacity))
    except TwinInputErrors as many:
        raise TwinInputErrors([e.located(file=file) for e in many.errors]) from None
    except TwinInputError as one:
        raise one.located(file=file) from None
    quotas, errors = bundle.quota_specs()
    if errors:
        raise errors[0]
    workers = tuple(
        Worker(
            uid=f"{w.namespace}/{w.name}",
            name=w.name,
            namespace=w.namespace,
            spec=specs[f"Pod/{w.namespace}/{w.name}"],
            pids=tuple(w.pids),
            container=w.container,
            command=tuple(w.command),
            annotations=tuple(sorted(w.annotations.items())),
            placeable=w.pending if w.pending is not None else not (w.pids or w.container),
        )
        for w in model.workers
    )
    return WorkersFile(pool=model.pool, workers=workers, quotas=quotas, tflops=dict(model.tflops))


def load_workers(path: str | Path, model_capacity: Mapping[str, Resource] | None = None) -> WorkersFile:
    p = Path(path)
    data = yamlsafe.load_file(p, what="workers file")
    return parse_workers(data, file=str(p), base_dir=p.parent, model_capacity=model_capacity)


def read_cgroup(pid: int) -> str:
    """The text of /proc/<pid>/cgroup ("" if the process is gone or not visible)."""
    try:
        return Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8")
    except OSError:
        return ""


def read_parent(pid: int) -> int | None:
    """The parent PID from /proc/<pid>/stat (None if the process is gone or not visible)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 else None


MAX_ANCESTORS = 8


@dataclass
class ProcessMap:
    """Maps GPU process PIDs to workers: explicit PIDs, then container ids found in cgroups, then
    the nearest ancestor that is a known PID (a launched command's CUDA children, e.g. torchrun's).

    PIDs added at runtime (the launcher's children) are remembered with :meth:`attach`.
    """

    workers: tuple[Worker, ...]
    cgroup_reader: Callable[[int], str] = read_cgroup
    parent_reader: Callable[[int], int | None] = read_parent

    def __post_init__(self) -> None:
        self._by_pid: dict[int, str] = {p: w.uid for w in self.workers for p in w.pids}
        self._containers = [(w.container, w.uid) for w in self.workers if w.container]

    def attach(self, pid: int, uid: str) -> None:
        self._by_pid[pid] = uid

    def owner(self, pid: int) -> str | None:
        found = self._by_pid.get(pid)
        if found is not None:
            return found
        if self._containers:
            text = self.cgroup_reader(pid)
            # Pod UIDs appear with dashes (cgroupfs driver) or underscores (systemd driver).
            # Tie-break: the first worker in file order whose container id appears in the cgroup path.
            for container, uid in self._containers:
                if container and (container in text or container.replace("_", "-") in text):
                    return uid
        ancestor: int | None = pid
        for _ in range(MAX_ANCESTORS):
            ancestor = self.parent_reader(ancestor) if ancestor is not None else None
            if ancestor is None or ancestor <= 1:
                return None
            if ancestor in self._by_pid:
                return self._by_pid[ancestor]
        return None
