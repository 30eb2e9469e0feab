"""TensorFusion's GPU filter chain (semantics 2.3 PreFilter, 2.7), vectorised over a pool.

Order (a GPU's rejection names the FIRST filter that dropped it):

0. ``IsolationPolicy``: the Dynamic isolation policy rejects partitioned requests (semantics 2.7/2.8).
   GPUs rejected here are "isolation-incompatible"; all others count in the node score average.
1. ``Phase``: Running, and ``usedBy`` empty or tensor-fusion.
2. ``GPUIndex``: the GPU index is in ``gpu-indices`` (when given).
3. ``IsolationMode``: shared requests accept any static mode; otherwise the GPU's static mode is
   empty or equal. Under the Dynamic policy, the GPU's lock (active mode) is empty or equal.
4. ``SharedWholeGPU`` (shared only): available == capacity for TFLOPs and VRAM, no partitions.
5. ``PartitionTemplate`` (partitioned only): the model has templates (the named one, if given) and
   the GPU has fewer partitions than ``max_partitions``.
6. ``Resource``: available >= request (compute percent as ``int(pct·cap/100)``). Requests only.
7. ``GPUModel``, 8. ``GPUVendor``: exact string equality.
9. ``SameNode`` (gpu_count > 1): nodes with at least N candidates; none is an error.
10. ``MaxWorkerPerNode``: the node already has ``maxWorkerPerNode`` workers.
11. ``NodeReady``: hypervisor heartbeat lost (the scheduler Filter stage).
12. ``NodeResources``: the node lacks CPU or memory for the pod (only when the node models them).
13. ``PartitionAvailability`` (partitioned): max partitions, template maxInstances, a free slot
    range and enough resources for the template (after auto-matching a template when none is given).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np
import numpy.typing as npt

from twin.hardware import MigTemplate
from twin.resources import AllocRequest, GPUPhase, IsolationMode, Resource
from twin.state import MODE_CODE, PHASES, ClusterState, GPUArrays, GPUState, PoolState, first_free_slot

FILTER_NAMES: tuple[str, ...] = (
    "",  # 0: passed
    "IsolationPolicy",
    "Phase",
    "GPUIndex",
    "IsolationMode",
    "SharedWholeGPU",
    "PartitionTemplate",
    "Resource",
    "GPUModel",
    "GPUVendor",
    "SameNode",
    "MaxWorkerPerNode",
    "NodeReady",
    "NodeResources",
    "PartitionAvailability",
    "Topology",
)
F = {name: code for code, name in enumerate(FILTER_NAMES) if name}

_RUNNING = PHASES.index(GPUPhase.RUNNING)


class LazyReasons(Mapping[str, str]):
    """GPU uid -> rejecting filter, built only when someone reads it (keeps placement fast)."""

    def __init__(
        self, uids: list[str], members: npt.NDArray[np.int64], reasons: Callable[[], npt.NDArray[np.int8]]
    ) -> None:
        self._uids = uids
        self._members = members
        self._reasons = reasons
        self._built: dict[str, str] | None = None

    def _dict(self) -> dict[str, str]:
        if self._built is None:
            reasons = self._reasons()
            rejected = np.flatnonzero(reasons)
            self._built = {self._uids[int(self._members[i])]: FILTER_NAMES[int(reasons[i])] for i in rejected}
        return self._built

    def __getitem__(self, key: str) -> str:
        return self._dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __repr__(self) -> str:
        return repr(self._dict())


@dataclass
class FilterOutcome:
    """The pool's GPUs after the chain.

    ``cand`` marks the candidates. ``reasons[i]`` (computed on first use from the recorded steps) is
    0 for a candidate, else the FILTER_NAMES code of the first filter that rejected GPU ``i``.
    """

    pool: PoolState
    request: AllocRequest  # after dedicated-GPU expansion (request = limit = model capacity)
    members: npt.NDArray[np.int64]  # positions in state.arrays, ascending
    cand: npt.NDArray[np.bool_]
    steps: list[tuple[int, npt.NDArray[np.bool_]]] = field(default_factory=list)
    template: str | None = None  # partition template identifier fixed by the request or by auto-match
    reason: str = ""
    unresolvable: bool = False
    _reasons: npt.NDArray[np.int8] | None = None

    def add_step(self, code: int, passed: npt.NDArray[np.bool_] | bool) -> bool:
        """Apply one filter; False when no candidate is left."""
        # count_nonzero: the same answer as any() at a third of the call overhead (hot path).
        if passed is True:
            return bool(np.count_nonzero(self.cand))
        mask = np.zeros(len(self.members), dtype=bool) if passed is False else passed
        self.steps.append((code, mask))
        self.cand = self.cand & mask
        self._reasons = None
        return bool(np.count_nonzero(self.cand))

    @property
    def reasons(self) -> npt.NDArray[np.int8]:
        if self._reasons is None:
            self._reasons = _first_rejections(len(self.members), self.steps)
        return self._reasons

    @property
    def candidates(self) -> npt.NDArray[np.int64]:
        return self.members[self.cand]

    def rejections(self, state: ClusterState) -> LazyReasons:
        """GPU uid -> first rejecting filter, as of now (later steps do not change it)."""
        steps = list(self.steps)
        return LazyReasons(state.arrays.uids, self.members, lambda: _first_rejections(len(self.members), steps))


def _first_rejections(n: int, steps: list[tuple[int, npt.NDArray[np.bool_]]]) -> npt.NDArray[np.int8]:
    reasons = np.zeros(n, dtype=np.int8)
    alive = np.ones(n, dtype=bool)
    for code, mask in steps:
        reasons[alive & ~mask] = code
        alive &= mask
    return reasons


def resolve_pool(state: ClusterState, req: AllocRequest) -> PoolState | None:
    """The request's pool; an empty pool name means the only pool (TensorFusion's default pool)."""
    if req.pool:
        return state.pools.get(req.pool)
    if len(state.pools) == 1:
        return next(iter(state.pools.values()))
    return None


def dedicated_request(state: ClusterState, req: AllocRequest) -> AllocRequest | str:
    """``dedicated-gpu``: request = limit = full capacity of the model (first GPU of that model)."""
    if not req.gpu_model:
        return "dedicated-gpu requires gpu-model"
    arr = state.arrays
    code = arr.models.get(req.gpu_model)
    if code is None:
        return f"could not find capacity information for GPU model {req.gpu_model!r}"
    first = int(np.flatnonzero(arr.model == code)[0])
    cap = state.gpus[arr.uids[first]].capacity
    full = Resource(cap.tflops, cap.vram)
    return req.with_resources(full, full)


def run_filters(
    state: ClusterState, req: AllocRequest, *, max_worker_per_node: int | None = None, single_pass: bool = True
) -> FilterOutcome:
    """Run the whole chain; ``outcome.reason`` is set when no candidate is left.

    ``single_pass=False`` forces the step-by-step chain even where the one-pass form applies (the
    tests compare the two).
    """
    pool = resolve_pool(state, req)
    arr = state.arrays
    if pool is None:
        return FilterOutcome(
            _NO_POOL,
            req,
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=bool),
            reason=f"gpu pool not found: {req.pool!r}",
            unresolvable=True,
        )
    if req.dedicated_gpu:
        expanded = dedicated_request(state, req)
        if isinstance(expanded, str):
            empty = np.zeros(0, dtype=np.int64)
            return FilterOutcome(pool, req, empty, np.zeros(0, dtype=bool), reason=expanded, unresolvable=True)
        req = expanded
    members = arr.pool_members(pool.name)
    limit = pool.max_worker_per_node if max_worker_per_node is None else max_worker_per_node
    if single_pass and len(members) and _single_pass_applies(pool, req):
        found = _single_pass(arr, pool, req, members, limit)
        if found is not None:
            return found
    out = FilterOutcome(pool, req, members, _all_true(arr, pool.name, len(members)))
    if len(members) == 0:
        out.reason = f"pool {pool.name!r} has no GPUs"
        out.unresolvable = True
        return out
    mode = req.isolation
    mode_code = MODE_CODE[mode]

    def apply(name: str, passed: npt.NDArray[np.bool_] | bool, why: str) -> bool:
        """Reject still-passing GPUs that fail; returns False (and sets the reason) when none is left."""
        if out.add_step(F[name], passed):
            return True
        out.reason = f"{name}: {why}"
        return False

    sel = arr.pool_selector(pool.name)  # a slice when the pool is contiguous: column reads are views
    node_idx = arr.node_idx[sel]
    if not apply(
        "IsolationPolicy",
        not (pool.dynamic_isolation and mode is IsolationMode.PARTITIONED),
        "the Dynamic isolation policy rejects partitioned requests",
    ):
        out.unresolvable = True
        return out
    if not apply(
        "Phase",
        _phase_mask(arr, pool.name, sel),
        "no Running GPU managed by tensor-fusion",
    ):
        return out
    if req.gpu_indices and not apply(
        "GPUIndex",
        np.isin(arr.index[sel], np.array(req.gpu_indices)),
        f"no remaining GPU has an index in {list(req.gpu_indices)}",
    ):
        return out
    iso_ok: npt.NDArray[np.bool_] | bool = (
        True
        if mode is IsolationMode.SHARED and not pool.dynamic_isolation
        else _isolation_mask(arr, pool, mode_code, sel)
    )
    if not apply("IsolationMode", iso_ok, f"no remaining GPU accepts isolation mode {mode.value}"):
        return out
    if mode is IsolationMode.SHARED and not apply(
        "SharedWholeGPU",
        (arr.avail_t[sel] == arr.cap_t[sel]) & (arr.avail_v[sel] == arr.cap_v[sel]) & (arr.n_partitions[sel] == 0),
        "shared mode needs a fully idle GPU",
    ):
        return out
    if mode is IsolationMode.PARTITIONED:
        ok = arr.has_templates[sel] & (arr.n_partitions[sel] < arr.max_partitions[sel])
        if req.partition_template:
            ident = req.partition_template
            ok = ok & _static_mask(
                arr, ("Template", pool.name, ident), lambda: _models_with_template(state, members, ident)
            )
        if not (arr.has_templates[sel] & out.cand).any():
            # Say so when the GPU models have no partition templates at all, not "no free partition".
            models = sorted({state.gpus[arr.uids[int(p)]].model for p in out.members[out.cand]})
            apply("PartitionTemplate", False, f"GPU model(s) {', '.join(models)} have no partition templates")
            return out
        if not apply("PartitionTemplate", ok, "no remaining GPU offers the requested template with a free partition"):
            return out
    need_v = req.request.vram
    if req.request.compute_percent > 0 and req.request.tflops == 0:
        # Go truncation int(pct·cap/100); floor equals truncation for non-negative values.
        need_t: npt.NDArray[np.float64] | float = np.floor(req.request.compute_percent * arr.cap_t[sel] / 100.0)
    else:
        need_t = req.request.tflops
    if not apply(
        "Resource",
        (arr.avail_t[sel] >= need_t) & (arr.avail_v[sel] >= need_v),
        "no remaining GPU has the requested TFLOPs and VRAM available",
    ):
        return out
    if req.gpu_model is not None:
        code = arr.models.get(req.gpu_model, -1)
        if not apply("GPUModel", arr.model[sel] == code, f"no remaining GPU of model {req.gpu_model!r}"):
            return out
    if req.vendor is not None:
        code = arr.vendors.get(req.vendor, -1)
        if not apply("GPUVendor", arr.vendor[sel] == code, f"no remaining GPU of vendor {req.vendor!r}"):
            return out
    if req.gpu_count > 1:
        counts = np.bincount(node_idx[out.cand], minlength=len(arr.node_names))
        if not apply(
            "SameNode", counts[node_idx] >= req.gpu_count, f"no node has at least {req.gpu_count} available GPUs"
        ):
            return out
    # Node-level checks run on the (few) nodes, then spread to their GPUs.
    if not apply(
        "MaxWorkerPerNode", (arr.node_workers < limit)[node_idx], f"every candidate node already runs {limit} workers"
    ):
        return out
    if not apply("NodeReady", arr.node_ok[node_idx], "every candidate node lost its hypervisor heartbeat"):
        return out
    if (req.cpu_milli or req.memory) and not apply(
        "NodeResources",
        ((arr.node_cpu_free >= req.cpu_milli) & (arr.node_mem_free >= req.memory))[node_idx],
        "no candidate node has the CPU and memory the pod requests",
    ):
        return out
    if mode is IsolationMode.PARTITIONED:
        _partition_step(state, out)
    return out


_NO_POOL = PoolState("")


def _single_pass_applies(pool: PoolState, req: AllocRequest) -> bool:
    """Requests whose filters are all independent masks (no SameNode, partitions or GPU indices)."""
    return (
        req.gpu_count <= 1
        and (req.isolation is IsolationMode.SOFT or req.isolation is IsolationMode.HARD)
        and not req.gpu_indices
    )


def _single_pass(
    arr: GPUArrays, pool: PoolState, req: AllocRequest, members: npt.NDArray[np.int64], limit: int
) -> FilterOutcome | None:
    """The chain for a single-GPU soft/hard request as one pass over independent masks.

    When candidates remain, every filter ran and each rejected GPU's first rejecting filter is the
    same as the step-by-step chain's, so the outcome (steps in chain order) is identical. When none
    remains it returns None and the caller runs the chain step by step, which names the filter that
    emptied the set.
    """
    name = pool.name
    sel = arr.pool_selector(name)
    node_idx = arr.node_idx[sel]
    mode_code = MODE_CODE[req.isolation]
    phase_ok = _phase_mask(arr, name, sel)
    iso_ok = _isolation_mask(arr, pool, mode_code, sel)
    steps: list[tuple[int, npt.NDArray[np.bool_]]] = [(F["Phase"], phase_ok), (F["IsolationMode"], iso_ok)]
    if req.request.compute_percent > 0 and req.request.tflops == 0:
        need_t: npt.NDArray[np.float64] | float = np.floor(req.request.compute_percent * arr.cap_t[sel] / 100.0)
    else:
        need_t = req.request.tflops
    resource_ok = (arr.avail_t[sel] >= need_t) & (arr.avail_v[sel] >= req.request.vram)
    steps.append((F["Resource"], resource_ok))
    cand = phase_ok & iso_ok & resource_ok
    if req.gpu_model is not None:
        code = arr.models.get(req.gpu_model, -1)
        model_ok = _static_mask(arr, ("GPUModel", name, code), lambda: arr.model[sel] == code)
        steps.append((F["GPUModel"], model_ok))
        cand &= model_ok
    if req.vendor is not None:
        vcode = arr.vendors.get(req.vendor, -1)
        vendor_ok = _static_mask(arr, ("GPUVendor", name, vcode), lambda: arr.vendor[sel] == vcode)
        steps.append((F["GPUVendor"], vendor_ok))
        cand &= vendor_ok
    node_steps = [(F["MaxWorkerPerNode"], arr.node_workers < limit), (F["NodeReady"], arr.node_ok)]
    if req.cpu_milli or req.memory:
        node_steps.append(
            (F["NodeResources"], (arr.node_cpu_free >= req.cpu_milli) & (arr.node_mem_free >= req.memory))
        )
    for code, node_mask in node_steps:
        gpu_mask = node_mask[node_idx]
        steps.append((code, gpu_mask))
        cand &= gpu_mask
    if np.count_nonzero(cand) == 0:
        return None
    return FilterOutcome(pool, req, members, cand, steps)


def _all_true(arr: GPUArrays, pool: str, n: int) -> npt.NDArray[np.bool_]:
    """A fresh all-True mask of the pool's size (copying a kept one is cheaper than np.ones)."""
    key = ("AllTrue", pool)
    ones = arr.derived.get(key)
    if ones is None:
        ones = arr.derived[key] = np.ones(n, dtype=bool)
    return cast("npt.NDArray[np.bool_]", ones).copy()


