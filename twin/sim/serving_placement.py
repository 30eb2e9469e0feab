"""Serving replicas as vGPU workers on a GPU pool: the seam between the serving sim and placement.

:class:`ClusterPlacer` implements the serving sim's ``ReplicaPlacer`` with the shared cluster state
(``twin.state.ClusterState``) and a placement strategy from ``twin.policy.placement``: every replica
is one worker pod asking for a vGPU slice per GPU; a replica that does not fit stays unscheduled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from twin.cluster_desc import ClusterDescription, NodeSpec, build_state
from twin.errors import TwinInputError
from twin.hardware import HardwareCatalog, default_catalog
from twin.policy.placement import PlacementStrategy, schedule
from twin.policy.quota import QuotaStore
from twin.resources import AllocRequest, Resource
from twin.state import ClusterState


class ClusterPlacer:
    """Places each replica with ``strategy`` on ``state``; ``templates`` gives the request per variant.

    The template's ``uid``/``name`` are replaced by the replica's name and ``gpu_count`` by the
    variant's GPUs per replica. ``failures`` counts refused placements (unschedulable pods).
    """

    def __init__(
        self,
        state: ClusterState,
        strategy: PlacementStrategy,
        templates: Mapping[str, AllocRequest],
        quota: QuotaStore | None = None,
    ) -> None:
        self.state = state
        self.strategy = strategy
        self.templates = dict(templates)
        self.quota = quota
        self.failures = 0
        self.last_reason = ""

    def place(self, replica_id: str, variant: str, gpus: int) -> str | None:
        template = self.templates.get(variant)
        if template is None:
            raise TwinInputError(
                "no vGPU request for this variant", obj="serving placement", field="variant", value=variant
            )
        req = replace(template, uid=replica_id, name=replica_id, workload=variant, gpu_count=gpus)
        result = schedule(self.state, req, self.strategy, self.quota)
        if not result.ok or result.node is None:
            self.failures += 1
            self.last_reason = result.reason
            return None
        return f"{result.node}:{','.join(result.gpu_ids)}"

    def release(self, replica_id: str) -> None:
        alloc = self.state.release(replica_id)
        if self.quota is not None:
            self.quota.remove(alloc.request)


def build_pool(
    pool: str, node_groups: Sequence[tuple[str, int, int]], catalog: HardwareCatalog | None = None
) -> ClusterState:
    """A ClusterState with one pool: ``(gpu model, nodes, GPUs per node)`` per group, capacity from the catalog.

    Nodes are named ``<pool>-<model key>-<i>`` in group order, so placement ties stay deterministic.
    """
    catalog = catalog or default_catalog()
    specs = []
    for model, nodes, gpus in node_groups:
        profile = catalog.get(model)
        for i in range(nodes):
            name = f"{pool}-{profile.key.lower()}-{i}"
            specs.append(
                NodeSpec(name, pool, model, gpus, cost_per_hour=profile.cost_per_hour * gpus, partitions=False)
            )
    return build_state(ClusterDescription([], specs), catalog)


def vgpu_request(pool: str, tflops: float, vram: int, gpu_model: str | None = None) -> AllocRequest:
    """The per-replica worker request (request = limit: an LLM server holds its slice)."""
    want = Resource(tflops=tflops, vram=vram)
    return AllocRequest(uid="template", pool=pool, request=want, limit=want, gpu_model=gpu_model)
