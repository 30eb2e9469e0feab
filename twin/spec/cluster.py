"""The cluster file for ``twin place`` (docs/cluster-format.md): pools, nodes, GPUs, quotas.

``load_cluster(path)`` validates the YAML with pydantic, turns it into the one
:class:`~twin.cluster_desc.ClusterDescription` (every node lists its GPUs) that
:func:`~twin.cluster_desc.build_state` builds, and builds the :class:`~twin.policy.quota.QuotaStore`.
Nodes name a hardware profile (``twin hw list``) and may repeat with ``count``; any GPU can be
described explicitly (capacity overrides, existing usage, isolation mode, phase, NUMA node,
existing partitions). Every error names the file, the object, the field and the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from twin import limits, yamlsafe
from twin.cluster_desc import (
    ClusterDescription,
    GPUSpec,
    IsolationRule,
    NodeSpec,
    PartitionSpec,
    Where,
    build_state,
)
from twin.errors import TwinInputError, TwinInputErrors
from twin.hardware import HardwareCatalog, HardwareProfile, default_catalog
from twin.policy.quota import QuotaStore
from twin.resources import GPUPhase, IsolationMode, PlacementMode, QuotaSpec, Resource
from twin.spec.base import BytesQ, ResourceSpec, TFlopsQ, field_path
from twin.spec.kube import ObjectMeta
from twin.spec.selectors import LabelSelector
from twin.spec.tensorfusion import GPUResourceQuota, GPUResourceQuotaSpec, QuotaSingle, QuotaTotal
from twin.state import DEFAULT_MAX_PARTITIONS, ClusterState, Oversubscription, PoolState
from twin.units import parse_quantity


class _Strict(BaseModel):
    """camelCase keys; unknown keys are errors (a typo in a cluster file must not pass silently)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, allow_inf_nan=False
    )


def _cpu_milli(value: Any) -> int:
    """CPU cores as a Kubernetes quantity (``"64"``, ``"500m"``, 8) -> millicores."""
    if value is None:
        return 0
    cores = parse_quantity(value)
    if cores < 0:
        raise ValueError("must not be negative")
    return int(round(cores * 1000))


class OversubscriptionModel(_Strict):
    tflops_oversell_ratio: float = Field(default=500.0, ge=100.0)
    vram_expand_to_host_mem: float = Field(default=50.0, ge=0.0)
    vram_expand_to_host_disk: float = Field(default=70.0, ge=0.0)


class IsolationRuleModel(_Strict):
    """``nodeManagerConfig.isolationModeRules``: node label selector -> isolation mode, first match wins."""

    selector: LabelSelector
    isolation_mode: IsolationMode


class PoolModel(_Strict):
    name: str = Field(min_length=1)
    placement_mode: PlacementMode = PlacementMode.NODE_COMPACT_GPU_LOW_LOAD
    vram_weight: float = Field(default=0.7, ge=0.0)
    tflops_weight: float = Field(default=0.3, ge=0.0)
    max_worker_per_node: int = Field(default=256, ge=1)
    default_isolation: IsolationMode = IsolationMode.SOFT
    isolation_mode_rules: list[IsolationRuleModel] = []
    dynamic_isolation: bool = False
    oversubscription: OversubscriptionModel | None = None


class PartitionModel(_Strict):
    template: str = Field(min_length=1)
    namespace: str = "default"
    name: str = ""


class GPUModel(_Strict):
    index: int = Field(ge=0, le=127)
    profile: str | None = None  # defaults to the node's profile
    uid: str | None = None
    tflops: TFlopsQ | None = None  # capacity override
    vram: BytesQ | None = None
    isolation: IsolationMode | None = None
    phase: GPUPhase = GPUPhase.RUNNING
    used_by: str = "tensor-fusion"
    numa: int | None = Field(default=None, ge=-1)
    used: ResourceSpec | None = None  # usage by something outside the twin
    max_partitions: int | None = Field(default=None, ge=0)
    partitions: list[PartitionModel] = []


class NodeModel(_Strict):
    name: str | None = None
    name_prefix: str | None = None
    count: int = Field(default=1, ge=1, le=100_000)
    pool: str | None = None
    profile: str | None = None
    gpus_per_node: int | None = Field(default=None, ge=0, le=128)
    gpus: list[GPUModel] | None = None
    cpu: Any = None
    memory: BytesQ = 0
    ram: BytesQ | None = None  # nodeInfo.ramSize for VRAM expansion; defaults to memory
    data_disk: BytesQ = 0
    labels: dict[str, str] = {}
    cost_per_hour: float | None = Field(default=None, ge=0.0)
    isolation: IsolationMode | None = None
    numa: list[int] | None = None  # NUMA node per GPU index
    nvlink: Literal["all"] | list[tuple[int, int]] | None = None
    ready: bool = True

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: Any) -> int:
        return _cpu_milli(value)

    @model_validator(mode="after")
    def _shape(self) -> NodeModel:
        if self.name is None and self.name_prefix is None:
            raise ValueError("a node needs a name or a namePrefix")
        if self.gpus is None and self.profile is None:
            raise ValueError("a node needs a profile (with gpusPerNode) or an explicit gpus list")
        if self.gpus is not None and self.gpus_per_node is not None:
            raise ValueError("give either gpusPerNode or an explicit gpus list, not both")
        if self.gpus is not None:
            indices = [g.index for g in self.gpus]
            if len(set(indices)) != len(indices):
                raise ValueError(f"duplicate GPU index in gpus: {indices}")
        return self


