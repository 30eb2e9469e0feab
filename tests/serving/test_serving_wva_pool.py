"""WVA installation in a pool scenario (issue 14, item 2): the simulated consequence.

A served model its installation leaves unscaled keeps its replicas (no desired count published),
the summary says why per model, and ``twin validate`` prints the same diagnostics. The shipped pair
``scenarios/wva-before-v0.4.3.yaml`` / ``wva-after-migration.yaml`` is the seed's story.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.cli import main
from twin.policy.serving.wva_install import run_installation
from twin.policy.serving.wva_models import NO_INSTALLATION, models_autoscaling
from twin.scenario import load_scenario
from twin.sim.engine import Simulation
from twin.sim.serving import ServingResult
from twin.spec.wva_install import HelmStep, load_installation

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "wva"
BEFORE = ROOT / "scenarios" / "wva-before-v0.4.3.yaml"
AFTER = ROOT / "scenarios" / "wva-after-migration.yaml"
A = "meta-llama/Llama-2-7b-hf|llm-d-model-a"
B = "mistralai/Mistral-7B-v0.1|llm-d-model-b"
VA_A = "VariantAutoscaling/llm-d-model-a/ms-model-a-llm-d-modelservice-decode"
HPA_B = "HorizontalPodAutoscaler/llm-d-model-b/ms-model-b-llm-d-modelservice-decode"


def run(path: Path | str, overrides: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, ServingResult]]:
    sim = Simulation(load_scenario(path, list(overrides)), record_events=False)
    sim.run()
    return sim.metrics.summary["serving"], sim.reports["serving"]


def spec_counts(result: ServingResult) -> set[int]:
    """Every replica count (bound) the model's variants had over the run."""
    return {bound for _t, _v, bound, _ready, _desired in result.timeline}


def desired_values(result: ServingResult) -> set[float]:
    return {desired for *_rest, desired in result.timeline}


@pytest.fixture(scope="module")
def seed_story() -> dict[str, tuple[dict[str, Any], dict[str, ServingResult]]]:
    """Both shipped scenarios, run once for the tests below (a few seconds each)."""
    return {"before": run(BEFORE), "after": run(AFTER)}


def test_before_v043_model_a_keeps_one_replica_and_the_summary_says_why(seed_story: Any) -> None:
    summary, results = seed_story["before"]
    a = summary[A]["autoscaling"]
    assert a["active"] is False
    # the file and Helm step that deleted it, the object, and what it means
    assert "install-before-v0.4.3.yaml:steps[1]" in a["reason"] and VA_A in a["reason"]
    assert "deleted by a later Helm step" in a["reason"]
    assert spec_counts(results[A]) == {1} and summary[A]["avg_replicas"] == 1.0
    assert desired_values(results[A]) == {-1.0}  # the HPA's target is never set: nothing publishes one
    assert summary[B]["autoscaling"]["active"] is True
    assert summary[B]["variants"]["ms-model-b-llm-d-modelservice-decode"]["max_ready"] >= 2


def test_after_migration_both_models_scale_and_a_meets_its_slo_more_often(seed_story: Any) -> None:
    before, _ = seed_story["before"]
    after, results = seed_story["after"]
    assert after[A]["autoscaling"]["active"] is True and after[B]["autoscaling"]["active"] is True
    assert "install-multi-model.yaml" in after[A]["autoscaling"]["reason"]
    assert max(spec_counts(results[A])) >= 2 and after[A]["avg_replicas"] > 1.5
    assert any(d >= 2 for d in desired_values(results[A]))
    assert after[B]["variants"]["ms-model-b-llm-d-modelservice-decode"]["max_ready"] >= 2
    assert after[A]["slo_attainment"] > before[A]["slo_attainment"] + 0.2
    assert after[A]["ttft_ms"]["p95"] < before[A]["ttft_ms"]["p95"]
    # B has its own resources in both installations and its own GPUs: it runs the same either way
    assert {k: v for k, v in after[B].items() if k != "autoscaling"} == {
        k: v for k, v in before[B].items() if k != "autoscaling"
    }


