"""The lightkube side of ``twin live wva --kube``: which API paths it reads and what it patches.

Runs where lightkube is installed (the ``k8s`` extra); the default test extras leave it out, so
elsewhere it skips. The API server is a loopback HTTP server answering the few paths the loop
uses, with the objects of examples/wva-live/variants.yaml.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from live.wva.kube import ClusterScaler, LightkubeWvaCluster, bundle_from_documents, scale_targets
from live.wva.observe import ReplicaCount

lightkube = pytest.importorskip("lightkube", reason="needs lightkube (pip install 'gpu-pool-twin[k8s]')")

DOCS = [
    d
    for d in yaml.safe_load_all((Path(__file__).resolve().parents[2] / "examples/wva-live/variants.yaml").read_text())
    if d
]


def _list(kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": f"{kind}List", "metadata": {}, "items": items}


@pytest.fixture
def api() -> Iterator[tuple[str, list[tuple[str, ...]]]]:
    seen: list[tuple[str, ...]] = []
    vas = [d for d in DOCS if d["kind"] == "VariantAutoscaling"]
    cms = [d for d in DOCS if d["kind"] == "ConfigMap"] + [{"metadata": {"name": "unrelated", "namespace": "x"}}]
    deployments = {"llama-8b-h100": (3, 2)}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, obj: dict[str, Any], code: int = 200) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            seen.append(("GET", path))
            prefix = "/apis/apps/v1/namespaces/llm-d/deployments/"
            if path == "/apis/llmd.ai/v1alpha1/variantautoscalings":
                self._send(_list("VariantAutoscaling", vas))
            elif path == "/apis/autoscaling/v2/horizontalpodautoscalers":
                self._send(_list("HorizontalPodAutoscaler", []))
            elif path == "/api/v1/configmaps":
                self._send(_list("ConfigMap", cms))
            elif path.startswith(prefix) and path[len(prefix) :] in deployments:
                spec, ready = deployments[path[len(prefix) :]]
                meta = {"name": path[len(prefix) :], "namespace": "llm-d"}
                status = {"replicas": spec, "readyReplicas": ready}
                self._send(
                    {
                        "kind": "Deployment",
                        "metadata": meta,
                        "spec": {"replicas": spec, "selector": {}, "template": {}},
                        "status": status,
                    }
                )
            else:
                self._send({"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"}, 404)

        def do_PATCH(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            seen.append(("PATCH", self.path, self.headers["Content-Type"], body))
            self._send({"kind": "Scale", "metadata": {"name": "x", "namespace": "llm-d"}, "spec": {"replicas": 3}})

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


def _cluster(url: str) -> LightkubeWvaCluster:
    from lightkube import Client
    from lightkube.config.kubeconfig import KubeConfig

    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": url}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    return LightkubeWvaCluster(client=Client(config=config))


def test_reads_vas_hpas_configmaps_and_deployments_and_patches_only_scale(api: tuple[str, list[Any]]) -> None:
    url, seen = api
    cluster = _cluster(url)
    bundle = bundle_from_documents(cluster.wva_documents())
    assert sorted(v.metadata.name for v in bundle.variants) == ["llama-8b-a100", "llama-8b-h100"]
    assert sorted(bundle.accelerator_costs) == ["A100", "H100"] and bundle.slo_for("meta/llama-8b") == (500.0, 24.0)
    assert cluster.replicas("llm-d", "llama-8b-h100") == ReplicaCount(3, 2)
    assert cluster.replicas("llm-d", "llama-8b-a100") is None  # no such Deployment: counted from Prometheus
    ClusterScaler(cluster, scale_targets(bundle)).set_replicas("llm-d", "llama-8b-h100", 4)
    assert [s for s in seen if s[0] == "PATCH"] == [
        (
            "PATCH",
            "/apis/apps/v1/namespaces/llm-d/deployments/llama-8b-h100/scale",
            "application/strategic-merge-patch+json",
            '{"spec":{"replicas":4}}',
        )
    ]
    assert [s[1] for s in seen if s[0] == "GET"][:3] == [
        "/apis/llmd.ai/v1alpha1/variantautoscalings",
        "/apis/autoscaling/v2/horizontalpodautoscalers",
        "/api/v1/configmaps",
    ]