class QuotaModel(_Strict):
    namespace: str = Field(min_length=1)
    total: QuotaTotal = QuotaTotal()
    single: QuotaSingle = QuotaSingle()


class ClusterFile(_Strict):
    pools: list[PoolModel] = []
    nodes: list[NodeModel] = Field(min_length=1)
    quotas: list[QuotaModel] = []


def _validation_errors(err: ValidationError, file: str) -> TwinInputError:
    errors = [
        TwinInputError(
            e["msg"],
            file=file,
            obj="cluster",
            field=field_path(tuple(e["loc"])) or None,
            value=e.get("input") if not isinstance(e.get("input"), dict) else None,
        )
        for e in err.errors()
    ]
    return errors[0] if len(errors) == 1 else TwinInputErrors(errors)


def load_cluster(path: str | Path, catalog: HardwareCatalog | None = None) -> tuple[ClusterState, QuotaStore]:
    """Read and validate a cluster file; build the state and the quota store."""
    file = str(path)
    data = yamlsafe.load_file(path, what="cluster file")
    if not isinstance(data, Mapping):
        raise TwinInputError(
            "a cluster file is a mapping with pools, nodes and quotas", file=file, value=type(data).__name__
        )
    return build_cluster(data, file=file, catalog=catalog)


def build_cluster(
    data: Mapping[str, Any], *, file: str = "<cluster>", catalog: HardwareCatalog | None = None
) -> tuple[ClusterState, QuotaStore]:
    try:
        spec = ClusterFile.model_validate(data)
    except ValidationError as err:
        raise _validation_errors(err, file) from None
    nodes = sum(n.count for n in spec.nodes)
    limits.check(limits.MAX_NODES, nodes, file=file, field="nodes[*].count")
    gpus = sum(
        n.count * (len(n.gpus) if n.gpus is not None else 8 if n.gpus_per_node is None else n.gpus_per_node)
        for n in spec.nodes
    )
    limits.check(limits.MAX_GPUS, gpus, file=file, field="nodes[*] GPUs")
    return _Describer(spec, file, catalog or default_catalog()).build()


