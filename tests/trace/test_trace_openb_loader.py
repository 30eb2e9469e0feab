"""Loading the openb CSVs: both schemas, real slices, and precise errors on malformed rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from twin.errors import TwinInputError
from twin.spec.openb import MISSING_TIME, load_nodes, load_pods, trace_names

LONG_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_long_schema_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "pods.csv",
        f"{LONG_HEADER}\np0,12000,16384,1,460,V100M16|V100M32,LS,Running,0,100,0\np1,0,0,0,0,,BE,Pending,5,10,\n",
    )
    pods = load_pods(path)
    assert pods.names == ("p0", "p1")
    assert pods.gpu_spec == (("V100M16", "V100M32"), ())
    assert pods.gpu_milli.tolist() == [460, 0]
    assert pods.scheduled_time.tolist() == [0, MISSING_TIME]
    assert pods.qos == ("LS", "BE") and not pods.short_schema


def test_short_schema_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "pods.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,8000,100,8,1000\n")
    pods = load_pods(path)
    assert pods.short_schema and pods.gpu_spec == ((),) and pods.qos == ("",)
    assert pods.creation_time.tolist() == [MISSING_TIME]


@pytest.mark.parametrize(
    ("row", "field", "value"),
    [
        ("p0,12x,1,1,100,,LS,Running,0,1,0", "cpu_milli", "12x"),
        ("p0,1,-5,1,100,,LS,Running,0,1,0", "memory_mib", "-5"),
        ("p0,1,1,3,100,,LS,Running,0,1,0", "num_gpu", "3"),
        ("p0,1,1,1,100,H100,LS,Running,0,1,0", "gpu_spec", "H100"),
        ("p0,1,1,1,100,,XX,Running,0,1,0", "qos", "XX"),
        ("p0,1,1,1,100,,LS,Lost,0,1,0", "pod_phase", "Lost"),
        ("p0,1,1,1,100,,LS,Running,zero,1,0", "creation_time", "zero"),
        ("p0,1,1,1,100,,LS,Running,0,1", "row", "p0,1,1,1,100,,LS,Running,0,1"),
    ],
)
def test_malformed_pod_row_names_file_line_column_value(tmp_path: Path, row: str, field: str, value: str) -> None:
    path = write(tmp_path, "bad.csv", f"{LONG_HEADER}\np_ok,1,1,0,0,,LS,Running,0,1,0\n{row}\n")
    with pytest.raises(TwinInputError) as info:
        load_pods(path)
    err = info.value
    assert err.file == str(path) and err.line == 3 and err.field == field and err.value == value
    assert f"{path}:3" in str(err)


def test_duplicate_pod_and_bad_header(tmp_path: Path) -> None:
    dup = write(tmp_path, "dup.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\na,1,1,0,0\na,1,1,0,0\n")
    with pytest.raises(TwinInputError, match="duplicate"):
        load_pods(dup)
    bad = write(tmp_path, "hdr.csv", "name,cpu\na,1\n")
    with pytest.raises(TwinInputError, match="unexpected header") as info:
        load_pods(bad)
    assert info.value.line == 1
    with pytest.raises(TwinInputError, match="not found"):
        load_pods(tmp_path / "missing.csv")


def test_nodes_and_their_errors(tmp_path: Path) -> None:
    ok = write(tmp_path, "nodes.csv", "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\nn1,32000,1,0,\n")
    nodes = load_nodes(ok)
    assert nodes.model == ("P100", "") and nodes.total_gpus == 2
    bad = write(tmp_path, "bad.csv", "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,H100\n")
    with pytest.raises(TwinInputError) as info:
        load_nodes(bad)
    assert (info.value.line, info.value.field, info.value.value) == (2, "model", "H100")
    cpu_only_model = write(tmp_path, "b2.csv", "sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,0,T4\n")
    with pytest.raises(TwinInputError, match="without GPUs"):
        load_nodes(cpu_only_model)


def test_real_trace_files_load(openb_dir: Path) -> None:
    nodes = load_nodes(openb_dir / "openb_node_list_gpu_node.csv")
    assert len(nodes) == 1213 and nodes.total_gpus == 6212
    assert set(nodes.model) == {"P100", "T4", "V100M16", "V100M32", "A10", "G2", "G3"}
    assert len(load_nodes(openb_dir / "openb_node_list_all_node.csv")) == 1523
    names = trace_names(openb_dir)
    assert len(names) == 24 and "default" in names and "multigpu50" in names
    default = load_pods(openb_dir / "openb_pod_list_default.csv")
    assert len(default) == 8152
    assert int((default.num_gpu == 0).sum()) == 1088
    assert int(((default.num_gpu == 1) & (default.gpu_milli < 1000)).sum()) == 3078
    multi = load_pods(openb_dir / "openb_pod_list_multigpu20.csv")
    assert multi.short_schema and len(multi) == 8324
    spec = load_pods(openb_dir / "openb_pod_list_gpuspec33.csv")
    assert sum(1 for s in spec.gpu_spec if s) == 2388