def _model_b_scenario(tmp_path: Path, installation: str | None) -> Path:
    """Model B alone on two A100 nodes, with a burst that makes it scale when WVA is active."""
    doc = yaml.safe_load(AFTER.read_text())
    doc["duration"] = 600
    doc["pools"]["shared"] = {"hardware": "a100", "count": 2, "gpus_per_node": 4, "isolation": "soft"}
    section = doc["workloads"][0]["serving"]
    section["models"] = section["models"][1:]
    section["models"][0]["traffic"]["bursts"] = [{"start": 60, "duration": 480, "rate": 24}]
    if installation is None:
        del section["installation"]
    else:
        section["installation"] = installation
    path = tmp_path / "model-b.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_hpa_unknown_metric_keeps_model_b_at_its_replicas(tmp_path: Path) -> None:
    """The seed's "HPA Shows Unknown Metrics": the selector does not match the series' labels."""
    broken, broken_results = run(_model_b_scenario(tmp_path, str(EXAMPLES / "troubleshoot-hpa-unknown.yaml")))
    scaling = broken[B]["autoscaling"]
    assert scaling["active"] is False
    assert HPA_B in scaling["reason"]
    assert (
        "spec.metrics[0].external.metric.selector.matchLabels.variant_name='ms-model-b-llm-d-modelservice'"
        in scaling["reason"]
    )
    assert "<unknown>" in scaling["reason"]
    assert spec_counts(broken_results[B]) == {1} and desired_values(broken_results[B]) == {-1.0}
    # the same model and load without the installation: its autoscaler scales it
    working, working_results = run(_model_b_scenario(tmp_path, None))
    assert working[B]["autoscaling"] == {"active": True, "reason": NO_INSTALLATION}
    assert max(spec_counts(working_results[B])) >= 2
    assert working[B]["slo_attainment"] > broken[B]["slo_attainment"]


def test_an_unscaled_model_gets_its_evicted_replica_back(tmp_path: Path) -> None:
    """No HPA acts, but the Deployment keeps its count: an evicted replica pends and comes back."""
    path = _model_b_scenario(tmp_path, str(EXAMPLES / "troubleshoot-hpa-unknown.yaml"))
    doc = yaml.safe_load(path.read_text())
    doc["pools"]["shared"]["count"] = 1
    doc["faults"] = [{"kind": "node-failure", "node": "shared-0", "at": 120, "recover_after": 120}]
    path.write_text(yaml.safe_dump(doc))
    summary, results = run(path)
    assert sum(summary[B]["replica_evictions"].values()) >= 1
    ready = [r for _t, _v, _b, r, _d in results[B].timeline]
    assert 0 in ready and ready[-1] == 1  # down while its pod pends, then back to the one replica


def test_namespace_scoped_controller_and_absent_models() -> None:
    """The seed's "Controller Not Watching All Namespaces", and a served model with no resources."""
    inst = load_installation(EXAMPLES / "troubleshoot-namespace-scoped.yaml")
    outcome = run_installation(inst.steps, inst.manifests, source="ns.yaml")
    models = [("llm-d-model-a", "meta-llama/Llama-2-7b-hf"), ("llm-d-model-b", "mistralai/Mistral-7B-v0.1")]
    verdicts = models_autoscaling(outcome, models, "ns.yaml")
    a, b = verdicts[models[0]], verdicts[models[1]]
    assert not a.active
    assert "Deployment/workload-variant-autoscaler-system/workload-variant-autoscaler-controller-manager" in a.reason
    assert "--watch-namespace" in a.reason and "wva.namespaceScoped=false" in a.reason
    assert not b.active  # no VariantAutoscaling for it: nothing scales it
    assert b.reason.startswith("ns.yaml: VariantAutoscaling/llm-d-model-b: spec.modelID='mistralai/Mistral-7B-v0.1'")


def test_an_absent_model_names_the_failed_helm_step() -> None:
    """Before v0.4.3 a second release cannot install (Helm will not adopt the controller objects)."""
    old = (0, 4, 2)
    a = {"llmd.namespace": "llm-d-model-a", "llmd.modelID": "a/a", "llmd.modelName": "ms-a"}
    b = {"llmd.namespace": "llm-d-model-b", "llmd.modelID": "b/b", "llmd.modelName": "ms-b"}
    steps = [
        HelmStep("install", "wva", "wva-system", a, old, source="i.yaml:steps[0]"),
        HelmStep("install", "wva-b", "wva-system", b, old, source="i.yaml:steps[1]"),
    ]
    verdicts = models_autoscaling(run_installation(steps), [("llm-d-model-a", "a/a"), ("llm-d-model-b", "b/b")], "i")
    assert verdicts[("llm-d-model-a", "a/a")].active
    absent = verdicts[("llm-d-model-b", "b/b")]
    assert not absent.active
    assert "i.yaml:steps[1]: helm install wva-b: Error: INSTALLATION FAILED" in absent.reason


_NS = st.sampled_from(["ns-a", "ns-b", "ns-c"])
_ID = st.sampled_from(["m/one", "m/two"])


