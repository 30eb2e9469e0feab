"""The live WVA loop's ``/metrics``: the gauges WVA's controller emits (semantics 4.3).

``wva_desired_replicas``, ``wva_current_replicas``, ``wva_desired_ratio`` and the counter
``wva_replica_scaling_total`` (v0.5+ names), each also under its older ``inferno_*`` name (v0.0.x to
v0.4.x; the seed's troubleshooting section queries ``inferno_desired_replicas``). Labels:
``variant_name``, ``namespace``, ``accelerator_type`` and, when set, ``controller_instance``;
the counter adds ``direction``. desired_ratio = desired / current (= desired when current is 0).
A variant appears once the loop has a desired value for it. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from live.wva.loop import WvaLoop

PREFIXES = ("wva", "inferno")


class WvaCollector(Collector):
    def __init__(self, loop: WvaLoop) -> None:
        self.loop = loop

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        loop = self.loop
        names = ["variant_name", "namespace", "accelerator_type"]
        extra = [loop.controller_instance] if loop.controller_instance else []
        if extra:
            names.append("controller_instance")
        with loop.lock:
            rows = [
                (st.info.name, ns, st.info.accelerator, st.desired, st.current, st.scale_up, st.scale_down)
                for (ns, _), st in sorted(loop.state.items())
                if st.desired is not None
            ]
        for prefix in PREFIXES:
            desired = GaugeMetricFamily(f"{prefix}_desired_replicas", "Desired replicas per variant", labels=names)
            current = GaugeMetricFamily(f"{prefix}_current_replicas", "Current replicas per variant", labels=names)
            ratio = GaugeMetricFamily(f"{prefix}_desired_ratio", "Desired over current replicas", labels=names)
            scaling = CounterMetricFamily(
                f"{prefix}_replica_scaling", "Changes of the desired replicas", labels=[*names, "direction"]
            )
            for name, ns, acc, want, cur, up, down in rows:
                assert want is not None
                values = [name, ns, acc, *extra]
                desired.add_metric(values, float(want))
                current.add_metric(values, float(cur))
                ratio.add_metric(values, float(want) / cur if cur else float(want))
                scaling.add_metric([*values, "up"], float(up))
                scaling.add_metric([*values, "down"], float(down))
            yield from (desired, current, ratio, scaling)


def make_registry(loop: WvaLoop) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WvaCollector(loop))
    return registry


def start_wva_exporter(loop: WvaLoop, *, addr: str = "127.0.0.1", port: int = 0) -> tuple[Any, threading.Thread]:
    """Serve /metrics in a daemon thread; ``port=0`` picks a free port (``server.server_port``)."""
    server, thread = start_http_server(port, addr=addr, registry=make_registry(loop))
    return server, thread
