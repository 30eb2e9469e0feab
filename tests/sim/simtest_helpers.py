"""Shared builders for the simulator tests (imported by tests/sim/test_sim_*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twin.resources import QoS
from twin.scenario import LoadedScenario, validate_scenario
from twin.sim.engine import Simulation
from twin.sim.workers import Phase

REPO = Path(__file__).resolve().parents[2]


def loaded(data: dict[str, Any], base: Path | None = None) -> LoadedScenario:
    return LoadedScenario(validate_scenario(data, file="<test>"), base or REPO, "<test>")


def small_scenario(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "t",
        "duration": "2h",
        "seed": 1,
        "pools": {"p": {"hardware": "h100", "count": 1, "gpus_per_node": 2, "isolation": "soft"}},
        "workloads": [],
    }
    data.update(extra)
    return data


def generator(name: str, **extra: Any) -> dict[str, Any]:
    wl: dict[str, Any] = {
        "name": name,
        "arrival": {"process": "poisson", "rate_per_hour": 10},
        "lifetime": {"kind": "exponential", "mean": 1800},
        "shapes": [{"request": {"tflops": 300, "vram_gib": 10}}],
    }
    wl.update(extra)
    return wl


def check_consistency(sim: Simulation) -> list[str]:
    """Conservation and capacity: every worker in exactly one phase, the bookkeeping agrees."""
    problems = list(sim.state.check_invariants())
    pending = {w.uid for w in sim.pending.items()}
    for w in sim.workers.values():
        in_pending = w.uid in pending
        in_running = w.uid in sim.running_set
        placed = w.uid in sim.state.allocations
        flags = (w.phase is Phase.PENDING, w.phase is Phase.RUNNING, w.phase is Phase.DONE)
        if sum(flags) != 1:
            problems.append(f"{w.uid}: phase {w.phase}")
        if in_pending != (w.phase is Phase.PENDING):
            problems.append(f"{w.uid}: phase {w.phase} but pending-queue membership {in_pending}")
        if in_running != (w.phase is Phase.RUNNING) or placed != (w.phase is Phase.RUNNING):
            problems.append(f"{w.uid}: phase {w.phase}, running set {in_running}, allocated {placed}")
    if sim.pending.size != len(pending):
        problems.append(f"pending size {sim.pending.size} != {len(pending)}")
    if sum(sim.pending.count_by_qos[q] for q in QoS) != sim.pending.size:
        problems.append("pending counts by QoS do not add up")
    for g, residents in sim.load.residents.items():
        cap = sim.state.gpus[g].capacity
        if sum(w.shares.get(g, 0.0) for w in residents) > 1.0 + 1e-9:
            problems.append(f"{g}: shares above one device")
        takes = sim.state.gpus[g].takes.values()
        if sum(t.tflops for t in takes) > cap.tflops + 1e-6 or sum(t.vram for t in takes) > cap.vram:
            problems.append(f"{g}: requests above capacity")
        if sim.load.vram_used[g] > cap.vram:
            problems.append(f"{g}: VRAM in use above the device")
        for w in residents:
            if w.phase is not Phase.RUNNING:
                problems.append(f"{g}: resident {w.uid} is {w.phase}")
    return problems


def run_checked(sim: Simulation) -> list[str]:
    """Step the SimPy loop one event at a time, checking consistency after each event."""
    problems: list[str] = []
    end = sim.scenario.duration
    env = sim.env
    while env.peek() <= end:
        env.step()
        found = check_consistency(sim)
        if found:
            problems.extend(f"t={env.now}: {p}" for p in found)
            break
    return problems