@st.composite
def _steps(draw: st.DrawFn) -> list[HelmStep]:
    out = []
    for i in range(draw(st.integers(1, 5))):
        values = {
            "installMode": draw(st.sampled_from(["all", "controller-only", "model-resources-only"])),
            "llmd.namespace": draw(_NS),
            "llmd.modelID": draw(_ID),
            "wva.namespaceScoped": draw(st.sampled_from(["true", "false"])),
            "hpa.enabled": draw(st.sampled_from(["true", "false"])),
        }
        action = draw(st.sampled_from(["install", "upgrade", "uninstall"]))
        release = draw(st.sampled_from(["r1", "r2", "r3"]))
        out.append(HelmStep(action, release, "wva", values, (0, 5, 0), True, f"f:steps[{i}]"))  # type: ignore[arg-type]
    return out


@settings(max_examples=60, deadline=None)
@given(steps=_steps(), asked=st.lists(st.tuples(_NS, _ID), min_size=1, max_size=4, unique=True))
def test_every_served_model_gets_one_verdict_matching_the_diagnosis(
    steps: list[HelmStep], asked: list[tuple[str, str]]
) -> None:
    outcome = run_installation(steps, source="f")
    verdicts = models_autoscaling(outcome, asked, "f")
    assert list(verdicts) == asked
    for (ns, model_id), v in verdicts.items():
        matching = [m for m in outcome.models if (m.namespace, m.model_id) == (ns, model_id)]
        assert v.active == any(m.autoscaled for m in matching)
        if not v.active:
            assert v.notices and v.reason == "; ".join(n.render() for n in v.notices)
            assert all(n.severity == "error" for n in v.notices)


def test_validate_prints_the_diagnostics_of_a_scenario() -> None:
    runner = CliRunner()
    before = runner.invoke(main, ["validate", str(BEFORE)])
    assert before.exit_code == 0, before.output
    assert "pool scenario, 2 served models, 1 autoscaled" in before.stdout
    line = next(x for x in before.stderr.splitlines() if x.startswith("warning:"))
    assert f"{BEFORE}: workloads.0.serving.installation: model meta-llama/Llama-2-7b-hf in llm-d-model-a" in line
    assert VA_A in line and "install-before-v0.4.3.yaml:steps[1]" in line
    assert runner.invoke(main, ["validate", "--strict", str(BEFORE)]).exit_code == 1
    after = runner.invoke(main, ["validate", str(AFTER)])
    assert after.exit_code == 0 and "2 served models, 2 autoscaled" in after.stdout and not after.stderr


def test_a_missing_installation_file_names_the_scenario_field(tmp_path: Path) -> None:
    path = _model_b_scenario(tmp_path, "no-such-install.yaml")
    runner = CliRunner()
    validated = runner.invoke(main, ["validate", str(path)])
    assert validated.exit_code == 1
    assert f"{path}: field workloads.0.serving.installation: no such WVA installation file" in validated.stderr
    ran = runner.invoke(main, ["run", str(path), "-o", str(tmp_path / "out"), "-q"])
    assert ran.exit_code == 2
    assert "field workloads.0.serving.installation" in ran.stderr and "Traceback" not in ran.output
    assert not (tmp_path / "out").exists()
    (tmp_path / "not-wva.yaml").write_text("kind: Pod\n")
    wrong = runner.invoke(main, ["validate", str(_model_b_scenario(tmp_path, "not-wva.yaml"))])
    assert wrong.exit_code == 1
    assert "not-wva.yaml: the WVA installation of" in wrong.stderr
    assert "(workloads.0.serving.installation): field kind:" in wrong.stderr


def test_the_summary_and_csv_show_the_unscaled_model(tmp_path: Path) -> None:
    outs = [tmp_path / "out", tmp_path / "again"]
    for out in outs:
        result = CliRunner().invoke(main, ["run", str(BEFORE), "-o", str(out), "-q", "--set", "duration=3m"])
        assert result.exit_code == 0, result.output
    for name in ("summary.json", "serving-timeseries.csv"):  # same scenario and seed: the same bytes
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    out = outs[0]
    summary = json.loads((out / "summary.json").read_text())["serving"]
    assert summary[A]["autoscaling"]["active"] is False
    rows = [r.split(",") for r in (out / "serving-timeseries.csv").read_text().splitlines()[1:]]
    assert {r[6] for r in rows if r[1] == A} == {""}  # desired: not set
    assert f"{A} is not autoscaled" in (out / "report.html").read_text()
