"""The cluster file format (twin/spec/cluster.py) and `twin place`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from twin.cli import main
from twin.errors import TwinInputError
from twin.resources import GIB, IsolationMode, PlacementMode
from twin.spec.cluster import build_cluster, load_cluster

ROOT = Path(__file__).resolve().parents[2]


def _cluster(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"nodes": [{"namePrefix": "a", "count": 2, "profile": "A100_SXM_80G", "gpusPerNode": 2}]}
    data.update(extra)
    return data


def test_profile_nodes_with_count() -> None:
    state, quota = build_cluster(_cluster())
    assert sorted(state.nodes) == ["a-0", "a-1"]
    gpu = state.gpus["a-0-gpu1"]
    assert gpu.capacity.tflops == 312.0 and gpu.capacity.vram == 80 * GIB
    assert gpu.model == "A100_SXM_80G" and len(gpu.templates) > 0 and gpu.placement_slots == 8
    assert gpu.isolation is IsolationMode.SOFT  # static policy: the pool's default mode
    assert state.nodes["a-0"].cost_per_hour == pytest.approx(2 * 1.89)
    assert state.pools["default"].placement_mode is PlacementMode.NODE_COMPACT_GPU_LOW_LOAD
    assert quota.namespaces() == []


def test_explicit_gpus_usage_partitions_topology_and_quota() -> None:
    data = {
        "pools": [
            {
                "name": "p",
                "placementMode": "CompactFirst",
                "vramWeight": 0.5,
                "tflopsWeight": 0.5,
                "dynamicIsolation": True,
            }
        ],
        "nodes": [
            {
                "name": "n",
                "cpu": "8",
                "memory": "64Gi",
                "numa": [0, 1],
                "nvlink": [[0, 1]],
                "gpus": [
                    {"index": 0, "profile": "H100_SXM", "partitions": [{"template": "mig-1g.10gb", "namespace": "t"}]},
                    {
                        "index": 1,
                        "profile": "H100_SXM",
                        "tflops": "500",
                        "vram": "40Gi",
                        "used": {"tflops": "100m", "vram": "1Gi"},
                    },
                ],
            }
        ],
        "quotas": [{"namespace": "t", "total": {"requests": {"tflops": "10"}, "maxWorkers": 3}}],
    }
    state, quota = build_cluster(data)
    assert state.nodes["n"].cpu_milli == 8000 and state.nodes["n"].nvlinks == [("n-gpu0", "n-gpu1")]
    assert state.gpus["n-gpu1"].available.tflops == 500 - 0.1
    assert state.gpus["n-gpu1"].numa == 1 and state.gpus["n-gpu1"].isolation is None  # Dynamic: no static mode
    assert list(state.gpus["n-gpu0"].partitions) == ["existing/n-gpu0/0"]
    assert quota.usage("t").workers == 1
    assert state.pools["p"].vram_weight == 0.5


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"nodes": [{"name": "x", "profile": "NOPE"}]}, "nodes[0].profile", "NOPE"),
        ({"nodes": [{"name": "x", "profile": "A100_SXM_80G", "gpusPerNode": -1}]}, "nodes[0].gpusPerNode", "-1"),
        ({"nodes": [{"name": "x", "profile": "A100_SXM_80G", "bogus": 1}]}, "nodes[0].bogus", "Extra inputs"),
        (
            {"pools": [{"name": "p"}], "nodes": [{"name": "x", "pool": "q", "profile": "A100_SXM_80G"}]},
            "nodes[0].pool",
            "unknown pool",
        ),
        (
            {
                "nodes": [
                    {"name": "x", "gpus": [{"index": 0, "profile": "A100_SXM_80G", "partitions": [{"template": "9g"}]}]}
                ]
            },
            "nodes[0].gpus[0].partitions[0].template",
            "unknown partition template",
        ),
        (
            {"nodes": [{"name": "x", "profile": "A100_SXM_80G", "gpusPerNode": 2, "nvlink": [[0, 5]]}]},
            "nodes[0].nvlink",
            "NVLink",
        ),
        ({"nodes": [{"name": "x", "profile": "A100_SXM_80G", "memory": "lots"}]}, "nodes[0].memory", "lots"),
        (
            {
                "nodes": [{"name": "x", "profile": "A100_SXM_80G"}],
                "quotas": [{"namespace": "a", "total": {"maxWorkers": -1}}],
            },
            "maxWorkers",
            "negative",
        ),
    ],
)
def test_bad_input_names_file_field_and_value(data: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(TwinInputError) as info:
        build_cluster(data, file="c.yaml")
    text = str(info.value)
    assert "c.yaml" in text and field in text and fragment in text


def test_load_cluster_reads_example_file() -> None:
    state, quota = load_cluster(ROOT / "examples" / "cluster.yaml")
    assert len(state.gpus) == 4 * 8 + 4 + 2
    assert quota.quota("research") is not None


def test_load_cluster_rejects_non_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(TwinInputError, match="mapping"):
        load_cluster(path)


def test_twin_place_example_json() -> None:
    result = CliRunner().invoke(
        main,
        ["place", "--cluster", str(ROOT / "examples/cluster.yaml"), str(ROOT / "examples/pods.yaml"), "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    pods = {p["pod"]: p for p in data["pods"]}
    assert [p["pod"] for p in data["pods"]][:3] == ["chat-0", "chat-1", "chat-2"]  # replicas expanded, file order
    assert pods["capped"]["node"] == "l40s-hard" and pods["capped"]["effective_hard_sm_percent"] == 26
    assert pods["mig-small"]["partition_template"] is not None and pods["mig-small"]["scheduled"]
    assert pods["trainer"]["topology_tier"] == 0 and len(pods["trainer"]["gpu_ids"]) == 4
    assert not pods["too-big"]["scheduled"]
    assert pods["too-big"]["reason"] == "SameNode: no node has at least 9 available GPUs"


def test_twin_place_json_shows_the_quota_verdict_per_pod(tmp_path: Path) -> None:
    """TensorFusion ``internal/quota/quota_store.go`` (``CheckQuotaAndFilter``): each pod's quota verdict,
    with the rule code and whether preemption could help (single.* checks are unresolvable)."""
    pods = tmp_path / "p.yaml"
    docs = []
    for name, count in (("fits", 1), ("too-many-gpus", 5)):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": "research",
                    "labels": {"tensor-fusion.ai/enabled": "true"},
                    "annotations": {
                        "tensor-fusion.ai/tflops-request": "10",
                        "tensor-fusion.ai/vram-request": "2Gi",
                        "tensor-fusion.ai/gpu-count": str(count),
                    },
                },
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            }
        )
    pods.write_text(yaml.safe_dump_all(docs))
    args = ["place", "--cluster", str(ROOT / "examples/cluster.yaml"), str(ROOT / "examples/pods.yaml"), str(pods)]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    by_pod = {p["pod"]: p for p in json.loads(result.output)["pods"]}
    assert by_pod["chat-0"]["quota"] is None  # namespace default has no quota
    assert by_pod["fits"]["quota"] == {"ok": True, "code": None, "unresolvable": False, "message": ""}
    refused = by_pod["too-many-gpus"]["quota"]
    assert (refused["ok"], refused["code"], refused["unresolvable"]) == (False, "single.max.gpuCount.limit", True)
    assert not by_pod["too-many-gpus"]["scheduled"]


def test_twin_place_table_and_bad_strategy() -> None:
    args = ["place", "--cluster", str(ROOT / "examples/cluster.yaml"), str(ROOT / "examples/pods.yaml")]
    result = CliRunner().invoke(main, [*args, "--strategy", "LowLoadFirst"])
    assert result.exit_code == 0 and "pods placed" in result.output
    bad = CliRunner().invoke(main, [*args, "--strategy", "nope"])
    assert bad.exit_code == 2 and "unknown placement strategy" in bad.output


def test_twin_place_params_reach_the_strategy() -> None:
    args = ["place", "--cluster", str(ROOT / "examples/cluster.yaml"), str(ROOT / "examples/pods.yaml"), "--json"]
    avg = json.loads(CliRunner().invoke(main, [*args, "--strategy", "CompactFirst"]).output)
    summed = json.loads(
        CliRunner().invoke(main, [*args, "--strategy", "CompactFirst", "--param", "aggregation=sum"]).output
    )
    # chat-1 lands on a100-0 either way, but the node scores differ: average vs sum over 8 GPUs
    avg_scores = avg["pods"][1]["node_scores"]
    sum_scores = summed["pods"][1]["node_scores"]
    assert avg_scores["a100-1"] == 0 and sum_scores["a100-1"] == 0
    assert sum_scores["a100-0"] > avg_scores["a100-0"] > 0
    bad = CliRunner().invoke(main, [*args, "--param", "nonsense"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output


def test_twin_place_many_replicas(tmp_path: Path) -> None:
    cluster = tmp_path / "c.yaml"
    cluster.write_text(yaml.safe_dump({"nodes": [{"namePrefix": "n", "count": 2, "profile": "A100_SXM_80G"}]}))
    pods = tmp_path / "p.yaml"
    pods.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 260,
                    "template": {
                        "metadata": {
                            "labels": {"tensor-fusion.ai/enabled": "true"},
                            "annotations": {
                                "tensor-fusion.ai/tflops-request": "10",
                                "tensor-fusion.ai/vram-request": "2Gi",
                            },
                        },
                        "spec": {"containers": [{"name": "c", "image": "i"}]},
                    },
                },
            }
        )
    )
    result = CliRunner().invoke(main, ["place", "--cluster", str(cluster), str(pods), "--json"])
    data = json.loads(result.output)
    # 16 GPUs x 31 pods of 10 TFLOPs (312 TFLOPs each) = 496 >= 260, VRAM 16 x 40 = 640 >= 260
    assert data["placed"] == 260 and data["pods"][-1]["pod"] == "web-259"
    assert {p["node"] for p in data["pods"]} == {"n-0", "n-1"}


def test_isolation_mode_rules_first_match_wins() -> None:
    data = {
        "pools": [
            {
                "name": "p",
                "isolationModeRules": [
                    {"selector": {"matchLabels": {"tier": "strict"}}, "isolationMode": "hard"},
                    {
                        "selector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
                        "isolationMode": "shared",
                    },
                ],
            }
        ],
        "nodes": [
            {"name": "a", "profile": "L4", "gpusPerNode": 1, "labels": {"tier": "strict"}},
            {"name": "b", "profile": "L4", "gpusPerNode": 1, "labels": {"tier": "loose"}},
            {"name": "c", "profile": "L4", "gpusPerNode": 1},
            {"name": "d", "profile": "L4", "gpusPerNode": 1, "labels": {"tier": "strict"}, "isolation": "soft"},
        ],
    }
    state, _ = build_cluster(data)
    modes = {n: state.gpus[f"{n}-gpu0"].isolation for n in "abcd"}
    assert modes == {
        "a": IsolationMode.HARD,
        "b": IsolationMode.SHARED,
        "c": IsolationMode.SOFT,
        "d": IsolationMode.SOFT,
    }


def test_twin_place_reports_bad_cluster_file(tmp_path: Path) -> None:
    cluster = tmp_path / "bad.yaml"
    cluster.write_text(yaml.safe_dump({"nodes": [{"name": "n", "profile": "A100_SXM_80G", "cpu": "lots"}]}))
    result = CliRunner().invoke(main, ["place", "--cluster", str(cluster), str(ROOT / "examples/pods.yaml")])
    assert result.exit_code == 2
    assert "bad.yaml" in result.output and "nodes[0].cpu" in result.output and "lots" in result.output


def test_the_cluster_file_is_a_cluster_description_built_by_the_one_builder() -> None:
    """The file becomes a ClusterDescription (every node lists its GPUs) and build_state builds it:
    the same description written by hand gives an equal state, partitions and NVLink included."""
    from twin.cluster_desc import ClusterDescription, GPUSpec, IsolationRule, NodeSpec, PartitionSpec, build_state
    from twin.hardware import default_catalog
    from twin.spec.selectors import LabelSelector
    from twin.state import ClusterState, PoolState

    data = {
        "pools": [
            {
                "name": "p",
                "defaultIsolation": "soft",
                "isolationModeRules": [{"selector": {"matchLabels": {"tier": "x"}}, "isolationMode": "hard"}],
            }
        ],
        "nodes": [
            {
                "name": "n",
                "labels": {"tier": "x"},
                "nvlink": [[0, 1]],
                "ready": False,
                "gpus": [
                    {"index": 0, "profile": "H100_SXM", "numa": 1, "partitions": [{"template": "1g.10gb"}]},
                    {"index": 1, "profile": "A30", "usedBy": "other", "isolation": "shared"},
                ],
            },
        ],
    }
    state, _ = build_cluster(data)
    catalog = default_catalog()
    h100, a30 = catalog.get("H100_SXM"), catalog.get("A30")
    gpus = (
        GPUSpec(0, h100, numa=1, max_partitions=h100.max_partitions, existing=(PartitionSpec("1g.10gb"),)),
        GPUSpec(1, a30, used_by="other", isolation=IsolationMode.SHARED, max_partitions=a30.max_partitions),
    )
    node = NodeSpec(
        "n",
        "p",
        "",
        2,
        labels={"tier": "x"},
        cost_per_hour=h100.cost_per_hour + a30.cost_per_hour,
        gpu_list=gpus,
        nvlinks=((0, 1),),
        ready=False,
    )
    rule = IsolationRule(LabelSelector.model_validate({"matchLabels": {"tier": "x"}}), IsolationMode.HARD)
    by_hand = build_state(ClusterDescription([PoolState("p")], [node], isolation_rules={"p": [rule]}), catalog)

    def rows(s: ClusterState) -> list[str]:  # every field of every pool, node, GPU and allocation
        return [repr(x) for part in (s.pools, s.nodes, s.gpus, s.allocations) for x in part.values()]

    assert rows(state) == rows(by_hand)
    assert state.gpus["n-gpu0"].isolation is IsolationMode.HARD  # the pool's first matching rule
    assert state.gpus["n-gpu1"].isolation is IsolationMode.SHARED  # the GPU's own mode wins
    assert state.nodes["n"].nvlinks == [("n-gpu0", "n-gpu1")] and not state.nodes["n"].heartbeat_ok
    assert len(state.allocations) == 1
    # Without rules (the simulators' descriptions) a GPU given no mode keeps none.
    bare = build_state(ClusterDescription([PoolState("p")], [node]), catalog)
    assert bare.gpus["n-gpu0"].isolation is None
