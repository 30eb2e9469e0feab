"""WVA installation as in the seed (multi-model migration guide): install modes, Helm ownership,
the pre-v0.4.3 overwrite, and the two troubleshooting cases, each naming the object and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.cli import main
from twin.errors import TwinInputError
from twin.policy.serving.wva_install import CONTROLLER_NAME, render, run_installation
from twin.spec.wva_install import HelmStep, load_installation, parse_version

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "wva"
V043 = (0, 4, 3)


def outcome_of(name: str):  # type: ignore[no-untyped-def]
    inst = load_installation(EXAMPLES / name)
    return run_installation(inst.steps, inst.manifests, source=name)


def step(
    action: str, release: str, ns: str = "default", version: tuple[int, int, int] = V043, **values: str
) -> HelmStep:
    return HelmStep(action, release, ns, {k.replace("__", "."): v for k, v in values.items()}, version)  # type: ignore[arg-type]


def test_seed_migration_scales_both_models_independently() -> None:
    out = outcome_of("install-multi-model.yaml")
    assert all(r.ok for r in out.steps)
    assert out.autoscaled == {
        "llm-d-model-a/ms-model-a-llm-d-modelservice-decode": True,
        "llm-d-model-b/ms-model-b-llm-d-modelservice-decode": True,
    }
    refs = {o.ref for o in out.objects}
    # the seed's post-migration architecture: one controller, VA/HPA/Service/ServiceMonitor per model namespace
    assert f"Deployment/workload-variant-autoscaler-system/{CONTROLLER_NAME}" in refs
    for ns, name in (("llm-d-model-a", "ms-model-a"), ("llm-d-model-b", "ms-model-b")):
        for kind in ("VariantAutoscaling", "HorizontalPodAutoscaler"):
            assert f"{kind}/{ns}/{name}-llm-d-modelservice-decode" in refs
        for kind in ("Service", "ServiceMonitor"):
            assert f"{kind}/{ns}/{name}-llm-d-modelservice-vllm" in refs
    va_b = next(o for o in out.objects if o.kind == "VariantAutoscaling" and o.namespace == "llm-d-model-b")
    assert va_b.fields["spec.modelID"] == "mistralai/Mistral-7B-v0.1"
    assert va_b.fields["slo.ttft_ms"] == "800" and va_b.fields["slo.tpot_ms"] == "8"


def test_before_v043_installing_model_b_replaces_model_a() -> None:
    out = outcome_of("install-before-v0.4.3.yaml")
    assert all(r.ok for r in out.steps)
    assert "VariantAutoscaling/llm-d-model-a/ms-model-a-llm-d-modelservice-decode" in out.steps[1].deleted
    assert out.autoscaled == {
        "llm-d-model-b/ms-model-b-llm-d-modelservice-decode": True,
        "llm-d-model-a/ms-model-a-llm-d-modelservice-decode": False,
    }
    (gone,) = next(m for m in out.models if m.namespace == "llm-d-model-a").reasons
    assert "deleted by a later Helm step" in gone.message and gone.source.endswith("steps[1]")


def test_before_v043_a_second_release_cannot_adopt_the_controller() -> None:
    a = step("install", "wva-a", "wva-system", (0, 4, 2), llmd__namespace="a", llmd__modelID="m/a")
    b = step("install", "wva-b", "wva-system", (0, 4, 2), llmd__namespace="b", llmd__modelID="m/b")
    out = run_installation([a, b])
    assert out.steps[0].ok and not out.steps[1].ok
    assert "cannot be imported into the current release: invalid ownership metadata" in out.steps[1].message
    assert out.autoscaled == {"a/ms-llm-d-modelservice-decode": True}  # the failed install changed nothing


def test_install_mode_is_ignored_before_v043_with_a_warning() -> None:
    objects, notices = render(step("install", "r", version=(0, 4, 2), installMode="controller-only"))
    assert {o.kind for o in objects} >= {"Deployment", "VariantAutoscaling"}  # everything together
    assert any(n.field_path == "installMode" and "v0.4.3" in n.message for n in notices)


@pytest.mark.parametrize(
    ("mode", "kinds"),
    [
        (
            "all",
            {"Deployment", "ClusterRole", "VariantAutoscaling", "HorizontalPodAutoscaler", "Service", "ServiceMonitor"},
        ),
        ("controller-only", {"Deployment", "ClusterRole"}),
        ("model-resources-only", {"VariantAutoscaling", "HorizontalPodAutoscaler", "Service", "ServiceMonitor"}),
    ],
)
def test_each_install_mode_renders_its_part(mode: str, kinds: set[str]) -> None:
    objects, notices = render(step("install", "r", installMode=mode, llmd__modelID="m"))
    assert {o.kind for o in objects} == kinds
    assert not notices


def test_controller_enabled_false_is_model_resources_only() -> None:
    objects, _ = render(step("install", "r", controller__enabled="false", llmd__modelID="m"))
    assert "Deployment" not in {o.kind for o in objects}


def test_namespace_scoped_controller_does_not_watch_other_namespaces() -> None:
    out = outcome_of("troubleshoot-namespace-scoped.yaml")
    (model,) = out.models
    assert not model.autoscaled
    (reason,) = model.reasons
    assert reason.obj == f"Deployment/workload-variant-autoscaler-system/{CONTROLLER_NAME}"
    assert "--watch-namespace" in reason.field_path
    assert reason.value == "workload-variant-autoscaler-system"
    assert "wva.namespaceScoped=false" in reason.message


def test_hpa_selector_that_disagrees_with_the_series_labels_is_unknown() -> None:
    out = outcome_of("troubleshoot-hpa-unknown.yaml")
    (model,) = out.models
    assert not model.autoscaled
    fields = {n.field_path: n.value for n in model.reasons}
    prefix = "spec.metrics[0].external.metric.selector.matchLabels."
    assert fields == {
        prefix + "namespace": "llm-d-model-b",  # the scraped series carries exported_namespace instead
        prefix + "variant_name": "ms-model-b-llm-d-modelservice",  # the VA is ...-decode
    }
    assert all(
        n.obj == "HorizontalPodAutoscaler/llm-d-model-b/ms-model-b-llm-d-modelservice-decode" for n in model.reasons
    )
    assert all("<unknown>" in n.message for n in model.reasons)


def test_controller_instance_on_the_model_only_makes_the_hpa_unknown() -> None:
    controller = step("install", "c", "wva-system", installMode="controller-only", wva__namespaceScoped="false")
    model = step(
        "install", "m", installMode="model-resources-only", llmd__namespace="x", llmd__modelID="m",
        wva__controllerInstance="blue",
    )  # fmt: skip
    (status,) = run_installation([controller, model]).models
    assert [n.field_path.rsplit(".", 1)[-1] for n in status.reasons] == ["controller_instance"]
    fixed = step("install", "c", "wva-system", installMode="controller-only", wva__namespaceScoped="false",
                 wva__controllerInstance="blue")  # fmt: skip
    assert run_installation([fixed, model]).models[0].autoscaled


def test_metric_name_follows_the_chart_version() -> None:
    old, _ = render(step("install", "r", version=(0, 4, 3), llmd__modelID="m"))
    new, _ = render(step("install", "r", version=(0, 5, 0), llmd__modelID="m"))
    name = "spec.metrics[0].external.metric.name"
    assert next(o for o in old if o.kind == "HorizontalPodAutoscaler").fields[name] == "inferno_desired_replicas"
    assert next(o for o in new if o.kind == "HorizontalPodAutoscaler").fields[name] == "wva_desired_replicas"


def test_uninstalling_a_model_leaves_the_others() -> None:
    inst = load_installation(EXAMPLES / "install-multi-model.yaml")
    out = run_installation([*inst.steps, step("uninstall", "wva-model-a")])
    assert out.steps[-1].ok
    assert out.autoscaled["llm-d-model-b/ms-model-b-llm-d-modelservice-decode"] is True
    assert out.autoscaled["llm-d-model-a/ms-model-a-llm-d-modelservice-decode"] is False


def test_helm_release_rules() -> None:
    a = step("install", "r", llmd__modelID="m")
    out = run_installation([a, a, step("upgrade", "nope"), step("uninstall", "nope")])
    assert [r.ok for r in out.steps] == [True, False, False, False]
    assert "cannot re-use a name" in out.steps[1].message
    assert "has no deployed releases" in out.steps[2].message
    up = HelmStep("upgrade", "new", "default", {"llmd.modelID": "m"}, V043, install_if_missing=True)
    assert run_installation([up]).steps[0].ok


def test_unknown_values_are_warned_not_applied() -> None:
    _, notices = render(step("install", "r", llmd__modelID="m", va__sloTTFT="5"))
    (notice,) = notices
    assert notice.severity == "warning" and notice.field_path == "va.sloTTFT" and "Helm ignores" in notice.message


def write(tmp_path: Path, text: str, name: str = "i.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_helm_command_forms(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text("llmd:\n  namespace: from-file\n  modelID: m/file\nva: {enabled: true}\n")
    path = write(
        tmp_path,
        "kind: WVAInstallation\nchartVersion: v0.4.3\nsteps:\n"
        "  - helm upgrade --install r ./chart --namespace=ns -f v.yaml --set llmd.namespace=from-set,va.sloTtft=9 "
        "--set-file wva.prometheus.caCert=/tmp/ca.pem --version 0.5.1\n",
    )
    (s,) = load_installation(path).steps
    assert (s.action, s.release, s.namespace, s.install_if_missing) == ("upgrade", "r", "ns", True)
    assert s.chart_version == (0, 5, 1)
    assert s.values["llmd.namespace"] == "from-set"  # --set wins over -f
    assert s.values["llmd.modelID"] == "m/file" and s.values["va.enabled"] == "true"
    assert s.values["va.sloTtft"] == "9" and s.values["wva.prometheus.caCert"] == "<file:/tmp/ca.pem>"


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("  - kubectl apply -f x\n", "expected 'helm install"),
        ("  - helm install onlyname\n", "NAME CHART"),
        ("  - helm install r c --set novalue\n", "key=value"),
        ("  - helm install r c --frobnicate\n", "unsupported helm flag"),
        ("  - helm install r c --set\n", "needs a value"),
        ("  - helm install r 'c\n", "cannot split"),
        ("  - {action: delete, release: r}\n", "install, upgrade or uninstall"),
        ("  - {release: r, bogus: 1}\n", "unknown field"),
        ("  - 42\n", "helm command string or a mapping"),
    ],
)
def test_bad_steps_name_the_step(tmp_path: Path, steps: str, message: str) -> None:
    path = write(tmp_path, "kind: WVAInstallation\nsteps:\n" + steps)
    with pytest.raises(TwinInputError, match=message) as info:
        load_installation(path)
    assert "steps[0]" in str(info.value) and str(path) in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(TwinInputError, match="kind: WVAInstallation"):
        load_installation(write(tmp_path, "kind: Pod\n"))
    with pytest.raises(TwinInputError, match="chart version"):
        load_installation(write(tmp_path, "kind: WVAInstallation\nchartVersion: latest\nsteps: [helm uninstall r]\n"))
    with pytest.raises(TwinInputError, match="non-empty list"):
        load_installation(write(tmp_path, "kind: WVAInstallation\nsteps: []\n"))
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00" * 100)
    with pytest.raises(TwinInputError, match="UTF-8"):
        load_installation(binary)
    deep = "kind: WVAInstallation\nsteps: [{release: r, set: " + "{a: " * 40 + "1" + "}" * 40 + "}]\n"
    with pytest.raises(TwinInputError, match="nested deeper"):
        load_installation(write(tmp_path, deep))


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_any_step_text_is_a_step_or_a_clear_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "i.yaml"
    path.write_text("kind: WVAInstallation\nsteps:\n  - " + json.dumps("helm install r c " + text) + "\n")
    try:
        inst = load_installation(path)
    except TwinInputError:
        return
    run_installation(inst.steps)  # whatever parsed, replaying it must not raise


@pytest.mark.parametrize(
    ("text", "version"), [("0.4.3", (0, 4, 3)), ("v0.4.3", (0, 4, 3)), ("0.5", (0, 5, 0)), ("1", (1, 0, 0)),
                          ("0.4.3-rc1", (0, 4, 3))]
)  # fmt: skip
def test_versions(text: str, version: tuple[int, int, int]) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize("text", ["", "latest", "1.2.3.4", "a.b", "9" * 20])
def test_bad_versions(text: str) -> None:
    with pytest.raises(ValueError, match="not a chart version"):
        parse_version(text)


def test_cli_exit_codes_and_json() -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["wva", "check", str(EXAMPLES / "install-multi-model.yaml")])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(main, ["wva", "check", "--json", str(EXAMPLES / "install-before-v0.4.3.yaml")])
    assert bad.exit_code == 1
    data = json.loads(bad.output)
    models = data[str(EXAMPLES / "install-before-v0.4.3.yaml")]["models"]
    assert {m["namespace"]: m["autoscaled"] for m in models} == {"llm-d-model-a": False, "llm-d-model-b": True}
    missing = runner.invoke(main, ["wva", "check", "/nonexistent.yaml"])
    assert missing.exit_code == 2


def test_validate_diagnoses_installation_files_naming_object_and_field() -> None:
    runner = CliRunner()
    good = runner.invoke(main, ["validate", str(EXAMPLES / "install-multi-model.yaml")])
    assert good.exit_code == 0 and "2 models autoscaled" in good.output
    scoped = runner.invoke(main, ["validate", str(EXAMPLES / "troubleshoot-namespace-scoped.yaml")])
    assert scoped.exit_code == 1
    assert f"Deployment/workload-variant-autoscaler-system/{CONTROLLER_NAME}" in scoped.output
    assert "--watch-namespace='workload-variant-autoscaler-system'" in scoped.output
    unknown = runner.invoke(main, ["validate", str(EXAMPLES / "troubleshoot-hpa-unknown.yaml")])
    assert unknown.exit_code == 1
    assert "selector.matchLabels.variant_name='ms-model-b-llm-d-modelservice'" in unknown.output


def test_validate_reads_wva_objects_beside_manifests() -> None:
    runner = CliRunner()
    pods = str(EXAMPLES.parent / "pods.yaml")
    pool = str(EXAMPLES.parent / "workloads" / "pool.yaml")  # the pods name this pool
    result = runner.invoke(main, ["validate", str(EXAMPLES / "llama-8b.yaml"), pods, pool])
    assert result.exit_code == 0, result.output
    assert "2 VariantAutoscaling, 2 HPA" in result.output and "OK " + pods in result.output
