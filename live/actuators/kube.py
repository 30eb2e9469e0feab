"""Kubernetes: read TensorFusion pods of this node, write the scheduler's outputs back onto them.

The actuator talks to a narrow :class:`KubeClient` port. :class:`LightkubeClient` implements it with
lightkube (the optional extra ``k8s``: ``pip install 'gpu-pool-twin[k8s]'``); tests use an in-memory
client. On ``Placed`` it patches, like TensorFusion's PreBind:
* ``tensor-fusion.ai/gpu-ids``: the chosen GPU UUIDs, comma separated;
* ``tensor-fusion.ai/container-gpus``: JSON ``{container: [gpu ids]}`` for the containers named in
  ``inject-container`` (else the pod's first container).
Nothing else is changed, and no pod is ever deleted or evicted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from live.decisions import Decision, Placed
from live.inventory import Inventory
from live.workers import ENABLED_LABEL, Worker, WorkersFile, parse_workers
from twin.resources import Resource

GPU_IDS = "tensor-fusion.ai/gpu-ids"
CONTAINER_GPUS = "tensor-fusion.ai/container-gpus"
TF_PREFIX = "tensor-fusion.ai/"
K8S_MISSING = "the Kubernetes actuator needs lightkube: pip install 'gpu-pool-twin[k8s]' (or pip install lightkube)"


@dataclass(frozen=True, slots=True)
class PodRef:
    namespace: str
    name: str
    uid: str = ""
    node: str = ""
    containers: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


class KubeClient(Protocol):
    def list_tf_pods(self, node: str | None) -> list[PodRef]: ...

    def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None: ...


def pod_cgroup_key(uid: str) -> str:
    """The pod UID as it appears in cgroup paths (systemd driver: dashes become underscores)."""
    return uid.replace("-", "_")


def workers_from_pods(
    pods: Sequence[PodRef], *, pool: str = "local", model_capacity: Mapping[str, Resource] | None = None
) -> WorkersFile:
    """Workers for the TensorFusion pods (label ``tensor-fusion.ai/enabled=true``), found by pod UID."""
    chosen = sorted((p for p in pods if p.labels.get(ENABLED_LABEL) == "true"), key=lambda p: (p.namespace, p.name))
    data: dict[str, Any] = {
        "pool": pool,
        "workers": [
            {
                "name": p.name,
                "namespace": p.namespace,
                **({"container": pod_cgroup_key(p.uid)} if len(p.uid) >= 6 else {}),
                # A pod without gpu-ids still waits for the scheduler: the agent may place it.
                "pending": GPU_IDS not in p.annotations,
                "annotations": {k: v for k, v in p.annotations.items() if k.startswith(TF_PREFIX)},
            }
            for p in chosen
        ],
    }
    return parse_workers(data, file="<kubernetes pods>", model_capacity=model_capacity)


class KubeActuator:
    name = "k8s"

    def __init__(self, client: KubeClient, node: str | None = None) -> None:
        self.client = client
        self.node = node
        self.patched: list[tuple[str, str, dict[str, str]]] = []

    def apply(self, decision: Decision, worker: Worker | None, inventory: Inventory) -> tuple[int, ...]:
        if not isinstance(decision, Placed) or worker is None:
            return ()
        pods = {(p.namespace, p.name): p for p in self.client.list_tf_pods(self.node)}
        pod = pods.get((worker.namespace, worker.name))
        if pod is None:
            return ()  # a worker of the workers file with no pod: nothing to write
        containers = list(worker.spec.inject_container) or list(pod.containers[:1])
        patch = {
            GPU_IDS: ",".join(decision.gpu_ids),
            CONTAINER_GPUS: json.dumps({c: list(decision.gpu_ids) for c in containers}, sort_keys=True),
        }
        self.client.patch_annotations(pod.namespace, pod.name, patch)
        self.patched.append((pod.namespace, pod.name, patch))
        return ()


class LightkubeClient:
    """The real client (lightkube). Construction fails with a clear message if lightkube is absent."""

    def __init__(self) -> None:
        try:
            from lightkube import Client
        except ImportError:
            raise RuntimeError(K8S_MISSING) from None
        self._client = Client()

    def list_tf_pods(self, node: str | None) -> list[PodRef]:
        from lightkube.resources.core_v1 import Pod

        fields = {"spec.nodeName": node} if node else None
        out = []
        for pod in self._client.list(Pod, namespace="*", labels={ENABLED_LABEL: "true"}, fields=fields):
            meta = pod.metadata
            out.append(
                PodRef(
                    namespace=meta.namespace or "default",
                    name=meta.name or "",
                    uid=meta.uid or "",
                    node=(pod.spec.nodeName if pod.spec else "") or "",
                    containers=tuple(c.name for c in (pod.spec.containers if pod.spec else [])),
                    labels=dict(meta.labels or {}),
                    annotations=dict(meta.annotations or {}),
                )
            )
        return out

    def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        from lightkube.resources.core_v1 import Pod

        self._client.patch(Pod, name, {"metadata": {"annotations": dict(annotations)}}, namespace=namespace)