class _Describer:
    """The validated file as the one :class:`ClusterDescription`; :func:`build_state` builds it."""

    def __init__(self, spec: ClusterFile, file: str, catalog: HardwareCatalog) -> None:
        self.spec = spec
        self.file = file
        self.catalog = catalog
        self.pools: dict[str, PoolState] = {}
        self.node_names: set[str] = set()
        self.nodes: list[NodeSpec] = []

    def error(self, message: str, field: str, value: object = None, obj: str = "cluster") -> TwinInputError:
        return TwinInputError(message, file=self.file, obj=obj, field=field, value=value)

    def build(self) -> tuple[ClusterState, QuotaStore]:
        for i, pool in enumerate(self.spec.pools):
            if pool.name in self.pools:
                raise self.error("duplicate pool name", f"pools[{i}].name", pool.name)
            over = pool.oversubscription
            self.pools[pool.name] = PoolState(
                name=pool.name,
                placement_mode=pool.placement_mode,
                vram_weight=pool.vram_weight,
                tflops_weight=pool.tflops_weight,
                max_worker_per_node=pool.max_worker_per_node,
                default_isolation=pool.default_isolation,
                dynamic_isolation=pool.dynamic_isolation,
                oversubscription=None
                if over is None
                else Oversubscription(
                    over.tflops_oversell_ratio, over.vram_expand_to_host_mem, over.vram_expand_to_host_disk
                ),
            )
        for i, node in enumerate(self.spec.nodes):
            self._describe_nodes(i, node)
        rules = {
            p.name: [IsolationRule(r.selector, r.isolation_mode) for r in p.isolation_mode_rules]
            for p in self.spec.pools
        }
        desc = ClusterDescription(list(self.pools.values()), self.nodes, isolation_rules=rules)
        state = build_state(desc, self.catalog)
        return state, self._quotas(state)

    def _profile(self, key: str, field: str) -> HardwareProfile:
        try:
            return self.catalog.get(key)
        except TwinInputError as err:
            raise self.error(err.message, field, key) from None

    def _pool_of(self, i: int, node: NodeModel) -> str:
        if node.pool is not None:
            if self.spec.pools and node.pool not in self.pools:
                known = ", ".join(sorted(self.pools))
                raise self.error(f"unknown pool; pools in this file: {known}", f"nodes[{i}].pool", node.pool)
            return node.pool
        if len(self.spec.pools) == 1:
            return self.spec.pools[0].name
        if not self.spec.pools:
            return "default"
        raise self.error("several pools are defined: say which one this node belongs to", f"nodes[{i}].pool")

    def _names(self, node: NodeModel) -> list[str]:
        if node.count == 1 and node.name is not None:
            return [node.name]
        prefix = node.name_prefix or node.name or "node"
        return [f"{prefix}-{k}" for k in range(node.count)]

    def _describe_nodes(self, i: int, node: NodeModel) -> None:
        where = f"nodes[{i}]"
        pool_name = self._pool_of(i, node)
        node_profile = self._profile(node.profile, f"{where}.profile") if node.profile is not None else None
        gpus = node.gpus
        if gpus is None:
            count = node.gpus_per_node if node.gpus_per_node is not None else 8
            gpus = [GPUModel(index=k) for k in range(count)]
        if node.numa is not None and len(node.numa) != len(gpus):
            raise self.error(f"numa lists {len(node.numa)} entries for {len(gpus)} GPUs", f"{where}.numa", node.numa)
        profiles = []
        for k, gpu in enumerate(gpus):
            if gpu.profile is not None:
                profiles.append(self._profile(gpu.profile, f"{where}.gpus[{k}].profile"))
            elif node_profile is not None:
                profiles.append(node_profile)
            else:
                raise self.error("GPU has no profile and its node has none", f"{where}.gpus[{k}].profile")
        indices = {g.index for g in gpus}
        links: list[tuple[int, int]] = []
        if node.nvlink == "all":
            ordered = sorted(indices)
            links = [(a, b) for n, a in enumerate(ordered) for b in ordered[n + 1 :]]
        elif node.nvlink is not None:
            for a, b in node.nvlink:
                if a not in indices or b not in indices or a == b:
                    raise self.error(
                        "NVLink must join two different GPU indices of the node", f"{where}.nvlink", [a, b]
                    )
            links = list(node.nvlink)
        cost = node.cost_per_hour
        if cost is None:
            cost = sum(p.cost_per_hour for p in profiles)
        for name in self._names(node):
            if name in self.node_names:
                raise self.error("duplicate node name", f"{where}.name", name)
            self.node_names.add(name)
            listed = tuple(
                self._gpu(f"{where}.gpus[{k}]", name, gpu, profile, node, k)
                for k, (gpu, profile) in enumerate(zip(gpus, profiles, strict=True))
            )
            self.nodes.append(
                NodeSpec(
                    name,
                    pool_name,
                    node.profile or "",
                    len(listed),
                    cpu_milli=int(node.cpu or 0),
                    memory=node.memory,
                    labels=node.labels,
                    cost_per_hour=cost,
                    ram_bytes=node.memory if node.ram is None else node.ram,
                    data_disk_bytes=node.data_disk,
                    isolation=node.isolation,
                    gpu_list=listed,
                    nvlinks=tuple(links),
                    ready=node.ready,
                )
            )

    def _gpu(
        self, where: str, node_name: str, gpu: GPUModel, profile: HardwareProfile, node: NodeModel, k: int
    ) -> GPUSpec:
        capacity = Resource(
            profile.fp16_tflops if gpu.tflops is None else gpu.tflops,
            profile.vram_bytes if gpu.vram is None else gpu.vram,
        )
        if capacity.tflops <= 0 or capacity.vram <= 0:
            raise self.error("GPU capacity must be positive", f"{where}.tflops", capacity)
        used = gpu.used.to_resource() if gpu.used is not None else Resource()
        numa = gpu.numa if gpu.numa is not None else (node.numa[k] if node.numa is not None else -1)
        max_partitions = gpu.max_partitions
        if max_partitions is None:
            max_partitions = profile.max_partitions or DEFAULT_MAX_PARTITIONS
        return GPUSpec(
            gpu.index,
            profile,
            uid=f"{node_name}-{gpu.uid}" if gpu.uid and node.count > 1 else gpu.uid,
            capacity=capacity,
            isolation=gpu.isolation,
            phase=gpu.phase,
            used=Resource(used.tflops, used.vram),
            used_by=gpu.used_by,
            numa=numa,
            max_partitions=max_partitions,
            existing=tuple(PartitionSpec(p.template, p.namespace, p.name) for p in gpu.partitions),
            where=Where(self.file, "cluster", where),
        )

    def _quotas(self, state: ClusterState) -> QuotaStore:
        specs: dict[str, QuotaSpec] = {}
        for i, quota in enumerate(self.spec.quotas):
            if quota.namespace in specs:
                raise self.error("duplicate quota for this namespace", f"quotas[{i}].namespace", quota.namespace)
            crd = GPUResourceQuota(
                metadata=ObjectMeta(name=quota.namespace, namespace=quota.namespace),
                spec=GPUResourceQuotaSpec(total=quota.total, single=quota.single),
            )
            try:
                specs[quota.namespace] = crd.to_quota_spec(file=self.file)
            except TwinInputError as err:
                raise TwinInputError(
                    err.message, file=self.file, obj=f"quotas[{i}]", field=err.field, value=err.value
                ) from None
        store = QuotaStore(specs)
        for alloc in state.allocations.values():
            store.add(alloc.request)
        return store
