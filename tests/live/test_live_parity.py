"""Parity: the live agent and a straight-line driver making the simulator's policy calls agree.

The reference below reads the same recording and makes, in the simulator's way, the same pure
calls: ``schedule(state, req, strategy, quota)`` for pending work (as ``twin.sim.engine`` does,
reporting a reason only when it changes) and ``soft_limiter_step`` per soft worker per device
(``twin.policy.isolation``). It shares no code with ``live.agent``. If the agent reordered work,
mis-scaled utilisation, lost a tick or used another clock, the event lists would differ.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from live_fixtures import DATA, SYNTHETIC_RECORDING

from live.agent import LiveAgent
from live.backends.base import Health
from live.backends.replay import ReplayBackend
from live.decisions import (
    Adopted,
    GpuLost,
    LimiterUpdate,
    Placed,
    Released,
    Unschedulable,
    decision_dict,
)
from live.inventory import build_inventory, to_cluster_state
from live.synthetic import synthetic_node_recording
from live.workers import load_workers
from twin.policy.isolation import initial_limiter_state, soft_limiter_step, up_limit_fraction
from twin.policy.placement import get_strategy, schedule
from twin.policy.quota import QuotaStore
from twin.resources import GPUPhase, IsolationMode

WORKERS = DATA / "live_synthetic_workers.yaml"
Event = tuple[Any, ...]


def reference_events(recording: Path, workers_path: Path, strategy_name: str) -> list[Event]:
    replay = ReplayBackend(recording)
    wf = load_workers(workers_path)
    owner = {p: w.uid for w in wf.workers for p in w.pids}
    strategy = get_strategy(strategy_name)
    quota = QuotaStore(wf.quotas)
    state = None
    phase = {w.uid: "pending" for w in wf.workers}
    last_reason: dict[str, str] = {}
    limiters: dict[tuple[str, str], Any] = {}
    lost: set[str] = set()
    last_t: float | None = None
    events: list[Event] = []
    for node in replay.samples():
        devices = replay.devices()
        t = node.t
        if state is None:
            inv = build_inventory(devices, node=replay.header.hostname, pool=wf.pool)
            ext: dict[str, int] = {}
            for d in node.devices:
                for p in d.processes:
                    if p.pid not in owner:
                        ext[d.uuid] = ext.get(d.uuid, 0) + (p.memory_used or 0)
            state = to_cluster_state(inv, sample=node, external_vram=ext)
            lost = {d.uuid for d in node.devices if d.health is Health.LOST}
        for d in node.devices:
            if d.health is Health.LOST and d.uuid not in lost:
                lost.add(d.uuid)
                state.set_gpu_phase(d.uuid, GPUPhase.UNKNOWN)
                events.append(("GpuLost", t, d.uuid))
        seen: dict[str, list[tuple[int, str, int | None]]] = {}
        for d in node.devices:
            for p in d.processes:
                if p.pid in owner:
                    seen.setdefault(owner[p.pid], []).append((d.index, d.uuid, p.gpu_instance_id))
        for w in wf.workers:
            uid = w.uid
            if uid in seen and phase[uid] in ("pending", "done") and uid not in state.allocations:
                gpus = tuple(dict.fromkeys(u for _i, u, _g in sorted(seen[uid])))
                req = replace(w.request(), gpu_count=len(gpus))
                gi = sorted(seen[uid])[0][2]
                if gi is not None:
                    dev = next(x for x in devices if x.uuid == gpus[0])
                    profile = next(i.profile for i in dev.mig_instances if i.gpu_instance_id == gi)
                    req = replace(req, isolation=IsolationMode.PARTITIONED, partition_template=profile)
                assert quota.check(req) is None
                with state.transaction():
                    state.allocate(req, replay.header.hostname, gpus)
                    quota.add(req)
                phase[uid] = "running"
                events.append(("Adopted", t, uid, gpus))
            elif uid in seen and phase[uid] == "placed":
                phase[uid] = "running"
            elif uid not in seen and phase[uid] == "running":
                alloc = state.allocations.get(uid)
                if alloc is not None and any(g in lost for g in alloc.gpu_ids):
                    continue
                if alloc is not None:
                    state.release(uid)
                    quota.remove(alloc.request)
                phase[uid] = "done"
                events.append(("Released", t, uid))
        placeable = [w for w in wf.workers if phase[w.uid] == "pending" and not w.pids and not w.container]
        for w in sorted(placeable, key=lambda w: -w.spec.qos.rank):
            res = schedule(state, w.request(), strategy, quota)
            if res.ok:
                phase[w.uid] = "placed"
                events.append(("Placed", t, w.uid, tuple(res.gpu_ids)))
            elif res.reason != last_reason.get(w.uid, ""):
                last_reason[w.uid] = res.reason
                events.append(("Unschedulable", t, w.uid, res.reason))
        elapsed = None if last_t is None else t - last_t
        for uid, alloc in sorted(state.allocations.items()):
            if alloc.request.isolation is not IsolationMode.SOFT or phase[uid] != "running":
                continue
            for g in alloc.gpu_ids:
                dev_sample = node.device(g)
                if dev_sample is None or dev_sample.health is Health.LOST or dev_sample.utilization_gpu is None:
                    continue
                up = up_limit_fraction(alloc.request.limit, state.gpus[g].capacity.tflops)
                st = soft_limiter_step(
                    limiters.get((uid, g)) or initial_limiter_state(),
                    dev_sample.utilization_gpu / 100,
                    up,
                    elapsed=elapsed,
                )
                limiters[(uid, g)] = st
                events.append(("Limiter", t, uid, g, st.rate, st.tokens))
        last_t = t
    return events


def agent_events(recording: Path, workers_path: Path, strategy_name: str) -> list[Event]:
    replay = ReplayBackend(recording)
    agent = LiveAgent(replay, load_workers(workers_path), strategy=strategy_name, node=replay.header.hostname)
    agent.run()
    out: list[Event] = []
    for d in agent.decisions:
        if isinstance(d, GpuLost):
            out.append(("GpuLost", d.t, d.gpu))
        elif isinstance(d, Adopted):
            out.append(("Adopted", d.t, d.worker, d.gpu_ids))
        elif isinstance(d, Released):
            out.append(("Released", d.t, d.worker))
        elif isinstance(d, Placed):
            out.append(("Placed", d.t, d.worker, d.gpu_ids))
        elif isinstance(d, Unschedulable):
            out.append(("Unschedulable", d.t, d.worker, d.reason))
        elif isinstance(d, LimiterUpdate):
            out.append(("Limiter", d.t, d.worker, d.gpu, d.rate, d.tokens))
        # LimiterSkipped / WouldPreempt are reporting only: no policy state changes.
    return out


@pytest.mark.parametrize("strategy", ["NodeCompactGPULowLoad", "CompactFirst", "LowLoadFirst"])
def test_agent_and_simulator_policy_calls_agree_event_for_event(strategy: str) -> None:
    live = agent_events(SYNTHETIC_RECORDING, WORKERS, strategy)
    ref = reference_events(SYNTHETIC_RECORDING, WORKERS, strategy)
    assert live == ref
    kinds = {e[0] for e in live}
    # The recording exercises every path compared here.
    assert kinds == {"Adopted", "Placed", "Unschedulable", "Released", "GpuLost", "Limiter"}


def test_the_synthetic_recording_places_big_batch_only_after_burst_exits() -> None:
    live = agent_events(SYNTHETIC_RECORDING, WORKERS, "NodeCompactGPULowLoad")
    released = next(e for e in live if e[0] == "Released" and e[2] == "research/burst")
    placed = next(e for e in live if e[0] == "Placed" and e[2] == "research/big-batch")
    assert released[1] == placed[1] == 40.0


def test_committed_recording_is_reproducible_and_small(tmp_path: Path) -> None:
    assert SYNTHETIC_RECORDING.stat().st_size < 200_000
    synthetic_node_recording(tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == SYNTHETIC_RECORDING.read_bytes()
    replay = ReplayBackend(SYNTHETIC_RECORDING)
    assert replay.header.synthetic is True and "synthetic" in replay.header.note


def test_replay_drives_the_agent_deterministically() -> None:
    first = [decision_dict(d) for d in _run_once()]
    second = [decision_dict(d) for d in _run_once()]
    assert first == second and len(first) > 100


def _run_once() -> list[Any]:
    agent = LiveAgent(ReplayBackend(SYNTHETIC_RECORDING), load_workers(WORKERS))
    agent.run()
    return list(agent.decisions)
