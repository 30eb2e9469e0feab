"""The project gates itself: every shipped scenario against tests/gate/gate_baseline.json.

The baseline records each scenario's five seeds and short-duration overrides so the whole gate
runs in seconds. After an intended change, rewrite it with
``TWIN_UPDATE_BASELINE=1 .venv/bin/pytest tests/gate`` and review the diff before committing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from twin.experiments.check import Verdict, load_baseline, run_check, scenario_key
from twin.experiments.executors import make_executor
from twin.spec.openb import default_pods_path

pytest_plugins = ["twin.testing"]
CheckFn = Callable[..., None]  # the twin_check fixture (twin.testing)

ROOT = Path(__file__).resolve().parents[2]
BASELINE = Path(__file__).with_name("gate_baseline.json")
RUNNER = "twin.experiments.runner:run_summary"
BAD_RUNNER = "gate_runners:run_with_bad_placement"
NEUTRAL_RUNNER = "gate_runners:run_with_other_trajectories"
# Scenarios that read the shared data sets run only where ../shared is present (CI has it beside the clone).
NEEDS_SHARED = {
    "llm-serving-azure.yaml": ROOT.parent / "shared" / "data" / "azure-llm-2023",
    "mixed-pool.yaml": default_pods_path().parent,
}
SHIPPED = sorted(
    str(p) for p in (ROOT / "scenarios").glob("*.yaml") if p.name not in NEEDS_SHARED or NEEDS_SHARED[p.name].is_dir()
)
# Pool scenarios whose scenario-wide placement the bad strategy replaces.
POOL_SCENARIOS = [str(ROOT / "scenarios" / "quickstart.yaml"), str(ROOT / "scenarios" / "capacity-planning.yaml")]


def test_every_shipped_scenario_has_a_short_baseline_entry() -> None:
    entries = load_baseline(BASELINE)
    missing = [s for s in SHIPPED if scenario_key(s, BASELINE) not in entries]
    assert not missing, f"add these to {BASELINE.name} (seed + short overrides), then update it: {missing}"
    for key, entry in entries.items():
        assert entry.metrics, f"{key} has no metrics recorded"


def test_shipped_scenarios_do_not_regress(twin_check: CheckFn) -> None:
    twin_check(SHIPPED, baseline=BASELINE, runner=RUNNER, workers=2)


def test_a_neutral_change_of_trajectories_passes_the_gate() -> None:
    """Every run follows another trajectory (other seeds), as after a refactor that changes a tie-break."""
    with make_executor("local", 2) as pool:
        outcome = run_check(SHIPPED, str(BASELINE), runner=NEUTRAL_RUNNER, pool=pool)
    assert not outcome.failed, outcome.table_text
    tested = [r for r in outcome.rows if r.p_value is not None]
    assert len(tested) > 500  # every metric of every scenario, judged on its distribution
    # Trajectories did change: compared run by run, as the one-seed gate did, many metrics moved.
    moved = [r for r in tested if r.baseline_ci and r.current_ci and r.baseline_ci.mean != r.current_ci.mean]
    assert len(moved) > 100


def test_the_single_run_rule_of_a_version_1_baseline_flags_the_same_neutral_change(tmp_path: Path) -> None:
    entries = load_baseline(BASELINE)
    quickstart = POOL_SCENARIOS[0]
    entry = entries[scenario_key(quickstart, BASELINE)]
    v1 = tmp_path / "v1.json"
    one_seed = {k: v[0] for k, v in entry.metrics.items() if v[0] == v[0]}  # first seed, NaN dropped
    doc = {"seed": entry.seeds[0], "overrides": list(entry.overrides), "metrics": one_seed}
    v1.write_text(json.dumps({"version": 1, "scenarios": {scenario_key(quickstart, v1): doc}}))
    outcome = run_check([quickstart], str(v1), runner=NEUTRAL_RUNNER)
    assert outcome.failed and outcome.notes
    assert sum(r.verdict is Verdict.REGRESSED for r in outcome.rows) >= 5


def test_a_worse_placement_fails_the_gate_naming_the_metric() -> None:
    with make_executor("local", 2) as pool:
        outcome = run_check(POOL_SCENARIOS, str(BASELINE), runner=BAD_RUNNER, pool=pool)
    assert outcome.failed
    regressed = {(r.scenario, r.metric) for r in outcome.rows if r.verdict is Verdict.REGRESSED}
    assert ("../../scenarios/capacity-planning.yaml", "slo_attainment") in regressed
    assert ("../../scenarios/quickstart.yaml", "workers.pending_at_end") in regressed
    table = outcome.table_text
    header = table.splitlines()[0].split()
    assert header == ["scenario", "metric", "baseline", "current", "change", "p", "tolerance", "verdict"]
    row = next(line for line in table.splitlines() if "capacity-planning" in line and " slo_attainment " in line)
    assert "REGRESSED (higher-is-better)" in row


def test_the_fixture_fails_the_test_with_the_table(twin_check: CheckFn) -> None:
    with pytest.raises(pytest.fail.Exception) as failure:
        twin_check(POOL_SCENARIOS[1:], baseline=BASELINE, runner=BAD_RUNNER)
    message = str(failure.value)
    assert message.startswith("twin check found regressions:")
    assert "slo_attainment" in message and "REGRESSED" in message
