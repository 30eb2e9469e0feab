"""``twin place``: place pods on a cluster file, in order, and explain every decision."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from twin import yamlsafe
from twin.errors import TwinInputError
from twin.policy.cycle import Preemption, SchedulingCycle
from twin.policy.placement import PlacementResult, get_strategy, strategy_names
from twin.policy.placement.pipeline import FILTER_NAMES
from twin.policy.queue import Phase, order_key, request_signature
from twin.policy.quota import QuotaStore, QuotaVerdict
from twin.resources import AllocRequest, QoS, Resource
from twin.spec import load_documents
from twin.spec.cluster import load_cluster
from twin.spec.tensorfusion import GPUPool
from twin.state import ClusterState

_PROGRESS_FROM = 200  # pods; fewer place in well under a second


@dataclass
class PodDecision:
    pod: str
    namespace: str
    source: str
    result: PlacementResult
    evicted: list[str] = field(default_factory=list)
    evicted_by: str | None = None  # set when a later pod preempted this one
    quota_checked: bool = False  # the namespace has a GPUResourceQuota
    quota_verdict: QuotaVerdict | None = None  # its refusal at the (last) placement attempt

    def quota_dict(self) -> dict[str, Any] | None:
        """The quota verdict: None without a quota; else ok, the rule code and whether it is unresolvable."""
        if not self.quota_checked:
            return None
        v = self.quota_verdict
        if v is None:
            return {"ok": True, "code": None, "unresolvable": False, "message": ""}
        return {"ok": False, "code": v.code, "unresolvable": v.unresolvable, "message": v.message}

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        data: dict[str, Any] = {
            "pod": self.pod,
            "namespace": self.namespace,
            "source": self.source,
            "scheduled": r.ok,
            "node": r.node,
            "gpu_ids": list(r.gpu_ids),
            "partition_template": r.partition_template,
            "slot_start": r.slot_start,
            "effective_hard_sm_percent": r.effective_hard_sm_percent,
            "topology_tier": r.topology_tier,
            "reason": r.reason,
            "rejected_gpus_by_filter": dict(sorted(Counter(r.rejections.values()).items())),
            "node_scores": dict(sorted(r.node_scores.items())),
            "quota": self.quota_dict(),
        }
        if self.evicted:
            data["evicted"] = self.evicted
        if self.evicted_by:
            data["evicted_by"] = self.evicted_by
        return data


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``["aggregation=sum", "vram_weight=0.5"]`` -> ``{"aggregation": "sum", "vram_weight": 0.5}``."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TwinInputError("expected KEY=VALUE", field="--param", value=item)
        try:
            params[key.strip()] = yamlsafe.load(value, "--param")
        except TwinInputError as err:
            raise TwinInputError(f"value is not a YAML scalar: {err.message}", field="--param", value=item) from err
    return params


def model_capacity(state: ClusterState) -> dict[str, Resource]:
    """GPU model -> capacity of its first GPU by uid (the webhook's dedicated-gpu capacity map)."""
    capacity: dict[str, Resource] = {}
    for uid in sorted(state.gpus):
        gpu = state.gpus[uid]
        capacity.setdefault(gpu.model, gpu.capacity)
    return capacity


def _add_cluster_pools(bundle: Any, state: ClusterState) -> None:
    """Pods resolve their pool through GPUPool objects: add the cluster file's pools unless the pods
    files define them; the first pool (by name) is the default pool when none is marked."""
    has_default = any(p.is_default for p in bundle.pools.values())
    for name in sorted(state.pools):
        if name in bundle.pools:
            continue
        pool = state.pools[name]
        annotations = {} if has_default else {"tensor-fusion.ai/is-default-pool": "true"}
        has_default = True
        bundle.pools[name] = GPUPool.model_validate(
            {
                "metadata": {"name": name, "annotations": annotations},
                "spec": {"nodeManagerConfig": {"defaultIsolationMode": pool.default_isolation.value}},
            }
        )


def pod_requests(paths: Sequence[str], state: ClusterState) -> list[tuple[str, AllocRequest]]:
    """(source object id, request) per pod in file order; a controller with N replicas gives N pods ``name-0..``."""
    bundle = load_documents(paths)
    _add_cluster_pools(bundle, state)
    specs = bundle.worker_specs(model_capacity(state))
    files = [str(Path(p)) for p in paths]

    def file_order(item: tuple[str, Any]) -> tuple[int, int]:
        origin = bundle.origins.get(item[0])
        if origin is None:
            return (len(files), 0)
        rank = files.index(str(Path(origin.file))) if str(Path(origin.file)) in files else len(files)
        return (rank, origin.document)

    out: list[tuple[str, AllocRequest]] = []
    for obj_id, spec in sorted(specs, key=file_order):  # stable: documents in the order written
        kind, _, name = obj_id.split("/", 2)
        if kind == "Pod":
            out.append((obj_id, spec.to_alloc_request(obj_id, name)))
            continue
        for i in range(spec.replicas):
            out.append((obj_id, spec.to_alloc_request(f"{obj_id}/{i}", f"{name}-{i}")))
    return out


def place_all(
    state: ClusterState,
    quota: QuotaStore,
    pods: Sequence[tuple[str, AllocRequest]],
    strategy_name: str,
    *,
    preempt: bool = False,
    params: dict[str, Any] | None = None,
) -> list[PodDecision]:
    strategy = get_strategy(strategy_name, **(params or {}))
    decisions: list[PodDecision] = []
    host = _PlaceHost(state)
    # Each pod is tried once, in file order, through the shared cycle (preemption as a statement).
    cycle: SchedulingCycle[_Pod] = SchedulingCycle(
        state, lambda _req: strategy, host, quota=quota, preemption=Preemption.EVICT if preempt else Preemption.OFF
    )
    # Long runs get a progress bar on stderr (transient, so tables and JSON on stdout stay clean).
    with Progress(console=Console(stderr=True), transient=True, disable=len(pods) < _PROGRESS_FROM) as progress:
        task = progress.add_task("placing pods", total=len(pods))
        for source, req in pods:
            checked = quota.quota(req.namespace) is not None
            verdict = quota.check(req) if checked else None  # what the strategy's own quota check sees
            name = req.name or req.uid
            host.evicted_now = []
            cycle.attempt(_Pod(req, len(decisions)), queued=False)
            result = cycle.last_result
            assert result is not None
            evicted = [v.req.name or v.req.uid for v in host.evicted_now]
            for v in host.evicted_now:
                victim = host.decisions.get(v.req.uid)
                if victim is not None:
                    victim.evicted_by = name
            if evicted:
                verdict = None  # the quota admitted it once the victims were gone
            decision = PodDecision(name, req.namespace, source, result, evicted, None, checked, verdict)
            decisions.append(decision)
            host.decisions[req.uid] = decision
            progress.advance(task)
    return decisions


class _Pod:
    """A pod of the manifests as the scheduling cycle sees it."""

    __slots__ = ("last_reason", "phase", "req", "seq", "signature")
    native = False

    def __init__(self, req: AllocRequest, seq: int) -> None:
        self.req = req
        self.seq = seq
        self.phase = Phase.PENDING
        self.last_reason = ""
        self.signature = request_signature(req)

    @property
    def qos(self) -> QoS:
        return self.req.qos

    def order_key(self) -> tuple[int, float, int]:
        return order_key(self.req.qos, 0.0, self.seq)


class _PlaceHost:
    """Moves pods between phases and collects what the cycle evicted for the pod being placed."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.decisions: dict[str, PodDecision] = {}
        self.evicted_now: list[_Pod] = []
        self._pods: dict[str, _Pod] = {}

    def bound(self, pod: _Pod, result: PlacementResult, queued: bool) -> None:
        pod.phase = Phase.RUNNING
        self._pods[pod.req.uid] = pod

    def evicted(self, pod: _Pod, reason: str) -> None:
        pod.phase = Phase.DONE  # a what-if: the victim is not placed again
        self.evicted_now.append(pod)

    def rejected(self, pod: _Pod, reason: str, queued: bool) -> None:
        pod.phase = Phase.DONE

    def unschedulable(self, pod: _Pod, reason: str) -> None:
        pass

    def would_preempt(self, pod: _Pod, victims: Sequence[str]) -> None:  # pragma: no cover - EVICT mode
        pass

    def pod(self, uid: str) -> _Pod:
        """A running pod; allocations the cluster file already held become pods on first use."""
        pod = self._pods.get(uid)
        if pod is None:
            pod = self._pods[uid] = _Pod(self.state.allocations[uid].request, -1)
            pod.phase = Phase.RUNNING
        return pod

    def lowest_running_priority(self) -> int:
        return min((a.request.priority for a in self.state.allocations.values()), default=1 << 62)

    def schedule_pass(self) -> None:
        pass  # one attempt per pod, no passes


def _table(decisions: Sequence[PodDecision], strategy: str) -> Table:
    table = Table(title=f"twin place (strategy {strategy})")
    for col in ("pod", "namespace", "node", "GPUs", "partition", "hard SM %", "result"):
        table.add_column(col)
    for d in decisions:
        r = d.result
        outcome = "[green]scheduled[/green]" if r.ok else f"[red]unschedulable[/red]: {r.reason}"
        if d.evicted:
            outcome += f" (evicted {', '.join(d.evicted)})"
        if d.evicted_by:
            outcome += f", then preempted by {d.evicted_by}"
        partition = "-"
        if r.partition_template:
            partition = f"{r.partition_template} @slot {r.slot_start}"
        table.add_row(
            d.pod,
            d.namespace,
            r.node or "-",
            ", ".join(r.gpu_ids) or "-",
            partition,
            "-" if r.effective_hard_sm_percent is None else str(r.effective_hard_sm_percent),
            outcome,
        )
    return table


@click.command()
@click.option(
    "--cluster",
    "cluster_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="cluster file (docs/cluster-format.md)",
)
@click.argument("pods", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--strategy",
    default="tensorfusion",
    show_default=True,
    help="placement strategy; 'tensorfusion' uses each pool's placementMode (see docs/placement.md)",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="strategy parameter, repeatable (e.g. aggregation=sum, vram_weight=0.5); values are YAML scalars",
)
@click.option("--preempt", is_flag=True, help="when a pod does not fit, evict lower-priority pods if that helps")
@click.option(
    "--explain", is_flag=True, help="after the table, show per pod the best node scores and the rejected GPUs by filter"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def place(
    cluster_file: Path,
    pods: tuple[str, ...],
    strategy: str,
    params: tuple[str, ...],
    preempt: bool,
    explain: bool,
    as_json: bool,
) -> None:
    """Place the pods of PODS... (in file order) on the cluster and explain each decision."""
    if strategy not in strategy_names():
        raise TwinInputError(
            f"unknown placement strategy; known: {', '.join(strategy_names())}", field="--strategy", value=strategy
        )
    parsed = parse_params(params)
    get_strategy(strategy, **parsed)  # bad parameters fail before any file is read
    state, quota = load_cluster(cluster_file)
    requests = pod_requests(list(pods), state)
    decisions = place_all(state, quota, requests, strategy, preempt=preempt, params=parsed)
    placed = sum(d.result.ok for d in decisions)
    preempted = sum(d.evicted_by is not None for d in decisions)
    if as_json:
        summary = {
            "strategy": strategy,
            "placed": placed,
            "preempted": preempted,
            "unschedulable": len(decisions) - placed,
        }
        click.echo(json.dumps({**summary, "pods": [d.to_dict() for d in decisions]}, indent=2))
        return
    console = Console()
    console.print(_table(decisions, strategy))
    tail = f" ({preempted} later preempted)" if preempted else ""
    console.print(f"{placed} of {len(decisions)} pods placed{tail}")
    if explain:
        console.print(_explanations(decisions))


def explain_lines(decision: PodDecision, top: int = 5) -> list[str]:
    """Why a pod went where it went: the best node scores and the GPUs each filter rejected."""
    r = decision.result
    lines = [f"{decision.namespace}/{decision.pod}: " + (f"node {r.node}" if r.ok else f"unschedulable ({r.reason})")]
    ranked = sorted(r.node_scores.items(), key=lambda kv: (-kv[1], kv[0]))
    if ranked:
        shown = ", ".join(f"{node} {score:g}" for node, score in ranked[:top])
        more = f" (+{len(ranked) - top} more)" if len(ranked) > top else ""
        lines.append(f"  node scores: {shown}{more}")
    by_filter: dict[str, list[str]] = {}
    for gpu, name in sorted(r.rejections.items()):
        by_filter.setdefault(name, []).append(gpu)
    for name, gpus in sorted(by_filter.items(), key=lambda kv: FILTER_NAMES.index(kv[0])):
        sample = ", ".join(gpus[:3]) + (f" ... ({len(gpus)} GPUs)" if len(gpus) > 3 else "")
        lines.append(f"  rejected by {name}: {sample}")
    return lines


def _explanations(decisions: Sequence[PodDecision]) -> str:
    return "\n".join(line for d in decisions for line in explain_lines(d))