def _phase_mask(arr: GPUArrays, pool: str, sel: slice | npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """``Phase``: Running and managed by tensor-fusion."""
    return _static_mask(arr, ("Phase", pool), lambda: (arr.phase[sel] == _RUNNING) & arr.used_by_tf[sel])


def _isolation_mask(
    arr: GPUArrays, pool: PoolState, mode_code: int, sel: slice | npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """``IsolationMode``: the Dynamic lock (Dynamic policy) or the static mode is unset or equal."""
    column = "Active" if pool.dynamic_isolation else "Isolation"
    values = arr.active if pool.dynamic_isolation else arr.iso
    return _static_mask(arr, (column, pool.name, mode_code), lambda: (values[sel] == -1) | (values[sel] == mode_code))


def _static_mask(
    arr: GPUArrays, key: tuple[object, ...], build: Callable[[], npt.NDArray[np.bool_]]
) -> npt.NDArray[np.bool_]:
    """A mask that depends only on slowly changing columns, rebuilt when ``static_version`` moves.

    The cached array is shared by later outcomes' steps; nothing writes into step masks.
    """
    hit = arr.derived.get(key)
    if hit is not None and cast("tuple[int, npt.NDArray[np.bool_]]", hit)[0] == arr.static_version:
        return cast("tuple[int, npt.NDArray[np.bool_]]", hit)[1]
    mask = build()
    arr.derived[key] = (arr.static_version, mask)
    return mask


def _models_with_template(state: ClusterState, members: npt.NDArray[np.int64], ident: str) -> npt.NDArray[np.bool_]:
    """Which GPUs offer template ``ident``; GPUs of one profile share one templates tuple, so cache by it."""
    arr = state.arrays
    result = np.zeros(len(members), dtype=bool)
    known: dict[int, bool] = {}
    for i, pos in enumerate(members):
        gpu = state.gpus[arr.uids[int(pos)]]
        key = id(gpu.templates)
        found = known.get(key)
        if found is None:
            found = known[key] = gpu.template(ident) is not None
        result[i] = found
    return result


def partition_available(gpu: GPUState, template: MigTemplate) -> bool:
    """NVIDIA MIG ``CheckPartitionAvailability`` (semantics 2.7)."""
    if len(gpu.partitions) >= gpu.max_partitions:
        return False
    if sum(1 for p in gpu.partitions.values() if p.template_id == template.id) >= template.max_instances:
        return False
    if first_free_slot(gpu, template) is None:
        return False
    need = template.resources(gpu.capacity.tflops)
    return gpu.available.tflops >= need.tflops and gpu.available.vram >= need.vram


def template_waste_score(template_res: Resource, request: Resource) -> float:
    """Auto-match score, lower is better: ``0.6·ΔT/max(reqT,1) + 0.4·ΔV/max(reqV,1)``."""
    d_t = (template_res.tflops - request.tflops) / max(request.tflops, 1.0)
    d_v = (template_res.vram - request.vram) / max(request.vram, 1)
    return 0.6 * d_t + 0.4 * d_v


def auto_match_template(state: ClusterState, positions: npt.NDArray[np.int64], request: Resource) -> str | None:
    """Best (GPU, template) over the candidates: least waste, then template id, then GPU order.

    A compute-percent request is converted to TFLOPs on each GPU's capacity first (Go truncation,
    as in admission), so a 50 % request is matched as half the GPU, not as 0 TFLOPs.
    """
    arr = state.arrays
    best: tuple[float, str, int] | None = None
    for pos in positions:
        gpu = state.gpus[arr.uids[int(pos)]]
        if len(gpu.partitions) >= gpu.max_partitions:
            continue
        need = Resource(tflops=request.effective_tflops(gpu.capacity.tflops), vram=request.vram)
        for tpl in gpu.templates:
            res = tpl.resources(gpu.capacity.tflops)
            if res.tflops < need.tflops or res.vram < need.vram:
                continue
            if not partition_available(gpu, tpl):
                continue
            key = (template_waste_score(res, need), tpl.id, int(pos))
            if best is None or key < best:
                best = key
    return None if best is None else best[1]


def _partition_step(state: ClusterState, out: FilterOutcome) -> None:
    arr = state.arrays
    req = out.request
    cand_idx = np.flatnonzero(out.cand)
    ident = req.partition_template
    if not ident:
        ident = auto_match_template(state, out.members[cand_idx], req.request)
        if ident is None:
            out.add_step(F["PartitionAvailability"], False)
            out.reason = "PartitionAvailability: no partition template fits the request on any candidate GPU"
            return
    passed = np.ones(len(out.members), dtype=bool)
    for i in cand_idx:
        gpu = state.gpus[arr.uids[int(out.members[i])]]
        tpl = gpu.template(ident)
        passed[i] = tpl is not None and partition_available(gpu, tpl)
    # The identifier (not one model's template id) travels on: each GPU resolves it to its own template.
    if out.add_step(F["PartitionAvailability"], passed):
        out.template = ident
    else:
        out.reason = f"PartitionAvailability: no candidate GPU has a free {ident} partition"
    out.request = replace(req, partition_template=out.template)
