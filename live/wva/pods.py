"""Each ready pod of a simulated fleet on its own loopback port, plus a Prometheus file_sd list.

A real Prometheus then scrapes the pods exactly as it would scrape vLLM. One more target, the
gateway's endpoint picker (``pod="epp"``), exports its flow-control queue gauges. ``namespace``, ``pod``
and ``llm_d_ai_variant`` are file_sd target labels, as a ServiceMonitor's relabelling adds them
on a cluster. ``sync()`` (after every fleet step) opens a port for each new ready pod and closes
the port of each pod gone, then rewrites the list atomically when it changed.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from live.wva.vllm_metrics import Family, PodData, VllmPodCollector, pod_families
from twin.atomic import atomic_write_text

LOOPBACK = "127.0.0.1"
VARIANT_LABEL = "llm_d_ai_variant"
EPP_POD = "epp"


class _Lock(Protocol):
    def __enter__(self) -> Any: ...

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None, /) -> Any: ...


class FleetSource(Protocol):
    """What the endpoints read from a fleet (``twin.sim.serving_fleet.WallClockFleet``)."""

    @property
    def lock(self) -> _Lock: ...

    @property
    def model_id(self) -> str: ...

    @property
    def namespace(self) -> str: ...

    def ready_pods(self) -> dict[str, str]: ...

    def pod(self, name: str) -> PodData | None: ...

    def epp_queue(self) -> tuple[int, float]: ...


def serve_text_format(registry: CollectorRegistry, addr: str) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``/metrics`` in the classic text format (0.0.4) on a free port, whatever the scraper asks.

    vLLM's names contain ':'; prometheus_client's OpenMetrics path (which a Prometheus scrape
    negotiates) rewrites them to '_' in recent versions, so the text format is always sent.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line
            return

    server = ThreadingHTTPServer((addr, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return server, thread


class _Endpoint:
    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread, variant: str) -> None:
        self.server = server
        self.thread = thread
        self.variant = variant

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PodEndpoints:
    def __init__(self, fleet: FleetSource, *, sd_file: Path | None = None, addr: str = LOOPBACK) -> None:
        self.fleet = fleet
        self.sd_file = sd_file
        self.addr = addr
        self.endpoints: dict[str, _Endpoint] = {}
        self._lock = threading.Lock()
        self._written: str | None = None
        self.epp: _Endpoint | None = None

    def _reader(self, pod: str) -> Any:
        def read() -> list[Family]:
            with self.fleet.lock:
                data = self.fleet.pod(pod)
                return [] if data is None else pod_families(self.fleet.model_id, data)

        return read

    def _epp_families(self) -> list[Family]:
        size, size_bytes = self.fleet.epp_queue()
        out: list[Family] = []
        for name, doc, value in (
            ("inference_extension_flow_control_queue_size", "Requests held in the flow-control queue.", size),
            ("inference_extension_flow_control_queue_bytes", "Bytes held in the flow-control queue.", size_bytes),
        ):
            fam = GaugeMetricFamily(name, doc, labels=["target_model_name"])
            fam.add_metric([self.fleet.model_id], float(value))
            out.append(fam)
        return out

    def sync(self, _t: float | None = None) -> None:
        with self._lock:
            if self.epp is None:
                # The gateway's endpoint picker: holds requests while no pod is ready (scale from zero).
                registry = CollectorRegistry(auto_describe=False)
                registry.register(VllmPodCollector(self._epp_families))
                server, thread = serve_text_format(registry, self.addr)
                self.epp = _Endpoint(server, thread, "")
            ready = self.fleet.ready_pods()
            for name in [n for n in self.endpoints if n not in ready]:
                self.endpoints.pop(name).close()  # pod deleted: its endpoint goes away
            for name, variant in ready.items():
                if name not in self.endpoints:
                    registry = CollectorRegistry(auto_describe=False)
                    registry.register(VllmPodCollector(self._reader(name)))
                    server, thread = serve_text_format(registry, self.addr)
                    self.endpoints[name] = _Endpoint(server, thread, variant)
            self._write()

    def targets(self) -> list[dict[str, Any]]:
        """The file_sd entries: one target per ready pod, sorted by pod name, then the EPP's."""
        out = [
            {
                "targets": [f"{self.addr}:{e.port}"],
                "labels": {"namespace": self.fleet.namespace, "pod": name, VARIANT_LABEL: e.variant},
            }
            for name, e in sorted(self.endpoints.items())
        ]
        if self.epp is not None:
            out.append(
                {
                    "targets": [f"{self.addr}:{self.epp.port}"],
                    "labels": {"namespace": self.fleet.namespace, "pod": EPP_POD},
                }
            )
        return out

    def _write(self) -> None:
        if self.sd_file is None:
            return
        text = json.dumps(self.targets(), indent=2) + "\n"
        if text != self._written:
            atomic_write_text(self.sd_file, text)
            self._written = text

    def close(self) -> None:
        """Close every pod's port and leave an empty target list behind."""
        with self._lock:
            for e in self.endpoints.values():
                e.close()
            self.endpoints.clear()
            if self.epp is not None:
                self.epp.close()
                self.epp = None
            self._write()
