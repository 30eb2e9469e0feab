from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from twin.errors import TwinInputError
from twin.experiments.check import Direction, Verdict, compare_metrics, direction_of, parse_tolerances, run_check
from twin.experiments.plan import Dimension, parse_constraint, parse_vary, search
from twin.experiments.stats import estimate, t_critical
from twin.experiments.sweep import (
    aggregate,
    make_executor,
    parse_grid,
    plan_runs,
    read_finished,
    run_sweep,
    write_table,
)

RUNNER = "sweep_fake_runner:fake_run"


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text("name: fake\n")
    return path


def test_grid_parsing_expands_ranges_and_rejects_bad_entries() -> None:
    assert parse_grid(["a=1,2", "b=3..5"]) == {"a": ["1", "2"], "b": ["3", "4", "5"]}
    assert parse_grid(["c=0..10:5"]) == {"c": ["0", "5", "10"]}
    for bad in ["a", "a=", "=1", "a=1,,2", "a=5..1", "a=x..y"]:
        with pytest.raises(TwinInputError) as err:
            parse_grid([bad])
        assert "--grid" in str(err.value)
    with pytest.raises(TwinInputError, match="twice"):
        parse_grid(["a=1", "a=2"])


def test_t_interval_matches_hand_computation() -> None:
    est = estimate([1.0, 2.0, 3.0])
    # mean 2, s = 1, t(0.975, 2) = 4.303 -> half width 4.303 / sqrt(3)
    assert est.mean == 2.0
    assert est.half_width == pytest.approx(4.303 / 3**0.5)
    assert t_critical(100) == 1.960
    assert estimate([5.0]).half_width == float("inf")


