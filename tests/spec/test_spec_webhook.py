"""One test per rule of semantics 2.1 (steps 1-18 and the QoS defaults) and 2.2, hand-computed."""

from __future__ import annotations

from typing import Any

import pytest
from spec_builders import DEFAULT_POOL, bundle_of, pod_doc

from twin.errors import TwinInputError
from twin.resources import GIB, IsolationMode, QoS, Resource
from twin.spec import canary_admits

TF = "tensor-fusion.ai/v1"
BASIC = {"tflops-request": "10", "tflops-limit": "20", "vram-request": "4Gi", "vram-limit": "8Gi"}


def profile(name: str = "prof", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": TF,
        "kind": "WorkloadProfile",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def pool(name: str, default: bool = False, **spec: Any) -> dict[str, Any]:
    ann = {"tensor-fusion.ai/is-default-pool": "true"} if default else {}
    return {"apiVersion": TF, "kind": "GPUPool", "metadata": {"name": name, "annotations": ann}, "spec": spec}


def quota(namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": TF,
        "kind": "GPUResourceQuota",
        "metadata": {"name": "q", "namespace": namespace},
        "spec": spec,
    }


def error_of(annotations: dict[str, str], **kw: Any) -> TwinInputError:
    extra = kw.pop("extra", ())
    pool_doc = kw.pop("pool", DEFAULT_POOL)
    capacity = kw.pop("model_capacity", None)
    bundle = bundle_of(pod_doc(annotations, **kw), *extra, pool=pool_doc)
    with pytest.raises(TwinInputError) as info:
        bundle.worker_specs(capacity)
    return info.value


# --- Step 1: WorkloadProfile is the template, annotations win ---------------------------------------


def test_step1_profile_is_template_and_annotation_wins(spec_of: Any) -> None:
    prof = profile(resources={"requests": {"tflops": "5", "vram": "3Gi"}, "limits": {"tflops": "15", "vram": "3Gi"}})
    s = spec_of({"workload-profile": "prof", "tflops-request": "7"}, extra=[prof])
    assert s.request == Resource(tflops=7.0, vram=3 * GIB)
    assert s.limit == Resource(tflops=15.0, vram=3 * GIB)


def test_step1_missing_profile_is_an_error() -> None:
    err = error_of({**BASIC, "workload-profile": "nope"})
    assert "WorkloadProfile default/nope not found" in str(err)
    assert err.field == 'metadata.annotations["tensor-fusion.ai/workload-profile"]'


def test_step1_profile_must_be_in_the_pods_namespace() -> None:
    err = error_of({**BASIC, "workload-profile": "prof"}, extra=[profile(namespace="other")])
    assert "not found" in err.message


# --- Step 2: pool resolution ------------------------------------------------------------------------


def test_step2_annotation_names_the_pool(spec_of: Any) -> None:
    assert spec_of({**BASIC, "gpupool": "pool-b"}, extra=[pool("pool-b")]).pool == "pool-b"


def test_step2_default_pool_is_the_annotated_one(spec_of: Any) -> None:
    assert spec_of(BASIC).pool == "pool-a"


def test_step2_profile_pool_name_used_without_annotation(spec_of: Any) -> None:
    s = spec_of({**BASIC, "workload-profile": "prof"}, extra=[pool("pool-b"), profile(poolName="pool-b")])
    assert s.pool == "pool-b"


def test_step2_no_default_pool_is_gpu_pool_not_found() -> None:
    err = error_of(BASIC, pool=pool("plain"))
    assert err.message.startswith("gpu pool not found")


def test_step2_unknown_named_pool_is_gpu_pool_not_found() -> None:
    err = error_of({**BASIC, "gpupool": "ghost"})
    assert err.message.startswith("gpu pool not found") and err.value == "ghost"


def test_step2_several_default_pools_first_by_name_wins(spec_of: Any) -> None:
    s = spec_of(BASIC, pool=pool("zeta", default=True), extra=[pool("alpha", default=True)])
    assert s.pool == "alpha"
    assert any("several default pools" in w for w in s.warnings)


# --- Step 3: local GPU and sidecar ------------------------------------------------------------------


def test_step3_local_default_true_when_pool_unset(spec_of: Any) -> None:
    assert spec_of(BASIC).is_local_gpu is True


def test_step3_pool_default_false_applies(spec_of: Any) -> None:
    s = spec_of(BASIC, pool=pool("p", default=True, defaultUsingLocalGPU=False))
    assert s.is_local_gpu is False


def test_step3_annotation_overrides_pool(spec_of: Any) -> None:
    s = spec_of({**BASIC, "is-local-gpu": "true"}, pool=pool("p", default=True, defaultUsingLocalGPU=False))
    assert s.is_local_gpu is True
    assert spec_of({**BASIC, "is-local-gpu": "false"}).is_local_gpu is False


def test_step3_sidecar_forces_local(spec_of: Any) -> None:
    s = spec_of({**BASIC, "is-local-gpu": "false", "sidecar-worker": "true"})
    assert (s.is_local_gpu, s.sidecar_worker) == (True, True)


def test_step3_boolean_must_be_lower_case_true_or_false() -> None:
    err = error_of({**BASIC, "is-local-gpu": "True"})
    assert err.real_system_ignores and err.value == "True"


# --- Step 4: isolation ------------------------------------------------------------------------------


def test_step4_isolation_defaults_to_soft(spec_of: Any) -> None:
    assert spec_of(BASIC).isolation == IsolationMode.SOFT


def test_step4_hard_local_runs_with_sidecar(spec_of: Any) -> None:
    s = spec_of({**BASIC, "isolation": "hard"})
    assert s.isolation == IsolationMode.HARD and s.sidecar_worker is True


def test_step4_bad_isolation_names_choices() -> None:
    err = error_of({**BASIC, "isolation": "strict"})
    assert "shared, soft, hard, partitioned" in err.message


# --- Step 5: quota single defaults fill zero tflops/vram --------------------------------------------


def test_step5_quota_defaults_fill_zero_fields(spec_of: Any) -> None:
    q = quota(
        single={"defaultRequests": {"tflops": "2", "vram": "1Gi"}, "defaultLimits": {"tflops": "4", "vram": "2Gi"}}
    )
    s = spec_of({"vram-request": "3Gi"}, extra=[q])
    # request.tflops 0 -> 2 (default); vram annotation wins; limits from defaults
    assert s.request == Resource(tflops=2.0, vram=3 * GIB)
    assert s.limit == Resource(tflops=4.0, vram=2 * GIB)


def test_step5_quota_of_other_namespace_does_not_apply() -> None:
    q = quota(namespace="other", single={"defaultRequests": {"tflops": "2"}})
    err = error_of({}, extra=[q])
    assert err.message.startswith("tflops request is not set")


# --- Step 6: gpu count, native nvidia.com/gpu limits ------------------------------------------------


def test_step6_gpu_count_annotation(spec_of: Any) -> None:
    assert spec_of({**BASIC, "gpu-count": "4"}).gpu_count == 4


@pytest.mark.parametrize("bad", ["0", "129", "two", "1.5", " 2", "1_0"])
def test_step6_gpu_count_out_of_range(bad: str) -> None:
    err = error_of({**BASIC, "gpu-count": bad})
    assert err.message.startswith("invalid gpuCount value") and err.value == bad


def test_step6_native_gpu_limits_are_summed(spec_of: Any) -> None:
    containers = [
        {"name": "a", "resources": {"limits": {"nvidia.com/gpu": 2}}},
        {"name": "b", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
        {"name": "c"},
    ]
    s = spec_of({}, containers=containers)
    assert s.gpu_count == 3
    # non-shared: computePercent limit 100; the percent request inherits it (step 9)
    assert s.limit == Resource(compute_percent=100.0)
    assert s.request == Resource(compute_percent=100.0)
    assert s.inject_container == ("a", "b")
    assert s.container_gpu_count == (("a", 2), ("b", 1))


def test_step6_native_limits_shared_leave_compute_zero(spec_of: Any) -> None:
    s = spec_of({"isolation": "shared"}, containers=[{"name": "a", "resources": {"limits": {"nvidia.com/gpu": 1}}}])
    assert s.gpu_count == 1 and s.limit == Resource() and s.isolation == IsolationMode.SHARED


def test_step6_native_limits_ignored_when_annotation_present(spec_of: Any) -> None:
    s = spec_of({**BASIC, "gpu-count": "2"}, containers=[{"name": "a", "resources": {"limits": {"nvidia.com/gpu": 4}}}])
    assert s.gpu_count == 2 and s.limit.compute_percent == 0


def test_step6_fractional_native_gpu_is_an_error() -> None:
    err = error_of({}, containers=[{"name": "a", "resources": {"limits": {"nvidia.com/gpu": "1.5"}}}])
    assert err.field == 'spec.containers[0].resources.limits["nvidia.com/gpu"]'


def test_step6_stored_profile_gets_crd_default_count_one(spec_of: Any) -> None:
    # The API server defaults gpuCount=1 on stored profiles, so native limits are not migrated.
    prof = profile(resources={"requests": {"tflops": "1"}})
    s = spec_of(
        {"workload-profile": "prof"}, extra=[prof], containers=[{"resources": {"limits": {"nvidia.com/gpu": 3}}}]
    )
    assert s.gpu_count == 1


# --- Step 7: limits; a TFLOPs limit clears the migrated percent limit -------------------------------


def test_step7_tflops_limit_clears_migrated_percent(spec_of: Any) -> None:
    s = spec_of({"tflops-limit": "50"}, containers=[{"name": "a", "resources": {"limits": {"nvidia.com/gpu": 1}}}])
    assert s.limit == Resource(tflops=50.0)
    assert s.request == Resource(tflops=50.0)  # step 8: request = limit


# --- Step 8: only limits -> request = limit ---------------------------------------------------------


def test_step8_only_limits_sets_request_to_limit(spec_of: Any) -> None:
    s = spec_of({"tflops-limit": "20", "vram-limit": "8Gi"})
    assert s.request == Resource(tflops=20.0, vram=8 * GIB) == s.limit


def test_step8_only_requests_leaves_limits_zero(spec_of: Any) -> None:
    s = spec_of({"tflops-request": "10", "vram-request": "4Gi"})
    assert s.limit == Resource()


def test_step8_unparseable_quantity_is_refused_and_says_tf_ignores_it() -> None:
    err = error_of({"tflops-request": "ten"})
    assert err.real_system_ignores
    assert "silently ignore" in str(err)
    assert err.field == 'metadata.annotations["tensor-fusion.ai/tflops-request"]'


# --- Step 9: compute percent --------------------------------------------------------------------------


def test_step9_percent_request_inherits_percent_limit(spec_of: Any) -> None:
    s = spec_of({"compute-percent-limit": "40", "vram-request": "1Gi"})
    assert s.request.compute_percent == 40.0 and s.limit.compute_percent == 40.0


def test_step9_percent_request_explicit(spec_of: Any) -> None:
    s = spec_of({"compute-percent-request": "25", "compute-percent-limit": "50"})
    assert (s.compute_percent_request, s.compute_percent_limit) == (25.0, 50.0)


def test_step9_tflops_wins_over_percent(spec_of: Any) -> None:
    s = spec_of({"tflops-request": "10", "compute-percent-request": "50"})
    assert s.request == Resource(tflops=10.0)
    assert any("TFLOPs wins" in w for w in s.warnings)


def test_step9_percent_over_100_is_refused() -> None:
    err = error_of({"compute-percent-request": "150"})
    assert "between 0 and 100" in err.message


# --- Step 10: mutual exclusion ------------------------------------------------------------------------


def test_step10_tflops_and_percent_request_exclusive() -> None:
    prof = profile(resources={"requests": {"tflops": "5"}})
    err = error_of({"workload-profile": "prof", "compute-percent-request": "30"}, extra=[prof])
    assert err.message == "tflops- and computePercent request are mutually exclusive"


def test_step10_tflops_and_percent_limit_exclusive() -> None:
    # The request would inherit the percent limit (step 9) and clash first, so pin it to 0.
    prof = profile(resources={"limits": {"tflops": "5"}, "requests": {"vram": "1Gi"}})
    ann = {"workload-profile": "prof", "compute-percent-limit": "30", "compute-percent-request": "0"}
    err = error_of(ann, extra=[prof])
    assert err.message == "tflops- and computePercent limit are mutually exclusive"


# --- Step 11: qos, vendor, gpu-indices ----------------------------------------------------------------


def test_step11_indices_set_gpu_count(spec_of: Any) -> None:
    s = spec_of({**BASIC, "gpu-indices": "0,2,3", "gpu-count": "1"})
    assert s.gpu_indices == (0, 2, 3) and s.gpu_count == 3


@pytest.mark.parametrize("bad", ["0,x", "-1", "1,,2"])
def test_step11_bad_index_token(bad: str) -> None:
    err = error_of({**BASIC, "gpu-indices": bad})
    assert "gpu-indices annotation is not valid" in err.message


def test_step11_vendor_and_qos(spec_of: Any) -> None:
    s = spec_of({**BASIC, "vendor": "Ascend", "qos": "critical"})
    assert s.vendor == "Ascend" and s.qos == QoS.CRITICAL and s.qos_source == "annotation"


def test_step11_bad_qos() -> None:
    assert "low, medium, high, critical" in error_of({**BASIC, "qos": "gold"}).message


# --- Step 12: default count 1, re-validated -----------------------------------------------------------


def test_step12_default_count_one(spec_of: Any) -> None:
    assert spec_of(BASIC).gpu_count == 1


def test_step12_profile_count_above_128_refused_at_load() -> None:
    with pytest.raises(TwinInputError) as info:
        bundle_of(profile(gpuCount=200))
    assert info.value.field == "spec.gpuCount"


# --- Step 13: autoscale ---------------------------------------------------------------------------------


def test_step13_autoscale_annotation_default_target_all(spec_of: Any) -> None:
    s = spec_of({**BASIC, "autoscale": "true"})
    assert (s.autoscale.enabled, s.autoscale.target) == (True, "all")


def test_step13_autoscale_target(spec_of: Any) -> None:
    s = spec_of({**BASIC, "autoscale": "true", "autoscale-target": "vram"})
    assert s.autoscale.target == "vram"


def test_step13_vertical_scaling_rule_first_match_merged(spec_of: Any) -> None:
    template = {
        "apiVersion": TF,
        "kind": "SchedulingConfigTemplate",
        "metadata": {"name": "tpl"},
        "spec": {
            "verticalScalingRules": [
                {
                    "name": "no",
                    "selector": {"matchLabels": {"team": "x"}},
                    "autoScaling": {"autoSetResources": {"enable": True, "targetResource": "vram"}},
                },
                {
                    "name": "yes",
                    "selector": {"matchLabels": {"team": "ml"}},
                    "autoScaling": {
                        "autoSetResources": {"enable": True, "targetResource": "compute", "marginFraction": "0.3"}
                    },
                },
                {"name": "later", "selector": {}, "autoScaling": {"autoSetResources": {"enable": False}}},
            ]
        },
    }
    p = pool("p", default=True, schedulingConfigTemplate="tpl")
    s = spec_of(BASIC, pool=p, extra=[template], labels={"team": "ml"})
    assert (s.autoscale.enabled, s.autoscale.target) == (True, "compute")
    assert s.autoscaling_config is not None and s.autoscaling_config.auto_set_resources is not None
    assert s.autoscaling_config.auto_set_resources.margin_fraction == 0.3
    # The workload's own setting wins over the rule's.
    s2 = spec_of(
        {**BASIC, "autoscale": "true", "autoscale-target": "vram"}, pool=p, extra=[template], labels={"team": "ml"}
    )
    assert s2.autoscale.target == "vram"
    assert s2.autoscaling_config is not None and s2.autoscaling_config.auto_set_resources is not None
    assert s2.autoscaling_config.auto_set_resources.margin_fraction == 0.3


def test_step13_profile_enable_without_target_is_off(spec_of: Any) -> None:
    prof = profile(resources=BASIC_PROFILE_RES, autoScalingConfig={"autoSetResources": {"enable": True}})
    assert spec_of({"workload-profile": "prof"}, extra=[prof]).autoscale.enabled is False


BASIC_PROFILE_RES = {"requests": {"tflops": "1", "vram": "1Gi"}, "limits": {"tflops": "2", "vram": "1Gi"}}


# --- Step 14: multi-container needs inject-container ----------------------------------------------------


def test_step14_multi_container_without_inject_container() -> None:
    err = error_of(BASIC, containers=[{"name": "a"}, {"name": "b"}])
    assert "inject-container" in err.message and "2 containers" in err.message


def test_step14_multi_container_with_inject_container(spec_of: Any) -> None:
    s = spec_of({**BASIC, "inject-container": "a, b"}, containers=[{"name": "a"}, {"name": "b"}])
    assert s.inject_container == ("a", "b")


# --- Step 15: soft isolation needs a soft limiter -------------------------------------------------------


@pytest.mark.parametrize("vendor", ["AMD", "Hygon", "MetaX"])
def test_step15_soft_on_vendor_without_limiter(vendor: str) -> None:
    err = error_of({**BASIC, "vendor": vendor})
    assert "soft isolation is not supported" in err.message


def test_step15_hard_on_amd_is_fine(spec_of: Any) -> None:
    assert spec_of({**BASIC, "vendor": "AMD", "isolation": "hard"}).vendor == "AMD"


def test_step15_pool_default_vendor_applies() -> None:
    p = pool("p", default=True, nodeManagerConfig={"defaultVendor": "AMD"})
    assert "soft isolation is not supported" in error_of(BASIC, pool=p).message


# --- Step 16: dedicated-gpu ----------------------------------------------------------------------------


def test_step16_dedicated_needs_model() -> None:
    err = error_of({"dedicated-gpu": "true"})
    assert "requires" in err.message and "gpu-model" in err.message


def test_step16_dedicated_takes_full_capacity_from_argument(spec_of: Any) -> None:
    s = spec_of(
        {"dedicated-gpu": "true", "gpu-model": "A100", "tflops-request": "1"},
        model_capacity={"A100": Resource(tflops=312.0, vram=80 * GIB)},
    )
    assert s.request == s.limit == Resource(tflops=312.0, vram=80 * GIB)
    assert s.dedicated_gpu and s.qos == QoS.HIGH  # req == lim, both non-zero


def test_step16_gpu_cr_capacity_first_then_argument(spec_of: Any) -> None:
    gpus = [
        {
            "apiVersion": TF,
            "kind": "GPU",
            "metadata": {"name": name},
            "status": {"gpuModel": "L4", "capacity": {"tflops": t, "vram": "24Gi"}, "phase": "Running"},
        }
        for name, t in (("gpu-b", "100"), ("gpu-a", "121"))
    ]
    s = spec_of(
        {"dedicated-gpu": "true", "gpu-model": "L4"}, extra=gpus, model_capacity={"L4": Resource(tflops=1.0, vram=1)}
    )
    assert s.request == Resource(tflops=121.0, vram=24 * GIB)  # first GPU CR by name: gpu-a


def test_step16_unknown_model_capacity() -> None:
    err = error_of({"dedicated-gpu": "true", "gpu-model": "X9"})
    assert err.message.startswith("could not find capacity information")


# --- Step 17: gang --------------------------------------------------------------------------------------


def test_step17_gang_min_members_one_rejected() -> None:
    err = error_of({**BASIC, "gang-enabled": "true", "gang-min-members": "1"}, kind="Deployment", replicas=3)
    assert "0 (all replicas) or at least 2" in err.message


def test_step17_gang_needs_two_desired() -> None:
    err = error_of({**BASIC, "gang-enabled": "true"}, kind="Deployment", replicas=1)
    assert "at least 2 desired replicas" in err.message


def test_step17_gang_min_above_desired() -> None:
    err = error_of({**BASIC, "gang-enabled": "true", "gang-min-members": "4"}, kind="Deployment", replicas=3)
    assert "exceeds the desired replicas 3" in err.message


def test_step17_gang_ok_zero_means_all(spec_of: Any) -> None:
    s = spec_of({**BASIC, "gang-enabled": "true", "gang-timeout": "5m"}, kind="Deployment", replicas=4)
    assert (s.gang.enabled, s.gang.min_members, s.gang.timeout_s) == (True, 4, 300.0)
    assert s.to_alloc_request("u", "n").gang == "default/p"


def test_step17_enabled_replicas_is_desired_gang_size() -> None:
    err = error_of({**BASIC, "gang-enabled": "true", "enabled-replicas": "1"}, kind="Deployment", replicas=4)
    assert "got 1" in err.message


# --- Step 18: zero request ------------------------------------------------------------------------------


def test_step18_all_zero_request_rejected() -> None:
    err = error_of({})
    assert err.message.startswith("tflops request is not set, please set tensor-fusion.ai/tflops-request or/and")


def test_step18_shared_may_have_zero_request(spec_of: Any) -> None:
    assert spec_of({"isolation": "shared"}).request.is_zero()


def test_step18_partitioned_with_template_may_have_zero_request(spec_of: Any) -> None:
    s = spec_of({"isolation": "partitioned", "partition-id": "1g.24gb"})
    assert s.partition_template == "1g.24gb" and s.request.is_zero()


def test_step18_partitioned_without_template_needs_request() -> None:
    assert error_of({"isolation": "partitioned"}).message.startswith("tflops request is not set")


# --- QoS defaults ---------------------------------------------------------------------------------------


def test_qos_high_when_guaranteed(spec_of: Any) -> None:
    s = spec_of({"tflops-limit": "10", "vram-limit": "4Gi"})
    assert (s.qos, s.qos_source) == (QoS.HIGH, "guaranteed")
    assert s.priority_class == "tensor-fusion-high"


def test_qos_not_high_when_vram_zero(spec_of: Any) -> None:
    assert spec_of({"tflops-limit": "10"}).qos == QoS.MEDIUM


def test_qos_pool_default(spec_of: Any) -> None:
    s = spec_of(BASIC, pool=pool("p", default=True, qosConfig={"defaultQoS": "low"}))
    assert (s.qos, s.qos_source) == (QoS.LOW, "pool-default")


def test_qos_medium_fallback(spec_of: Any) -> None:
    s = spec_of(BASIC)
    assert (s.qos, s.qos_source, s.priority_class) == (QoS.MEDIUM, "default", None)


def test_qos_profile_value_counts_as_explicit(spec_of: Any) -> None:
    prof = profile(qos="critical", resources=BASIC_PROFILE_RES)
    s = spec_of({"workload-profile": "prof"}, extra=[prof])
    assert (s.qos, s.qos_source, s.priority_class) == (QoS.CRITICAL, "profile", "tensor-fusion-critical")


def test_user_priority_class_is_kept(spec_of: Any) -> None:
    s = spec_of({**BASIC, "qos": "high"}, priority_class="mine")
    assert s.priority_class == "mine"


# --- 2.2 enabled-replicas --------------------------------------------------------------------------------


def test_enabled_replicas_on_deployment(spec_of: Any) -> None:
    s = spec_of({**BASIC, "enabled-replicas": "2"}, kind="Deployment", replicas=8)
    assert (s.enabled_replicas, s.replicas) == (2, 8)


def test_enabled_replicas_bare_pod_without_owner_is_ignored(spec_of: Any) -> None:
    s = spec_of({**BASIC, "enabled-replicas": "2"})
    assert s.enabled_replicas is None and any("controller owner" in w for w in s.warnings)
    assert spec_of({**BASIC, "enabled-replicas": "2"}, owner=True).enabled_replicas == 2


def test_enabled_replicas_negative_refused() -> None:
    assert "non-negative" in error_of({**BASIC, "enabled-replicas": "-1"}, kind="Deployment").message


@pytest.mark.parametrize(
    ("live", "n", "admitted"), [(0, 1, True), (1, 1, False), (1, 2, True), (5, 2, False), (0, 0, False)]
)
def test_canary_admits_first_n(live: int, n: int, admitted: bool) -> None:
    assert canary_admits(live, n) is admitted


def test_canary_rejects_negative() -> None:
    with pytest.raises(ValueError):
        canary_admits(-1, 2)


# --- Other annotations of 1.9 ----------------------------------------------------------------------------


def test_eviction_protection_duration(spec_of: Any) -> None:
    assert spec_of({**BASIC, "eviction-protection": "1h30m"}).eviction_protection_s == 5400.0


def test_eviction_protection_bad_duration() -> None:
    assert "Go duration" in error_of({**BASIC, "eviction-protection": "1 hour"}).message


def test_workload_annotation_names_workload(spec_of: Any) -> None:
    assert spec_of({**BASIC, "workload": "shared-w"}).workload == "shared-w"
    assert spec_of(BASIC, kind="Deployment", name="web").workload == "web"


def test_container_gpu_count_json(spec_of: Any) -> None:
    s = spec_of({**BASIC, "container-gpu-count": '{"b": 2, "a": 1}'})
    assert s.container_gpu_count == (("a", 1), ("b", 2))


def test_container_gpu_count_bad_json() -> None:
    assert "JSON object" in error_of({**BASIC, "container-gpu-count": "{a:1}"}).message


def test_every_bad_annotation_reported_at_once() -> None:
    bundle = bundle_of(pod_doc({"tflops-request": "x", "vram-limit": "y", "qos": "z"}))
    specs, errors = bundle.check()
    assert specs == []
    assert sorted(str(e.value) for e in errors) == ["x", "y", "z"]


def test_to_alloc_request_carries_every_scheduler_field(spec_of: Any) -> None:
    containers = [{"name": "main", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]
    s = spec_of({**BASIC, "gpu-model": "A100", "gpu-indices": "1,3", "qos": "high"}, containers=containers)
    req = s.to_alloc_request("uid-1", "p-0")
    assert (req.uid, req.name, req.namespace, req.pool, req.qos) == ("uid-1", "p-0", "default", "pool-a", QoS.HIGH)
    assert (req.gpu_count, req.gpu_indices, req.gpu_model) == (2, (1, 3), "A100")
    assert req.request == Resource(tflops=10.0, vram=4 * GIB) and req.limit == Resource(tflops=20.0, vram=8 * GIB)
    assert (req.cpu_milli, req.memory) == (500, GIB)
    assert req.gang is None and req.priority == 10000


def test_to_dict_is_json_safe_and_ordered(spec_of: Any) -> None:
    import json

    d = spec_of(BASIC).to_dict()
    assert list(d)[:4] == ["pool", "namespace", "name", "workload"]
    assert json.loads(json.dumps(d)) == d


# --- Quirks and twin choices listed in docs/fidelity.md#spec ---------------------------------------------


def test_quirk_quota_default_tflops_clashes_with_native_migration() -> None:
    # Step 5 (quota defaults) runs before step 6 (nvidia.com/gpu -> 100%): the request then has
    # both TFLOPs and percent, and step 10 rejects it.
    q = quota(single={"defaultRequests": {"tflops": "5"}})
    err = error_of({}, extra=[q], containers=[{"name": "a", "resources": {"limits": {"nvidia.com/gpu": 1}}}])
    assert err.message == "tflops- and computePercent request are mutually exclusive"


def test_qos_guaranteed_ignores_compute_percent(spec_of: Any) -> None:
    s = spec_of({"compute-percent-limit": "50", "vram-limit": "1Gi"})
    assert s.request == s.limit == Resource(vram=GIB, compute_percent=50.0)
    assert s.qos == QoS.MEDIUM


def test_profile_gpu_indices_keep_profile_count(spec_of: Any) -> None:
    prof = profile(resources=BASIC_PROFILE_RES, gpuIndices=[0, 1, 2, 3], gpuCount=1)
    s = spec_of({"workload-profile": "prof"}, extra=[prof])
    assert s.gpu_indices == (0, 1, 2, 3) and s.gpu_count == 1


def test_profile_is_local_gpu_between_annotation_and_pool(spec_of: Any) -> None:
    prof = profile(resources=BASIC_PROFILE_RES, isLocalGPU=False)
    assert spec_of({"workload-profile": "prof"}, extra=[prof]).is_local_gpu is False
    assert spec_of({"workload-profile": "prof", "is-local-gpu": "true"}, extra=[prof]).is_local_gpu is True


def test_empty_annotation_value_counts_as_absent(spec_of: Any) -> None:
    s = spec_of({"tflops-limit": "8", "tflops-request": "", "qos": ""})
    assert s.request.tflops == 8.0 and s.qos_source == "default"


def test_step12_too_many_native_gpus_names_the_containers() -> None:
    containers = [{"name": n, "resources": {"limits": {"nvidia.com/gpu": 100}}} for n in ("a", "b")]
    err = error_of({}, containers=containers)
    assert err.message.startswith("invalid gpuCount value") and err.value == 200
    assert err.field == "spec.containers[*].resources.limits"


def test_step12_too_many_indices() -> None:
    err = error_of({**BASIC, "gpu-indices": ",".join(str(i) for i in range(129))})
    assert err.value == 129 and err.field == 'metadata.annotations["tensor-fusion.ai/gpu-indices"]'
