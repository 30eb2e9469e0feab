"""Node and GPU faults on the simulated clock: failure, eviction of the residents, recovery."""

from __future__ import annotations

from typing import Any

from twin.errors import TwinInputError
from twin.resources import GPUPhase
from twin.scenario import LoadedScenario, Scenario
from twin.sim.pods import PodLifecycle
from twin.sim.workers import SimWorker


class FaultInjection(PodLifecycle):
    """The scenario's ``faults``: each one a process that fails, then maybe recovers (engine mixin)."""

    loaded: LoadedScenario
    scenario: Scenario
    failed_gpus: set[str]

    # ------------------------------------------------------------------ faults

    def _install_faults(self) -> None:
        for i, fault in enumerate(self.scenario.faults):
            if fault.node not in self.state.nodes:
                raise TwinInputError(
                    f"unknown node; nodes are named <pool>-<index>, e.g. {next(iter(self.state.nodes), '?')}",
                    file=self.loaded.source,
                    field=f"faults.{i}.node",
                    value=fault.node,
                )
            if fault.gpu is not None and fault.gpu >= len(self.state.nodes[fault.node].gpus):
                raise TwinInputError(
                    "the node has no GPU with this index",
                    file=self.loaded.source,
                    field=f"faults.{i}.gpu",
                    value=fault.gpu,
                )
            self.env.process(self._fault_process(fault.kind, fault.node, fault.gpu, fault.at, fault.recover_after))

    def _fault_gpus(self, node: str, gpu: int | None) -> list[str]:
        gpus = self.state.nodes[node].gpus
        return list(gpus) if gpu is None else [gpus[gpu]]

    def _fault_process(self, kind: str, node: str, gpu: int | None, at: float, recover_after: float | None) -> Any:
        yield self.env.timeout(at)
        gpus = self._fault_gpus(node, gpu if kind == "gpu-failure" else None)
        self.events.log(self.env.now, "fault", node, fault=kind, gpus=gpus if kind == "gpu-failure" else None)
        if kind in ("node-failure", "heartbeat-loss"):
            self.state.set_node_ready(node, False)
        if kind in ("node-failure", "gpu-failure"):
            victims: dict[str, SimWorker] = {}
            for g in gpus:
                self.state.set_gpu_phase(g, GPUPhase.UNKNOWN)
                self.failed_gpus.add(g)
                for w in self.load.residents[g]:
                    victims[w.uid] = w
            for w in sorted(victims.values(), key=lambda v: v.seq):
                self._evict(w, kind, preempted=False)
            self.request_pass()
        if recover_after is None:
            return
        yield self.env.timeout(recover_after)
        self.events.log(self.env.now, "recover", node, fault=kind)
        if kind in ("node-failure", "heartbeat-loss"):
            self.state.set_node_ready(node, True)
        if kind in ("node-failure", "gpu-failure"):
            for g in gpus:
                self.state.set_gpu_phase(g, GPUPhase.RUNNING)
                self.failed_gpus.discard(g)
        self.request_pass()
