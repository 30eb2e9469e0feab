"""WVA documents: loading, errors that name file/object/field/value, conversion to policy objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from twin.errors import TwinInputError
from twin.policy.serving.from_spec import hpa_spec, variant_info
from twin.policy.serving.hpa import PolicyType
from twin.policy.serving.queue_model import Generation
from twin.spec.wva import load_wva_documents

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "wva" / "llama-8b.yaml"


def test_example_loads_and_converts() -> None:
    b = load_wva_documents([EXAMPLE])
    assert [v.metadata.name for v in b.variants] == ["llama-8b-h100", "llama-8b-a100"]
    assert b.accelerator_costs["H100"].cost == 75.0
    assert b.slo_for("meta/llama-8b") == (500.0, 24.0)
    assert b.slo_for("unknown") == (0.0, 0.0)
    h100 = variant_info(b, b.variants[0], current=2)
    assert (h100.accelerator, h100.cost, h100.current, h100.max_replicas) == ("H100", 75.0, 2, 10)
    assert h100.perf is not None and h100.perf.generation is Generation.CURRENT and h100.perf.max_batch == 64
    assert h100.targets.ttft_ms == 500.0 and h100.targets.itl_ms == 24.0
    a100 = variant_info(b, b.variants[1])
    assert a100.perf is not None and a100.perf.generation is Generation.ERA_A and a100.perf.delta == 0.1
    spec = hpa_spec(b.hpas[0])
    assert spec.behavior.scale_down.stabilization_s == 240.0
    assert spec.behavior.scale_up.policies[0].type is PolicyType.PODS
    assert spec.behavior.scale_down.policies[0].period_s == 150.0


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "wva.yaml"
    p.write_text(text)
    return p


VA = """
apiVersion: llmd.ai/v1alpha1
kind: VariantAutoscaling
metadata: {name: v1, namespace: ns}
spec:
  modelID: m
  modelProfile:
    accelerators:
      - acc: H100
        perfParms: {alpha: "%s", beta: "0.1", gamma: "0.01"}
"""


def test_bad_number_names_file_object_field_value(tmp_path: Path) -> None:
    p = write(tmp_path, VA % "fast")
    with pytest.raises(TwinInputError) as info:
        load_wva_documents([p])
    text = str(info.value)
    assert str(p) in text and "VariantAutoscaling/ns/v1" in text
    assert "spec.modelProfile.accelerators.0.perfParms.alpha" in text and "'fast'" in text


def test_perf_parms_need_one_form(tmp_path: Path) -> None:
    p = write(tmp_path, (VA % "1").replace('gamma: "0.01"', 'delta: "0.01"'))
    with pytest.raises(TwinInputError, match="perfParms"):
        load_wva_documents([p])


def test_bad_cost_json_and_hpa_bounds(tmp_path: Path) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: accelerator-unit-costs}\ndata: {A100: '{cost: 1'}\n"
    with pytest.raises(TwinInputError, match=r"data\.A100"):
        load_wva_documents([write(tmp_path, cm)])
    hpa = (
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\n"
        "spec: {scaleTargetRef: {name: d}, minReplicas: 5, maxReplicas: 2}\n"
    )
    with pytest.raises(TwinInputError, match=r"spec\.minReplicas"):
        load_wva_documents([write(tmp_path, hpa)])
    typo = hpa.replace("minReplicas: 5", "minReplicas: 1, behavior: {scaleUp: {stabilisationWindowSeconds: 3}}")
    with pytest.raises(TwinInputError, match="stabilisationWindowSeconds"):
        load_wva_documents([write(tmp_path, typo)])


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(TwinInputError, match="cannot read"):
        load_wva_documents([tmp_path / "missing.yaml"])
    with pytest.raises(TwinInputError, match="invalid YAML"):
        load_wva_documents([write(tmp_path, "a: [1,\n")])


def test_managed_hpa_is_a_variant_and_models_group_by_namespace() -> None:
    from twin.policy.serving.from_spec import variant_infos
    from twin.policy.serving.observation import group_by_model

    b = load_wva_documents([EXAMPLE])
    infos = variant_infos(b, {"llama-8b-h100": 3})
    by_name = {v.name: v for v in infos}
    assert set(by_name) == {"llama-8b-h100", "llama-8b-a100", "granite-13b-l40s"}
    granite = by_name["granite-13b-l40s"]
    assert (granite.model_id, granite.namespace, granite.cost, granite.max_replicas) == (
        "ibm/granite-13b", "llm-d-b", 5.0, 6,
    )  # fmt: skip
    assert granite.targets.itl_ms == 200.0 and by_name["llama-8b-h100"].current == 3
    assert list(group_by_model(infos)) == ["ibm/granite-13b|llm-d-b", "meta/llama-8b|llm-d"]


def test_managed_hpa_needs_a_model_id(tmp_path: Path) -> None:
    hpa = (
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\n"
        "metadata: {name: h, annotations: {llm-d.ai/managed: 'true', llm-d.ai/variant-cost: cheap}}\n"
        "spec: {scaleTargetRef: {name: d}, maxReplicas: 2}\n"
    )
    with pytest.raises(TwinInputError, match="model-id"):
        load_wva_documents([write(tmp_path, hpa)])
    with pytest.raises(TwinInputError, match="variant-cost"):
        load_wva_documents([write(tmp_path, hpa.replace("llm-d.ai/managed", "llm-d.ai/model-id: m, llm-d.ai/managed"))])
