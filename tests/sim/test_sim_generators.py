"""Arrival processes, distributions and usage profiles (twin.sim.generators), and the limiter loop mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from simtest_helpers import generator, loaded, small_scenario

from twin.errors import TwinInputError
from twin.scenario import Arrival, Distribution, UsageProfile
from twin.seeding import component_rng
from twin.sim.engine import Simulation
from twin.sim.generators import UsageSeries, arrival_times, read_replay, sample


def _rng(name: str = "x") -> np.random.Generator:
    return component_rng(1, name)


def test_constant_and_bursts_are_exact() -> None:
    t = arrival_times(Arrival(process="constant", rate_per_hour=4), 3600, _rng())
    assert t.tolist() == [0.0, 900.0, 1800.0, 2700.0]
    b = arrival_times(Arrival(process="bursts", burst_every=1800, burst_size=3, start=60), 3600, _rng())
    assert b.tolist() == [60.0] * 3 + [1860.0] * 3


def test_poisson_rate_and_window() -> None:
    t = arrival_times(Arrival(process="poisson", rate_per_hour=3600, start=100, stop=1100), 10_000, _rng())
    assert 900 < t.size < 1100  # 1000 expected
    assert t.min() >= 100 and t.max() < 1100 and np.all(np.diff(t) >= 0)
    capped = arrival_times(Arrival(process="poisson", rate_per_hour=3600, max_count=10), 10_000, _rng())
    assert capped.size == 10


def test_diurnal_peaks_at_peak_time() -> None:
    a = Arrival(process="diurnal", rate_per_hour=600, amplitude=0.9, peak_at=12 * 3600)
    t = arrival_times(a, 10 * 86400, _rng())
    hours = (t % 86400) // 3600
    counts = np.bincount(hours.astype(int), minlength=24)
    assert counts[11:13].sum() > 5 * counts[[23, 0]].sum()
    assert t.size == pytest.approx(600 * 240, rel=0.05)


def test_replay_reads_times_and_columns(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("time,lifetime\n30,100\n10,50\n")
    rows = read_replay(f)
    assert rows.times.tolist() == [10.0, 30.0] and rows.lifetimes is not None and rows.lifetimes.tolist() == [50, 100]
    bad = tmp_path / "bad.csv"
    bad.write_text("time\nsoon\n")
    with pytest.raises(TwinInputError) as err:
        read_replay(bad)
    assert err.value.line == 2 and err.value.field == "time"


def test_replay_scenario_runs_the_recorded_arrivals(tmp_path: Path) -> None:
    (tmp_path / "arr.csv").write_text("time,lifetime\n0,600\n120,60\n")
    wl = generator("r", arrival={"process": "replay", "file": "arr.csv"}, lifetime=None)
    del wl["lifetime"]
    sim = Simulation(loaded(small_scenario(duration="1h", workloads=[wl]), base=tmp_path))
    sim.run()
    assert [(w.arrival, w.finished_at) for w in sim.workers.values()] == [(0.0, 600.0), (120.0, 180.0)]


def test_distributions() -> None:
    rng = _rng()
    assert sample(Distribution(kind="fixed", value=3), rng, 2).tolist() == [3.0, 3.0]
    assert sample(Distribution(kind="exponential", mean=10), rng, 20000).mean() == pytest.approx(10, rel=0.05)
    logn = sample(Distribution(kind="lognormal", median=100, sigma=0.5), rng, 20000)
    assert float(np.median(logn)) == pytest.approx(100, rel=0.05)
    uni = sample(Distribution(kind="uniform", low=2, high=4), rng, 1000)
    assert uni.min() >= 2 and uni.max() <= 4


def test_usage_profiles(tmp_path: Path) -> None:
    per = UsageSeries(UsageProfile(kind="periodic", mean=0.5, amplitude=0.2, period=100), 0.0, 1.0, None)
    assert per.at(25) == pytest.approx(0.7) and per.at(75) == pytest.approx(0.3)
    walk = UsageSeries(UsageProfile(kind="random_walk", mean=0.5, sigma=0.5, high=0.6), 0.0, 1.0, _rng("w"))
    vals = [walk.at(t) for t in range(1, 50)]
    assert all(0.0 <= v <= 0.6 for v in vals) and len(set(vals)) > 1
    trace = UsageSeries(UsageProfile(kind="trace", file="x"), 0.0, 1.0, None, ([0, 10, 20], [0.1, 0.4, 0.4]))
    assert [trace.at(t) for t in (0, 9, 10, 25)] == [0.1, 0.1, 0.4, 0.1]  # repeats after the last row


def test_usage_clock_simulation_time_or_worker_running_time() -> None:
    per = UsageSeries(UsageProfile(kind="periodic", mean=0.5, amplitude=0.2, period=100), 0.0, 1.0, None)
    assert per.profile.uses_simulation_clock
    assert per.value(run_time=0.0, now=25.0) == pytest.approx(0.7)  # a shared traffic pattern
    own = UsageSeries(UsageProfile(kind="periodic", mean=0.5, amplitude=0.2, period=100, clock="worker"), 0, 1, None)
    assert own.value(run_time=0.0, now=25.0) == pytest.approx(0.5)
    trace = UsageProfile(kind="trace", file="x")
    assert not trace.uses_simulation_clock


def test_limiter_loop_mode_ticks_only_where_it_throttles_and_agrees_with_the_fluid_model() -> None:
    def scenario(mode: str) -> dict[str, object]:
        wl = generator(
            "w",
            arrival={"process": "bursts", "burst_every": "10h", "burst_size": 2},
            lifetime={"kind": "fixed", "value": "10h"},
            shapes=[{"request": {"tflops": 300, "vram_gib": 10}, "limit": {"tflops": 400, "vram_gib": 10}}],
            usage={"compute": {"kind": "constant", "value": 0.6}},
        )
        idle = generator(
            "idle",
            arrival={"process": "bursts", "burst_every": "10h", "burst_size": 1, "start": 1},
            lifetime={"kind": "fixed", "value": "10h"},
            pool="q",
            shapes=[{"request": {"tflops": 300, "vram_gib": 10}}],
            usage={"compute": {"kind": "constant", "value": 0.2}},
        )
        return small_scenario(
            duration="10m",
            pools={
                "p": {"hardware": "h100", "count": 1, "gpus_per_node": 1, "isolation": "soft"},
                "q": {"hardware": "h100", "count": 1, "gpus_per_node": 1, "isolation": "soft"},
            },
            workloads=[wl, idle],
            controllers=[{"name": "metrics", "interval": 60}, {"name": "limiter", "params": {"mode": mode}}],
        )

    fluid = Simulation(loaded(scenario("fluid")))
    fluid.run()
    loop = Simulation(loaded(scenario("loop")))
    loop.run()
    # Two workers wanting 0.6 each, UpLimit ceil(400/989) = 41 %: device held near 0.41.
    f_shares = sorted(w.share for w in fluid.workers.values() if w.workload == "w")
    l_shares = sorted(w.share for w in loop.workers.values() if w.workload == "w")
    assert sum(f_shares) == pytest.approx(0.41)
    assert sum(l_shares) == pytest.approx(0.41, abs=0.04)
    # The lone light worker on pool q is never throttled, so its GPU is never ticked.
    assert loop.workers["idle-0"].share == pytest.approx(0.2)
    assert loop.limiter_loop is not None and loop.limiter_loop.ticks == 1199  # one GPU ticked at 0.5 s .. 599.5 s
