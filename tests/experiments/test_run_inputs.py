"""The run key covers every input file's content and the twin's version (twin.experiments.run_inputs)."""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.experiments import run_inputs
from twin.experiments.executors import SerialPool
from twin.experiments.run_inputs import scenario_inputs, scenario_references
from twin.experiments.shipping import localise
from twin.experiments.sweep import RunSpec, SweepInterrupted, make_executor, plan_runs, run_sweep
from twin.scenario import load_scenario

RUNNER = "sweep_fake_runner:fake_run"


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("time\n0\n60\n")
    (tmp_path / "data" / "b.csv").write_text("time\n0\n")
    (tmp_path / "pods.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\npools: {gpu: {hardware: h100, count: 1}}\nworkloads:\n"
        "  - name: r\n    arrival: {process: replay, file: data/a.csv}\n    shapes: [{request: {tflops: 1}}]\n"
        "  - name: m\n    manifest: pods.yaml\n"
    )
    return path


def test_inputs_list_every_referenced_file_after_overrides(scenario: Path) -> None:
    inputs = scenario_inputs(scenario)
    assert [f.key for f in inputs.refs] == ["workloads.0.arrival.file", "workloads.1.manifest"]
    assert Path(inputs.refs[0].path) == (scenario.parent / "data" / "a.csv").resolve()
    swapped = scenario_inputs(scenario, ["workloads.0.arrival.file=data/b.csv"])
    assert Path(swapped.refs[0].path).name == "b.csv"
    assert swapped.digest() != inputs.digest()
    with pytest.raises(TwinInputError, match=r"workloads\.0\.arrival\.file"):
        scenario_inputs(scenario, ["workloads.0.arrival.file=data/missing.csv"])


def test_run_key_changes_with_a_referenced_file_and_with_the_twin_version(
    scenario: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = plan_runs(str(scenario), {}, [0], runner=RUNNER)[0].run_id
    (scenario.parent / "data" / "a.csv").write_text("time\n" + "\n".join(str(i) for i in range(400)) + "\n")
    after = plan_runs(str(scenario), {}, [0], runner=RUNNER)[0].run_id
    assert after != before
    monkeypatch.setattr(run_inputs, "twin_version", lambda: "9.9.9+other")
    assert plan_runs(str(scenario), {}, [0], runner=RUNNER)[0].run_id != after


def test_a_resumed_sweep_says_how_many_results_it_reused_and_why(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with make_executor("serial", 1) as pool:
        first = run_sweep(plan_runs(str(scenario), {}, [0, 1], runner=RUNNER), out, executor=pool)
        (scenario.parent / "data" / "a.csv").write_text("time\n5\n")
        runs = plan_runs(str(scenario), {}, [0, 1, 2], runner=RUNNER)
        second = run_sweep(runs, out, executor=pool)
        third = run_sweep(runs, out, executor=pool)
    assert (first.computed, second.reused, second.computed, second.stale) == (2, 0, 3, 2)
    assert "2 earlier results not reused" in second.reuse_note() and "a file it references" in second.reuse_note()
    assert (third.reused, third.computed) == (3, 0)
    assert "3 reused from an earlier run with identical inputs" in third.reuse_note()


def test_localised_copies_load_like_the_original(scenario: Path, tmp_path: Path) -> None:
    inputs = scenario_inputs(scenario)
    blobs = {f.sha256: Path(f.path).read_bytes() for f in inputs.files}
    main, extra = localise(inputs, blobs, tmp_path / "cache")
    assert all(Path(o.split("=", 1)[1]).parent == tmp_path / "cache" for o in extra)
    original = load_scenario(scenario).scenario.model_dump()
    copy = load_scenario(main, extra).scenario.model_dump()
    original["workloads"][0]["arrival"]["file"] = copy["workloads"][0]["arrival"]["file"]
    original["workloads"][1]["manifest"] = copy["workloads"][1]["manifest"]
    assert copy == original


_ref = st.sampled_from(["x.csv", "../d/y.csv", "/abs/z.csv"])
_workload = st.fixed_dictionaries(
    {},
    optional={
        "arrival": st.fixed_dictionaries({"process": st.just("replay")}, optional={"file": _ref}),
        "usage": st.fixed_dictionaries({}, optional={"compute": st.fixed_dictionaries({"file": _ref})}),
        "manifest": st.sampled_from(["m.yaml", "kind: Pod\nmetadata: {}\n", "notes.txt"]),
    },
)


_variant = st.fixed_dictionaries({}, optional={"model": st.sampled_from(["cfg/config.json", "llama-3-8b"])})


@given(st.lists(_workload, max_size=4), st.one_of(st.none(), _ref), st.booleans(), st.lists(_variant, max_size=3))
def test_references_are_exactly_the_file_fields(
    workloads: list[dict[str, Any]], traffic: str | None, azure: bool, variants: list[dict[str, Any]]
) -> None:
    data: dict[str, Any] = {"workloads": workloads, "variants": variants}
    if traffic is not None:
        data["traffic"] = {"csv": traffic, **({"azure": {"file": "code"}} if azure else {})}
    expected = {"traffic.csv"} if traffic is not None else set()
    if traffic is not None and azure:
        expected.add("traffic.azure.file")
    expected |= {f"variants.{i}.model" for i, v in enumerate(variants) if v.get("model") == "cfg/config.json"}
    for i, wl in enumerate(workloads):
        if "file" in wl.get("arrival", {}):
            expected.add(f"workloads.{i}.arrival.file")
        if "compute" in wl.get("usage", {}):
            expected.add(f"workloads.{i}.usage.compute.file")
        if wl.get("manifest") == "m.yaml":
            expected.add(f"workloads.{i}.manifest")
    assert {key for key, _ in scenario_references(data)} == expected


class _InterruptingPool(SerialPool):
    """Runs in-process; the second submission stands for Ctrl-C arriving mid-sweep."""

    def __init__(self) -> None:
        self.submitted = 0
        self.interrupted = False

    def submit(self, spec: RunSpec) -> cf.Future[dict[str, float]]:
        self.submitted += 1
        if self.submitted == 2:
            raise KeyboardInterrupt
        return super().submit(spec)

    def interrupt(self) -> None:
        self.interrupted = True


def test_ctrl_c_while_submitting_stops_the_pool_and_a_rerun_completes(scenario: Path, tmp_path: Path) -> None:
    runs = plan_runs(str(scenario), {}, [0, 1, 2], runner=RUNNER)
    pool = _InterruptingPool()
    with pytest.raises(SweepInterrupted) as stop:
        run_sweep(runs, tmp_path / "out", executor=pool)
    assert pool.interrupted and stop.value.total == 3
    assert "of 3 runs are saved in" in str(stop.value)
    with make_executor("serial", 1) as serial:
        resumed = run_sweep(runs, tmp_path / "out", executor=serial)
    assert resumed.reused + resumed.computed == 3 and resumed.stale == 0
