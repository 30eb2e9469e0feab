"""Loading YAML into a SpecBundle: CRD defaults, quota validation, selectors, and error locations."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_builders import bundle_of, dump, pod_doc

from twin.errors import TwinInputError, TwinInputErrors
from twin.resources import GIB, GPUPhase, IsolationMode, PlacementMode, QoS, Resource
from twin.spec import load_documents, load_documents_lenient, parse_documents, parse_documents_lenient, supported_kinds
from twin.spec.annotations import ANNOTATIONS, annotation_warnings
from twin.spec.selectors import LabelSelector

TF = "tensor-fusion.ai/v1"


def test_gpupool_crd_defaults() -> None:
    b = parse_documents(
        "apiVersion: tensor-fusion.ai/v1\nkind: GPUPool\nmetadata: {name: p}\n"
        "spec:\n  capacityConfig:\n    oversubscription: {}\n  qosConfig: {pricing: [{qos: medium}]}\n"
    )
    pool = b.pools["p"]
    over = pool.spec.capacity_config.oversubscription if pool.spec.capacity_config else None
    assert over is not None
    assert (over.tflops_oversell_ratio, over.vram_expand_to_host_mem, over.vram_expand_to_host_disk) == (500, 50, 70)
    nm = pool.spec.node_manager_config
    assert nm.default_isolation_mode == IsolationMode.SOFT and nm.default_vendor == "NVIDIA"
    assert nm.provisioning_mode == "AutoSelect"
    qos = pool.spec.qos_config
    assert qos is not None and qos.eviction_protection_price_ratio == 1.2
    price = qos.pricing_for(QoS.MEDIUM)
    assert price is not None
    assert (price.requests.per_fp16_tflops_per_hour, price.requests.per_gb_of_vram_per_hour) == (0.0069228, 0.01548)
    assert price.limits_over_requests == 1.0
    assert pool.uses_local_gpu_by_default and not pool.is_default


def test_pool_without_oversubscription_block_has_none() -> None:
    b = parse_documents("apiVersion: tensor-fusion.ai/v1\nkind: GPUPool\nmetadata: {name: p}\n")
    assert b.pools["p"].spec.capacity_config is None


def test_pool_pricing_dollar_strings_and_rules() -> None:
    text = dump(
        {
            "apiVersion": TF,
            "kind": "GPUPool",
            "metadata": {"name": "p"},
            "spec": {
                "qosConfig": {
                    "defaultQoS": "high",
                    "pricing": [
                        {"qos": "low", "requests": {"perFP16TFlopsPerHour": "$0.01"}, "limitsOverRequests": "0.1"}
                    ],
                    "evictionProtectionPriceRatio": "1.5",
                },
                "nodeManagerConfig": {
                    "isolationModeRules": [
                        {"selector": {"matchLabels": {"gpu": "h100"}}, "isolationMode": "hard"},
                        {"selector": {}, "isolationMode": "shared"},
                    ]
                },
            },
        }
    )
    pool = parse_documents(text).pools["p"]
    assert pool.spec.qos_config is not None
    low = pool.spec.qos_config.pricing_for(QoS.LOW)
    assert low is not None and low.requests.per_fp16_tflops_per_hour == 0.01 and low.limits_over_requests == 0.1
    nm = pool.spec.node_manager_config
    assert nm.isolation_for({"gpu": "h100"}) == IsolationMode.HARD
    assert nm.isolation_for({"gpu": "l4"}) == IsolationMode.SHARED


def test_gpu_status_fields() -> None:
    text = dump(
        {
            "apiVersion": TF,
            "kind": "GPU",
            "metadata": {"name": "GPU-1"},
            "status": {
                "phase": "Running",
                "capacity": {"tflops": "312", "vram": "80Gi"},
                "available": {"tflops": "100", "vram": "10Gi"},
                "index": 2,
                "numaNode": 1,
                "isolationMode": "soft",
                "usedBy": "tensor-fusion",
                "gpuModel": "A100",
                "vendor": "NVIDIA",
                "nodeSelector": {"kubernetes.io/hostname": "node-1"},
            },
        }
    )
    gpu = parse_documents(text).gpus["GPU-1"]
    assert gpu.status.phase == GPUPhase.RUNNING and gpu.node_name == "node-1"
    assert gpu.status.capacity.to_resource() == Resource(tflops=312.0, vram=80 * GIB)
    assert gpu.available == Resource(tflops=100.0, vram=10 * GIB)
    assert (gpu.status.index, gpu.status.numa_node, gpu.status.isolation_mode) == (2, 1, IsolationMode.SOFT)


def test_gpu_defaults_pending_and_available_is_capacity() -> None:
    text = (
        "apiVersion: tensor-fusion.ai/v1\nkind: GPU\nmetadata: {name: g}\nstatus: {capacity: {tflops: 10, vram: 1Gi}}\n"
    )
    gpu = parse_documents(text).gpus["g"]
    assert gpu.status.phase == GPUPhase.PENDING and gpu.available == Resource(tflops=10.0, vram=GIB)


def test_gpunode_and_workload_status() -> None:
    text = dump(
        {
            "apiVersion": TF,
            "kind": "GPUNode",
            "metadata": {"name": "n"},
            "spec": {"costPerHour": "$2.5"},
            "status": {"totalTFlops": "624", "totalVRAM": "160Gi", "totalGPUs": 2, "nodeInfo": {"ramSize": "512Gi"}},
        },
        {
            "apiVersion": TF,
            "kind": "TensorFusionWorkload",
            "metadata": {"name": "w", "namespace": "ml"},
            "spec": {"replicas": 2, "gangScheduling": {"minMembers": 2, "timeout": "1m"}},
            "status": {"workerCount": 2, "readyWorkers": 1, "phase": "Running"},
        },
    )
    b = parse_documents(text)
    node = b.nodes["n"]
    assert node.spec.cost_per_hour == 2.5 and node.status.total_vram == 160 * GIB and node.status.total_gpus == 2
    assert node.status.node_info.ram_size == 512 * GIB
    w = b.workloads[("ml", "w")]
    assert w.status.worker_count == 2 and w.status.ready_workers == 1 and w.status.phase == "Running"
    assert w.spec.gang_scheduling is not None and w.spec.gang_scheduling.timeout == 60.0


def test_scheduling_config_template_defaults_and_erl() -> None:
    text = dump(
        {
            "apiVersion": TF,
            "kind": "SchedulingConfigTemplate",
            "metadata": {"name": "t"},
            "spec": {"hypervisor": {"elasticRateLimitParameters": {"maxRefillRate": "100", "kp": 0.5}}},
        }
    )
    t = parse_documents(text).templates["t"]
    assert t.spec.placement.mode == PlacementMode.NODE_COMPACT_GPU_LOW_LOAD and t.spec.placement.allow_using_local_gpu
    assert t.spec.hypervisor is not None and t.spec.hypervisor.elastic_rate_limit_parameters is not None
    erl = t.spec.hypervisor.elastic_rate_limit_parameters
    assert (erl.max_refill_rate, erl.kp, erl.ki) == (100.0, 0.5, None)


def _quota(spec: dict[str, object]) -> str:
    return dump(
        {"apiVersion": TF, "kind": "GPUResourceQuota", "metadata": {"name": "q", "namespace": "ml"}, "spec": spec}
    )


def test_quota_to_quota_spec() -> None:
    q = parse_documents(
        _quota(
            {
                "total": {"requests": {"tflops": "100", "vram": "100Gi"}, "maxWorkers": 10},
                "single": {"maxRequests": {"tflops": "50"}, "maxGPUCount": 4, "defaultRequests": {"tflops": "1"}},
            }
        )
    ).quotas[("ml", "q")]
    spec = q.to_quota_spec()
    assert spec.namespace == "ml" and spec.total_requests == Resource(tflops=100.0, vram=100 * GIB)
    assert spec.total_limits is None and spec.max_workers == 10 and spec.alert_threshold_percent == 95.0
    assert spec.single_max_requests == Resource(tflops=50.0) and spec.single_max_gpu_count == 4
    assert spec.single_default_requests == Resource(tflops=1.0) and spec.single_default_limits == Resource()


def test_quota_defaults() -> None:
    spec = parse_documents(_quota({})).quotas[("ml", "q")].to_quota_spec()
    assert (spec.max_workers, spec.alert_threshold_percent, spec.total_requests) == (32768, 95.0, None)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"total": {"requests": {"tflops": "10"}, "limits": {"tflops": "5"}}}, "spec.total.limits.tflops"),
        ({"total": {"requests": {"vram": "2Gi"}, "limits": {"vram": "1Gi"}}}, "spec.total.limits.vram"),
        ({"total": {"alertThresholdPercent": 120}}, "spec.total.alertThresholdPercent"),
        ({"total": {"maxWorkers": -1}}, "spec.total.maxWorkers"),
        ({"single": {"maxRequests": {"tflops": "10"}, "maxLimits": {"tflops": "5"}}}, "spec.single.maxLimits.tflops"),
    ],
)
def test_invalid_quota_names_the_quota_and_field(spec: dict[str, object], field: str) -> None:
    q = parse_documents(_quota(spec)).quotas[("ml", "q")]
    with pytest.raises(TwinInputError) as info:
        q.to_quota_spec(file="q.yaml")
    assert info.value.obj == "GPUResourceQuota/ml/q" and info.value.field == field
    assert "invalid quota" in info.value.message


def test_single_zero_max_limit_is_not_a_bound() -> None:
    q = parse_documents(_quota({"single": {"maxRequests": {"tflops": "10"}, "maxLimits": {"vram": "1Gi"}}}))
    assert q.quotas[("ml", "q")].to_quota_spec().single_max_limits == Resource(vram=GIB)


def test_negative_quota_quantity_refused_at_load() -> None:
    with pytest.raises(TwinInputError) as info:
        parse_documents(_quota({"total": {"requests": {"tflops": "-1"}}}), "q.yaml")
    assert info.value.field == "spec.total.requests.tflops" and info.value.line == 9


def test_invalid_quota_reported_by_check() -> None:
    bundle = bundle_of(
        {
            "apiVersion": TF,
            "kind": "GPUResourceQuota",
            "metadata": {"name": "q"},
            "spec": {"total": {"maxWorkers": -5}},
        },
        pod_doc({"tflops-request": "1"}),
    )
    specs, errors = bundle.check()
    assert len(specs) == 1 and [e.field for e in errors] == ["spec.total.maxWorkers"]


def test_several_quotas_first_by_name_used_and_warned() -> None:
    docs = [
        {"apiVersion": TF, "kind": "GPUResourceQuota", "metadata": {"name": n}, "spec": {"total": {"maxWorkers": w}}}
        for n, w in (("zz", 1), ("aa", 2))
    ]
    b = parse_documents(dump(*docs))
    specs, errors = b.quota_specs()
    assert specs["default"].max_workers == 2 and errors == []
    assert any("uses only aa" in w.message for w in b.warnings)


def test_label_selector() -> None:
    sel = LabelSelector.model_validate(
        {
            "matchLabels": {"a": "1"},
            "matchExpressions": [
                {"key": "b", "operator": "In", "values": ["x", "y"]},
                {"key": "c", "operator": "DoesNotExist"},
                {"key": "d", "operator": "NotIn", "values": ["bad"]},
                {"key": "e", "operator": "Exists"},
            ],
        }
    )
    assert sel.matches({"a": "1", "b": "y", "e": ""})
    assert not sel.matches({"a": "1", "b": "z", "e": ""})
    assert not sel.matches({"a": "1", "b": "x", "c": "", "e": ""})
    assert not sel.matches({"a": "1", "b": "x", "d": "bad", "e": ""})
    assert not sel.matches({"a": "1", "b": "x"})
    assert LabelSelector().matches({})


def test_selector_in_without_values_refused() -> None:
    with pytest.raises(ValueError):
        LabelSelector.model_validate({"matchExpressions": [{"key": "a", "operator": "In"}]})


# --- loader errors ------------------------------------------------------------------------------------


def test_unknown_kind_names_file_document_and_kind() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Sidecar\nmetadata: {name: b}\n"
    with pytest.raises(TwinInputError) as info:
        parse_documents(text, "m.yaml")
    err = info.value
    assert err.file == "m.yaml" and err.line == 5 and err.value == "Sidecar" and "document 2" in err.message
    assert "GPUPool" in err.message


def test_empty_documents_skipped() -> None:
    b = parse_documents("---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n\n")
    assert list(b.pods) == ["Pod/default/a"]


def test_document_without_kind_and_non_mapping() -> None:
    _, errors = parse_documents_lenient("metadata: {name: a}\n---\n- 1\n- 2\n", "x.yaml")
    assert [e.message for e in errors] == [
        "document 1 has no kind",
        "document 2 is not a mapping (a Kubernetes object)",
    ]


def test_wrong_api_version() -> None:
    with pytest.raises(TwinInputError) as info:
        parse_documents("apiVersion: v1\nkind: GPUPool\nmetadata: {name: p}\n", "x.yaml")
    assert info.value.field == "apiVersion" and info.value.obj == "GPUPool/p" and info.value.value == "v1"


def test_yaml_syntax_error_has_line() -> None:
    with pytest.raises(TwinInputError) as info:
        parse_documents("apiVersion: v1\nkind: Pod\nmetadata: [\n", "bad.yaml")
    assert info.value.file == "bad.yaml" and info.value.line is not None and "invalid YAML" in info.value.message


def test_unquoted_annotation_value_names_field_and_line() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    tensor-fusion.ai/gpu-count: 2\n"
    with pytest.raises(TwinInputError) as info:
        parse_documents(text, "p.yaml")
    err = info.value
    assert err.field == 'metadata.annotations["tensor-fusion.ai/gpu-count"]' and err.line == 6 and err.value == 2
    assert "quote" in err.message


def test_every_error_collected_across_documents() -> None:
    text = (
        "apiVersion: v1\nkind: Nope\n---\napiVersion: tensor-fusion.ai/v1\nkind: GPU\nmetadata: {name: g}\n"
        "status: {capacity: {vram: 4GB}, phase: Broken}\n"
    )
    with pytest.raises(TwinInputErrors) as info:
        parse_documents(text, "m.yaml")
    fields = sorted(str(e.field) for e in info.value.errors)
    assert fields == ["kind", "status.capacity.vram", "status.phase"]


def test_duplicate_object_refused() -> None:
    doc = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n"
    with pytest.raises(TwinInputError, match="duplicate object"):
        parse_documents(doc + "---\n" + doc, "d.yaml")


def test_load_documents_from_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n")
    (tmp_path / "sub" / "b.yml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: b}\n")
    (tmp_path / "notes.txt").write_text("not yaml")
    b = load_documents([tmp_path])
    assert sorted(b.pods) == ["Pod/default/a", "Pod/default/b"]
    assert b.origins["Pod/default/b"].file.endswith("b.yml")


def test_missing_file_error(tmp_path: Path) -> None:
    _, errors = load_documents_lenient([tmp_path / "nope.yaml"])
    assert len(errors) == 1 and "cannot read" in errors[0].message


def test_supported_kinds_listed() -> None:
    assert {"Pod", "Deployment", "StatefulSet", "ReplicaSet", "Job", "GPUPool", "GPUResourceQuota"} <= set(
        supported_kinds()
    )


# --- semantics 1.9: every annotation and label is recognised --------------------------------------------

SEMANTICS_1_9 = [
    *("tflops-request", "tflops-limit", "vram-request", "vram-limit", "compute-percent-request"),
    *("compute-percent-limit", "gpu-count", "gpu-indices", "gpu-model", "vendor", "gpupool", "qos"),
    *("is-local-gpu", "sidecar-worker", "isolation", "partition-id", "dedicated-gpu", "workload-profile"),
    *("inject-container", "enabled-replicas", "autoscale", "autoscale-target", "gang-enabled"),
    *("gang-min-members", "gang-timeout", "eviction-protection", "gpu-ids", "effective-hard-sm-percent"),
    *("index", "container-gpus"),
]


def test_every_semantics_annotation_is_known() -> None:
    keys = {f"tensor-fusion.ai/{k}": "x" for k in SEMANTICS_1_9}
    assert set(keys) <= set(ANNOTATIONS)
    assert annotation_warnings(keys) == []


def test_unknown_annotation_warns_and_label_typo_warns() -> None:
    doc = pod_doc({"tflops-request": "1", "tflops-requets": "2"}, labels={"tensor-fusion.ai/enable": "true"})
    b = bundle_of(doc)
    messages = [w.render() for w in b.warnings]
    assert any("unknown TensorFusion annotation 'tensor-fusion.ai/tflops-requets'" in m for m in messages)
    assert any("unknown TensorFusion label 'tensor-fusion.ai/enable'" in m for m in messages)
    assert all("test.yaml" in m for m in messages)


def test_documented_but_unimplemented_annotation_warns() -> None:
    warnings = annotation_warnings({"tensor-fusion.ai/auto-replicas": "true", "tensor-fusion.ai/enabled": "true"})
    assert [k for k, _ in warnings] == ["tensor-fusion.ai/auto-replicas", "tensor-fusion.ai/enabled"]
    assert "label, not an annotation" in warnings[1][1]


def test_annotations_without_enabled_label_warn_and_make_no_spec() -> None:
    doc = pod_doc({"tflops-request": "1"})
    doc["metadata"]["labels"] = {}
    b = bundle_of(doc)
    assert b.worker_specs() == []
    assert any("no label tensor-fusion.ai/enabled" in w.message for w in b.warnings)


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "ReplicaSet", "Job"])
def test_every_controller_kind_yields_a_template_spec(kind: str) -> None:
    b = bundle_of(pod_doc({"tflops-request": "1"}, kind=kind, name="c", replicas=3))
    [(obj, spec)] = b.worker_specs()
    assert obj == f"{kind}/default/c" and spec.replicas == 3 and spec.workload == "c"


def test_effective_pod_cpu_memory_includes_init_containers() -> None:
    doc = pod_doc({"tflops-request": "1"}, containers=[{"name": "a", "resources": {"limits": {"cpu": "1"}}}])
    doc["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}]
    [(_, spec)] = bundle_of(doc).worker_specs()
    assert (spec.cpu_milli, spec.memory) == (2000, GIB)


def test_generate_name_objects_are_numbered_without_warning() -> None:
    text = "apiVersion: v1\nkind: Pod\nmetadata: {generateName: job-}\n---\napiVersion: v1\nkind: Pod\nmetadata: {}\n"
    b = parse_documents(text, "g.yaml")
    assert list(b.pods) == ["Pod/default/job-<generated-1>", "Pod/default/<unnamed-2>"]
    assert [w.obj for w in b.warnings] == ["Pod/default/<unnamed-2>"]


def test_pod_of_a_loaded_controller_counts_its_replicas() -> None:
    rs = pod_doc({"tflops-request": "1"}, kind="ReplicaSet", name="rs", replicas=4)
    pod = pod_doc({"tflops-request": "1", "gang-enabled": "true"}, name="rs-x", owner=True)
    specs = dict(bundle_of(rs, pod).worker_specs())
    assert specs["Pod/default/rs-x"].replicas == 4 and specs["Pod/default/rs-x"].gang.min_members == 4
    assert specs["Pod/default/rs-x"].workload == "rs"


def test_register_kind_loads_into_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import BaseModel

    from twin.spec import loader, register_kind

    class Thing(BaseModel):
        kind: str
        spec: dict[str, int] = {}

    monkeypatch.setattr(loader, "_EXTRA_KINDS", {})
    register_kind("Thing", "example.com/v1", Thing)
    b = parse_documents("apiVersion: example.com/v1\nkind: Thing\nmetadata: {name: t}\nspec: {a: 1}\n")
    thing = b.extra["Thing"]["Thing/default/t"]
    assert isinstance(thing, Thing) and thing.spec == {"a": 1}
    with pytest.raises(ValueError):
        register_kind("Pod", "v1", Thing)
