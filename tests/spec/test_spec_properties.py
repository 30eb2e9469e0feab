"""Properties of the webhook normalisation over random annotation sets (valid and invalid values)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_builders import bundle_of, pod_doc

from twin.resources import GIB, IsolationMode, QoS, Resource

_VALUES: dict[str, list[str]] = {
    "tflops-request": ["0", "1", "10", "500m", "20", "x", "-1"],
    "tflops-limit": ["0", "10", "20", "1e2", "bad"],
    "vram-request": ["0", "1Gi", "4Gi", "4G", "1KB"],
    "vram-limit": ["0", "4Gi", "8Gi", "?"],
    "compute-percent-request": ["0", "25", "50", "101"],
    "compute-percent-limit": ["0", "50", "100", "abc"],
    "gpu-count": ["1", "2", "8", "0", "129", "two"],
    "gpu-indices": ["0", "0,1", "1,3,5", "a", "-1"],
    "isolation": ["soft", "hard", "shared", "partitioned", "weird"],
    "partition-id": ["1g.24gb", "3g.40gb"],
    "qos": ["low", "medium", "high", "critical", "gold"],
    "vendor": ["NVIDIA", "AMD", "Ascend"],
    "is-local-gpu": ["true", "false", "True"],
    "sidecar-worker": ["true", "false"],
    "dedicated-gpu": ["true", "false"],
    "gpu-model": ["A100", "L4", "Z9"],
    "autoscale": ["true", "false"],
    "autoscale-target": ["compute", "vram", "all", "gpu"],
    "gang-enabled": ["true", "false"],
    "gang-min-members": ["0", "1", "2", "5"],
    "gang-timeout": ["30s", "5m", "soon"],
    "enabled-replicas": ["0", "1", "3", "-2"],
    "eviction-protection": ["1h", "30m", "1d"],
    "inject-container": ["main", "main,side"],
}

annotation_sets = st.dictionaries(st.sampled_from(sorted(_VALUES)), st.just(""), max_size=8).flatmap(
    lambda d: st.fixed_dictionaries({k: st.sampled_from(_VALUES[k]) for k in d})
)

containers = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["main", "side", "extra"]), "gpus": st.sampled_from([None, 0, 1, 2])}
    ),
    min_size=0,
    max_size=3,
    unique_by=lambda c: c["name"],
)

CAPACITY = {"A100": Resource(tflops=312.0, vram=80 * GIB), "L4": Resource(tflops=121.0, vram=24 * GIB)}


def _container(c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c["name"]}
    if c["gpus"] is not None:
        out["resources"] = {"limits": {"nvidia.com/gpu": c["gpus"]}}
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    annotations=annotation_sets,
    conts=containers,
    kind=st.sampled_from(["Pod", "Deployment"]),
    replicas=st.integers(min_value=1, max_value=4),
)
def test_normalise_raises_only_input_errors_and_keeps_invariants(
    annotations: dict[str, str], conts: list[dict[str, Any]], kind: str, replicas: int
) -> None:
    doc = pod_doc(annotations, containers=[_container(c) for c in conts], kind=kind, replicas=replicas, owner=True)
    bundle = bundle_of(doc)
    specs, errors = bundle.check(CAPACITY)  # anything but a TwinInputError would propagate and fail
    assert len(specs) + (1 if errors else 0) == 1
    for err in errors:
        assert err.obj is not None and err.file == "test.yaml"
    if not specs:
        return
    [(_, s)] = specs
    assert 1 <= s.gpu_count <= 128
    assert not (s.request.tflops > 0 and s.request.compute_percent > 0)
    assert not (s.limit.tflops > 0 and s.limit.compute_percent > 0)
    if s.request.is_zero():
        assert s.isolation == IsolationMode.SHARED or (
            s.isolation == IsolationMode.PARTITIONED and s.partition_template is not None
        )
    if s.qos_source == "guaranteed":
        assert s.qos == QoS.HIGH and s.request.tflops == s.limit.tflops > 0 and s.request.vram == s.limit.vram > 0
    if "qos" in annotations:
        assert s.qos.value == annotations["qos"]
    if s.dedicated_gpu:
        assert s.request == s.limit == CAPACITY[str(s.gpu_model)].scaled(1.0)
    elif "tflops-limit" in annotations and "tflops-request" not in annotations:
        assert s.request.tflops == s.limit.tflops
    if "gpu-indices" in annotations:
        assert s.gpu_count == len(s.gpu_indices)
    if s.gang.enabled:
        assert s.gang.min_members >= 2
    if s.sidecar_worker:
        assert s.is_local_gpu
    req = s.to_alloc_request("uid", "name")
    assert (req.request, req.limit, req.gpu_count, req.qos) == (s.request, s.limit, s.gpu_count, s.qos)
    assert json.loads(json.dumps(s.to_dict())) == s.to_dict()
