"""The cluster side of the live WVA loop: read VariantAutoscalings, HPAs and WVA's ConfigMaps, read
each variant's Deployment replicas, and (only when asked) patch its ``/scale`` subresource.

The loop talks to the narrow :class:`WvaCluster` port. :class:`LightkubeWvaCluster` implements it
with lightkube (the optional extra ``k8s``); tests use an in-memory cluster. Reads: VAs
(``llmd.ai/v1alpha1``), HPAs (``autoscaling/v2``), the ``accelerator-unit-costs`` and
``service-classes-config`` ConfigMaps, Deployments. Writes: ``deployments/scale`` only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from live.wva.observe import ReplicaCount
from twin.errors import TwinInputError
from twin.spec.wva import WvaBundle, load_wva_documents

K8S_MISSING = "reading the cluster needs lightkube: pip install 'gpu-pool-twin[k8s]' (or pip install lightkube)"
WVA_CONFIGMAPS = ("accelerator-unit-costs", "service-classes-config")


class WvaCluster(Protocol):
    def wva_documents(self) -> list[dict[str, Any]]: ...

    def replicas(self, namespace: str, deployment: str) -> ReplicaCount | None: ...

    def set_replicas(self, namespace: str, deployment: str, replicas: int) -> None: ...


def bundle_from_documents(docs: Sequence[Mapping[str, Any]], source: str = "kubernetes") -> WvaBundle:
    """Validate objects read from the API with the same loader as files (one message per bad field)."""
    with tempfile.TemporaryDirectory(prefix="twin-wva-") as tmp:
        path = Path(tmp) / f"{source}.yaml"
        path.write_text(yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False))
        try:
            return load_wva_documents([path])
        except TwinInputError as err:
            # Name the cluster, not the temporary file the objects passed through.
            raise TwinInputError(str(err).replace(str(path), f"<{source}>")) from None


def scale_targets(bundle: WvaBundle) -> dict[tuple[str, str], str]:
    """(namespace, variant) -> the Deployment it scales (a VA's scaleTargetRef, an HPA's target)."""
    out: dict[tuple[str, str], str] = {}
    for va in bundle.variants:
        ref = va.spec.scale_target_ref
        out[(va.metadata.namespace, va.metadata.name)] = ref.name if ref is not None and ref.name else va.metadata.name
    for hpa in bundle.hpas:
        key = (hpa.metadata.namespace, hpa.metadata.name)
        if hpa.managed and key not in out:
            out[key] = hpa.spec.scale_target_ref.name
    return out


class ClusterCounts:
    """Current/ready replicas per variant from its Deployment (WVA: status.replicas, readyReplicas)."""

    def __init__(self, cluster: WvaCluster, targets: Mapping[tuple[str, str], str]) -> None:
        self.cluster = cluster
        self.targets = dict(targets)

    def __call__(self) -> dict[tuple[str, str], ReplicaCount]:
        out = {}
        for (ns, variant), deployment in sorted(self.targets.items()):
            n = self.cluster.replicas(ns, deployment)
            if n is not None:
                out[(ns, variant)] = n
        return out


class ClusterScaler:
    """Patches the variant's Deployment ``/scale``; every write is remembered in ``patched``."""

    def __init__(self, cluster: WvaCluster, targets: Mapping[tuple[str, str], str]) -> None:
        self.cluster = cluster
        self.targets = dict(targets)
        self.patched: list[tuple[str, str, int]] = []

    def set_replicas(self, namespace: str, variant: str, replicas: int) -> None:
        deployment = self.targets.get((namespace, variant), variant)
        self.cluster.set_replicas(namespace, deployment, replicas)
        self.patched.append((namespace, deployment, replicas))


class LightkubeWvaCluster:
    """The real cluster through lightkube; construction fails with a clear message if it is absent."""

    def __init__(self, namespace: str | None = None, client: Any = None) -> None:
        """``client``: a lightkube ``Client`` (default: one from the kubeconfig or in-cluster config)."""
        try:
            from lightkube import Client
            from lightkube.generic_resource import create_namespaced_resource
        except ImportError:
            raise RuntimeError(K8S_MISSING) from None
        self._client = client if client is not None else Client()
        self._ns = namespace or "*"
        self._va = create_namespaced_resource("llmd.ai", "v1alpha1", "VariantAutoscaling", "variantautoscalings")

    def wva_documents(self) -> list[dict[str, Any]]:
        from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
        from lightkube.resources.core_v1 import ConfigMap

        docs: list[dict[str, Any]] = []
        for obj in self._client.list(self._va, namespace=self._ns):
            docs.append(_plain(obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)))
        for hpa in self._client.list(HorizontalPodAutoscaler, namespace=self._ns):
            docs.append(_plain({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", **hpa.to_dict()}))
        for cm in self._client.list(ConfigMap, namespace="*"):
            if cm.metadata is not None and cm.metadata.name in WVA_CONFIGMAPS:
                docs.append(_plain({"apiVersion": "v1", "kind": "ConfigMap", **cm.to_dict()}))
        return docs

    def replicas(self, namespace: str, deployment: str) -> ReplicaCount | None:
        from lightkube.core.exceptions import ApiError
        from lightkube.resources.apps_v1 import Deployment

        try:
            d = self._client.get(Deployment, deployment, namespace=namespace)
        except ApiError:
            return None
        status = d.status
        spec = d.spec.replicas if d.spec is not None and d.spec.replicas is not None else 1
        current = status.replicas if status is not None and status.replicas is not None else spec
        ready = status.readyReplicas if status is not None and status.readyReplicas is not None else 0
        return ReplicaCount(int(current), int(ready))

    def set_replicas(self, namespace: str, deployment: str, replicas: int) -> None:
        from lightkube.resources.apps_v1 import Deployment

        self._client.patch(Deployment.Scale, deployment, {"spec": {"replicas": replicas}}, namespace=namespace)


def _plain(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Drop server-side fields the file schema does not know (status, managedFields)."""
    out = {k: v for k, v in doc.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out