def test_sweep_runs_every_combination_and_resumes_without_recomputing(
    scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("SWEEP_CALLS", str(calls))
    runs = plan_runs(str(scenario), parse_grid(["pools.gpu.count=4,8"]), [0, 1, 2], runner=RUNNER)
    assert len(runs) == 6 and len({r.run_id for r in runs}) == 6
    out = tmp_path / "out"
    with make_executor("serial", 1) as pool:
        first = run_sweep(runs[:4], out, executor=pool)  # "crash" after 4 runs
        assert first.computed == 4
        # A torn last line, as a killed process could leave behind.
        with (out / "runs.jsonl").open("a") as fh:
            fh.write('{"run_id": "abc", "metr')
        second = run_sweep(runs, out, executor=pool)
    assert (second.reused, second.computed) == (4, 2)
    assert len(calls.read_text().splitlines()) == 6  # nothing computed twice
    assert len(read_finished(out / "runs.jsonl")) == 6
    table = aggregate(second.rows)
    by_count = {row["pools.gpu.count"]: row for row in table}
    assert by_count["4"]["cost"] == 40.0 and by_count["8"]["cost"] == 80.0
    assert by_count["4"]["n_seeds"] == 3
    assert (
        by_count["4"]["slo_attainment_ci_low"]
        < by_count["4"]["slo_attainment"]
        < by_count["4"]["slo_attainment_ci_high"]
    )
    written = write_table(table, out)
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "pools.gpu.count" and "cost_ci_low" in header and written[0].name == "results.csv"


def test_changed_scenario_invalidates_old_results(scenario: Path) -> None:
    before = plan_runs(str(scenario), {}, [0], runner=RUNNER)[0].run_id
    scenario.write_text("name: changed\n")
    assert plan_runs(str(scenario), {}, [0], runner=RUNNER)[0].run_id != before


def test_local_process_executor_gives_the_same_rows_as_serial(scenario: Path, tmp_path: Path) -> None:
    runs = plan_runs(str(scenario), parse_grid(["pools.gpu.count=2,6"]), [0, 1], runner=RUNNER)
    with make_executor("serial", 1) as pool:
        serial = run_sweep(runs, tmp_path / "a", executor=pool)
    with make_executor("local", 2) as pool:
        parallel = run_sweep(runs, tmp_path / "b", executor=pool)
    assert [r["metrics"] for r in serial.rows] == [r["metrics"] for r in parallel.rows]


def test_bad_executor_is_a_clear_error() -> None:
    with pytest.raises(TwinInputError, match="executor"), make_executor("threads", 1):
        pass


def test_plan_finds_cheapest_feasible_count_with_few_evaluations() -> None:
    evaluated: list[int] = []

    def evaluate(params: dict[str, int]) -> dict[str, list[float]]:
        n = params["pools.gpu.count"]
        evaluated.append(n)
        att = [min(1.0, n / 20.0) + d for d in (-0.001, 0.0, 0.001)]
        return {"cost": [10.0 * n] * 3, "slo_attainment": att}

    dims = parse_vary(["pools.gpu.count=4..64"])
    result = search(dims, evaluate, objective="cost", constraints=[parse_constraint("slo_attainment>=0.95")])
    assert result.best is not None
    # attainment n/20 >= 0.95 with its CI low bound needs n = 20 (19 gives 0.95 - CI width < 0.95).
    assert result.best.params == {"pools.gpu.count": 20}
    assert len(evaluated) <= 8 < 61  # binary search, not the full grid
    front = result.pareto_front("slo_attainment")
    assert front[0].params["pools.gpu.count"] == min(evaluated) and all(
        a.estimates["cost"].mean < b.estimates["cost"].mean for a, b in itertools.pairwise(front)
    )


def test_plan_reports_infeasible_range() -> None:
    def evaluate(params: dict[str, int]) -> dict[str, list[float]]:
        return {"cost": [1.0, 1.0], "slo_attainment": [0.5, 0.5]}

    result = search(
        [Dimension("k", (1, 2, 3))], evaluate, objective="cost", constraints=[parse_constraint("slo_attainment>=0.9")]
    )
    assert result.best is None and len(result.evaluations) == 1


def test_plan_rejects_unknown_metric_naming_the_available_ones() -> None:
    with pytest.raises(TwinInputError, match="available: cost"):
        search(
            [Dimension("k", (1,))],
            lambda p: {"cost": [1.0, 2.0]},
            objective="cost",
            constraints=[parse_constraint("slo>=1")],
        )


def test_constraint_and_vary_parsing_errors() -> None:
    with pytest.raises(TwinInputError, match="--constraint"):
        parse_constraint("slo => 1")
    with pytest.raises(TwinInputError, match="integers"):
        parse_vary(["k=a,b"])


def test_directions_and_verdicts() -> None:
    assert direction_of("pending_p99_s") is Direction.LOWER
    assert direction_of("allocation_failed") is Direction.LOWER
    assert direction_of("gpu_allocation_ratio") is Direction.HIGHER
    assert direction_of("workers") is Direction.EXACT
    assert direction_of("pending_time_s.medium.count") is Direction.EXACT
    rows = {
        r.metric: r
        for r in compare_metrics(
            "s",
            {"cost": 100.0, "slo_attainment": 0.99, "workers": 10.0, "gone": 1.0},
            {"cost": 101.0, "slo_attainment": 0.90, "workers": 12.0, "new_metric": 3.0},
        )
    }
    assert rows["cost"].verdict is Verdict.SAME  # +1% within the 2% default
    assert rows["slo_attainment"].verdict is Verdict.REGRESSED
    assert rows["workers"].verdict is Verdict.REGRESSED  # unknown direction: any change
    assert rows["gone"].verdict is Verdict.MISSING and rows["new_metric"].verdict is Verdict.NEW
    assert all(r.p_value is None for r in rows.values())  # single values: no significance test
    improved = compare_metrics("s", {"cost": 100.0}, {"cost": 50.0})[0]
    assert improved.verdict is Verdict.IMPROVED and not improved.failed
    assert parse_tolerances(["0.1", "cost=0.5"]) == (0.1, {"cost": 0.5})
    with pytest.raises(TwinInputError):
        parse_tolerances(["cost=-1"])


def test_check_update_then_pass_then_fail_on_a_worse_policy(scenario: Path, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    assert run_check([str(scenario)], str(baseline), update=True, runner=RUNNER).updated
    doc = json.loads(baseline.read_text())
    entry = doc["scenarios"]["s.yaml"]
    assert doc["version"] == 2 and entry["seeds"] == [0, 1, 2, 3, 4]
    assert len(entry["metrics"]["slo_attainment"]) == 5
    assert not run_check([str(scenario)], str(baseline), runner=RUNNER).failed
    # Rewrite the recorded metrics as if the old policy had been better.
    entry["metrics"]["pending_p99_s"] = [10.0, 11.0, 10.5, 9.5, 10.0]
    bad_baseline = tmp_path / "bad.json"
    bad_baseline.write_text(json.dumps(doc))
    outcome = run_check([str(scenario)], str(bad_baseline), runner=RUNNER)
    assert outcome.failed
    row = next(r for r in outcome.rows if r.metric == "pending_p99_s")
    assert row.verdict is Verdict.REGRESSED and row.p_value is not None and row.p_value < 0.05
    assert row.baseline_ci is not None and row.baseline_ci.n == 5
    assert "pending_p99_s" in outcome.table_text and "REGRESSED" in outcome.table_text


def test_version_1_baselines_are_read_as_one_seed_with_a_note(scenario: Path, tmp_path: Path) -> None:
    baseline = tmp_path / "v1.json"
    metrics = {"cost": 80.0, "slo_attainment": 0.4, "pending_p99_s": 60.0}
    doc = {"version": 1, "scenarios": {"s.yaml": {"seed": 0, "overrides": [], "metrics": metrics}}}
    baseline.write_text(json.dumps(doc))
    outcome = run_check([str(scenario)], str(baseline), runner=RUNNER)
    assert not outcome.failed
    assert all(r.p_value is None for r in outcome.rows)  # single runs: no test, the old exact rule
    assert outcome.notes and "--update --seeds" in outcome.notes[0]
    baseline.write_text(json.dumps({"version": 7, "scenarios": {}}))
    with pytest.raises(TwinInputError, match=r"version 1 or 2.*twin check --update"):
        run_check([str(scenario)], str(baseline), runner=RUNNER)


def test_check_cli_exit_codes(scenario: Path, tmp_path: Path) -> None:
    from twin.cli.experiments_cmd import check

    baseline = tmp_path / "b.json"
    runner = CliRunner()
    args = [str(scenario), "--baseline", str(baseline), "--runner", RUNNER, "--executor", "serial"]
    assert runner.invoke(check, [*args, "--update", "--seeds", "4"]).exit_code == 0
    assert runner.invoke(check, args).exit_code == 0
    doc = json.loads(baseline.read_text())
    assert doc["scenarios"]["s.yaml"]["seeds"] == [0, 1, 2, 3]
    doc["scenarios"]["s.yaml"]["metrics"]["slo_attainment"] = [0.999, 0.998, 0.999, 0.997]
    baseline.write_text(json.dumps(doc))
    result = runner.invoke(check, args)
    assert result.exit_code == 1
    assert "slo_attainment" in result.output and "REGRESSED" in result.output


def test_sweep_and_plan_cli(scenario: Path, tmp_path: Path) -> None:
    from twin.cli.experiments_cmd import plan, sweep

    runner = CliRunner()
    out = tmp_path / "sw"
    res = runner.invoke(
        sweep,
        [
            str(scenario),
            "--grid",
            "pools.gpu.count=4,8",
            "--seeds",
            "2",
            "--executor",
            "serial",
            "-o",
            str(out),
            "--runner",
            RUNNER,
        ],
    )
    assert res.exit_code == 0, res.output
    assert (out / "results.csv").exists() and len(read_finished(out / "runs.jsonl")) == 4
    assert "sweep: 4/4 runs, 0:00:" in res.output  # off a terminal: plain progress lines, not silence
    out2 = tmp_path / "pl"
    res = runner.invoke(
        plan,
        [
            str(scenario),
            "--objective",
            "cost",
            "--constraint",
            "slo_attainment>=0.6",
            "--vary",
            "pools.gpu.count=2..30",
            "--seeds",
            "3",
            "--executor",
            "serial",
            "-o",
            str(out2),
            "--runner",
            RUNNER,
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "plan: " in res.output and "configurations evaluated" in res.output
    answer = json.loads(res.stdout.strip().splitlines()[-1])
    assert answer["best"]["params"] == {"pools.gpu.count": 13}
    assert (out2 / "plan.png").stat().st_size > 1000
