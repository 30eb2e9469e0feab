"""Capacity planning with the real SLO (issue 14, item 5): ``twin plan`` on the mixed H100 + A100
scenario whose LLMs are served in the pool, the answer's fleet and cost, and the search's polish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from twin.cli import main
from twin.experiments.plan import (
    Dimension,
    cheaper_neighbours,
    missed,
    nearest_cheaper_failure,
    parse_constraint,
    search,
)
from twin.experiments.plan_answer import FleetGroup, fleet
from twin.experiments.runner import run_summary
from twin.hardware import default_catalog

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = str(ROOT / "scenarios" / "capacity-planning.yaml")
H100, A100 = "pools.shared.count", "pools.shared.node_groups.0.count"
CHAT = "meta-llama/Llama-3.1-8B|llm-chat"
ASSIST = "mistralai/Mistral-7B-v0.1|llm-assist"


def test_the_scenario_is_a_mixed_pool_with_two_served_models_and_start_time_workloads() -> None:
    m = run_summary(SCENARIO, 0, ["duration=20m"])
    assert m["cluster.gpus"] == 48.0  # 3 H100 nodes and 3 A100 nodes of 8 GPUs
    for key in (CHAT, ASSIST):
        assert m[f"serving.{key}.requests"] > 100  # request-level traffic for each model
        assert f"serving.{key}.slo_attainment" in m
    assert {"slo_attainment.critical", "slo_attainment.medium"} <= set(m)  # start-time SLOs of the other pods


def test_fleet_counts_both_node_groups_by_gpu_model_with_catalogue_prices() -> None:
    # ``--set`` reaches a list item by index: the A100 group is node_groups.0.
    groups = fleet(SCENARIO, {H100: 4, A100: 2})
    cat = default_catalog()
    h100, a100 = cat.get("h100"), cat.get("a100")
    assert groups == sorted(
        [
            FleetGroup(h100.key, 4, 32, pytest.approx(32 * h100.cost_per_hour)),  # type: ignore[arg-type]
            FleetGroup(a100.key, 2, 16, pytest.approx(16 * a100.cost_per_hour)),  # type: ignore[arg-type]
        ],
        key=lambda g: g.gpu_model,
    )
    assert groups[0].as_dict()["usd_per_quarter"] == round(groups[0].usd_per_hour * 24 * 91, 2)


def test_search_polishes_to_a_local_minimum_and_names_the_cheaper_failures() -> None:
    """Seed noise makes feasibility non-monotone: a lucky (1, 1) passes and an unlucky (1, 4) fails.
    With one round, coordinate search stops at (2, 1) without trying (1, 1); the polish tries every
    one-step-cheaper neighbour, moves to (1, 1), and then checks that its own neighbours fail."""

    def evaluate(params: dict[str, int]) -> dict[str, list[float]]:
        a, b = params["a"], params["b"]
        ok = 1.0 if (a + b >= 3 and (a, b) != (1, 4)) or (a, b) == (1, 1) else 0.0
        return {"cost": [a + 10.0 * b] * 2, "ok": [ok, ok]}

    dims = [Dimension("a", (0, 1, 2, 3, 4)), Dimension("b", (0, 1, 2, 3, 4))]
    result = search(dims, evaluate, objective="cost", constraints=[parse_constraint("ok>=1")], max_rounds=1)
    assert result.best is not None and result.best.params == {"a": 1, "b": 1}
    downs = cheaper_neighbours(result)
    assert [e.params for e in downs] == [{"a": 0, "b": 1}, {"a": 1, "b": 0}]
    assert all(not e.feasible and [str(c) for c in missed(result, e)] == ["ok>=1"] for e in downs)
    near = nearest_cheaper_failure(result)  # the failing configuration closest below the answer's cost
    assert near is not None and near.params == {"a": 0, "b": 1}
    assert near.estimates["cost"].mean < result.best.estimates["cost"].mean


def test_plan_meets_the_serving_slo_and_the_cheaper_a100_neighbour_misses_it(tmp_path: Path) -> None:
    out = tmp_path / "plan"
    args = ["plan", SCENARIO, "--objective", "cost_usd.nodes", "--constraint", "serving.*.slo_attainment>=0.95"]
    args += ["--vary", f"{H100}=3", "--vary", f"{A100}=2..3", "--seeds", "0..1", "--workers", "2", "-o", str(out)]
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    answer = json.loads(res.stdout.strip().splitlines()[-1])
    assert answer["best"]["params"] == {H100: 3, A100: 3}
    extra = answer["answer"]
    assert [(g["gpu_model"], g["nodes"]) for g in extra["fleet"]] == [("A100_SXM_80G", 3), ("H100_SXM", 3)]
    assert extra["fleet_usd_per_quarter"] == pytest.approx(extra["fleet_usd_per_hour"] * 24 * 91, abs=0.01)
    assert extra["serving"][ASSIST]["slo_attainment"]["ci_low"] >= 0.95
    assert extra["serving"][CHAT]["slo_attainment"]["ci_low"] >= 0.95
    assert "slo_attainment.critical" in extra["start_time_slo"]
    # One A100 node fewer: the critical embeddings preempt Mistral's replicas and its SLO breaks.
    (neighbour,) = extra["cheaper_neighbours"]
    assert neighbour["params"] == {H100: 3, A100: 2}
    assert [m["constraint"] for m in neighbour["missed"]] == [f"serving.{ASSIST}.slo_attainment>=0.95"]
    assert neighbour["missed"][0]["ci_low"] < 0.95
    assert extra["nearest_cheaper_failure"] == neighbour
    assert (out / "plan.json").is_file() and (out / "plan.png").is_file()

    # The terminal report says the same in words (off a terminal: plain text).
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "3 H100_SXM nodes (24 GPUs" in text and "3 A100_SXM_80G nodes (24 GPUs" in text and "quarter" in text
    assert "model mistralai/Mistral-7B-v0.1|llm-assist: slo_attainment" in text
    assert "nearest cheaper configuration that fails: pools.shared.count=3, pools.shared.node_groups.0.count=2" in text
    assert "misses serving.llm-assist.slo_attainment" in text


def test_an_unknown_serving_model_or_metric_is_bad_input_listing_the_known_ones(tmp_path: Path) -> None:
    base = ["plan", SCENARIO, "--vary", f"{H100}=3", "-o", str(tmp_path / "p")]
    res = CliRunner().invoke(main, [*base, "--constraint", "serving.llm-code.slo_attainment>=0.9"])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "no served model matches" in text and CHAT in text and ASSIST in text
    res = CliRunner().invoke(main, [*base, "--constraint", "serving.*.slo_attainmnet>=0.9"])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "reports no metric 'slo_attainmnet'" in text and "ttft_attainment" in text
    assert not (tmp_path / "p" / "plan.json").exists()  # nothing simulated beyond the probe, nothing written
