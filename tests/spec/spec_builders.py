"""Builders for small manifests: a default pool plus one pod (or controller) with given annotations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from twin.spec import SpecBundle, parse_documents

DEFAULT_POOL: dict[str, Any] = {
    "apiVersion": "tensor-fusion.ai/v1",
    "kind": "GPUPool",
    "metadata": {"name": "pool-a", "annotations": {"tensor-fusion.ai/is-default-pool": "true"}},
    "spec": {},
}


def pod_doc(
    annotations: Mapping[str, str],
    *,
    name: str = "p",
    namespace: str = "default",
    labels: Mapping[str, str] | None = None,
    containers: Sequence[Mapping[str, Any]] | None = None,
    kind: str = "Pod",
    replicas: int | None = None,
    owner: bool = False,
    priority_class: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "labels": {"tensor-fusion.ai/enabled": "true", **(labels or {})},
        "annotations": {
            k if k.startswith("tensor-fusion.ai/") or "/" in k else f"tensor-fusion.ai/{k}": v
            for k, v in annotations.items()
        },
    }
    spec: dict[str, Any] = {"containers": list(containers if containers is not None else [{"name": "main"}])}
    if priority_class:
        spec["priorityClassName"] = priority_class
    if kind == "Pod":
        meta |= {"name": name, "namespace": namespace}
        if owner:
            meta["ownerReferences"] = [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "controller": True}
            ]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    api = {"Job": "batch/v1"}.get(kind, "apps/v1")
    ctl_spec: dict[str, Any] = {"template": {"metadata": meta, "spec": spec}}
    if replicas is not None:
        ctl_spec["parallelism" if kind == "Job" else "replicas"] = replicas
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": ctl_spec}


def dump(*docs: Mapping[str, Any]) -> str:
    return "---\n".join(yaml.safe_dump(dict(d), sort_keys=False) for d in docs)


def bundle_of(*docs: Mapping[str, Any], pool: Mapping[str, Any] | None = DEFAULT_POOL) -> SpecBundle:
    all_docs = ([pool] if pool is not None else []) + list(docs)
    return parse_documents(dump(*all_docs), "test.yaml")
