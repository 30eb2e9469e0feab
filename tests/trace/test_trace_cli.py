"""``twin trace fill`` and ``twin trace compare`` on a tiny synthetic trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from twin.cli import main
from twin.cli.trace_cmd import parse_policies, parse_seeds
from twin.errors import TwinInputError


@pytest.fixture
def tiny_trace(tmp_path: Path) -> tuple[Path, Path]:
    nodes = tmp_path / "nodes.csv"
    nodes.write_text(
        "sn,cpu_milli,memory_mib,gpu,model\n"
        + "".join(f"node-{i:02d},32000,65536,{2 + 2 * (i % 2)},T4\n" for i in range(8))
    )
    pods = tmp_path / "pods.csv"
    rows = []
    for i in range(40):
        share = (250, 500, 1000, 0)[i % 4]
        rows.append(f"pod-{i:03d},{2000 + 500 * (i % 3)},4096,{1 if share else 0},{share}\n")
    pods.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\n" + "".join(rows))
    return nodes, pods


def test_fill_json_prints_exactly_one_object(tiny_trace: tuple[Path, Path]) -> None:
    nodes, pods = tiny_trace
    result = CliRunner().invoke(
        main, ["trace", "fill", "--nodes", str(nodes), "--pods", str(pods), "--policy", "fgd", "--seed", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    assert set(obj) == {"policy", "seed", "pods_failed", "curve"}
    assert obj["policy"] == "fgd" and obj["seed"] == 3 and isinstance(obj["pods_failed"], int)
    assert obj["curve"] and set(obj["curve"][0]) == {"arrived_pct", "allocated_pct", "frag_ratio_pct"}
    assert all(isinstance(p["arrived_pct"], int) for p in obj["curve"])
    assert obj["curve"][-1]["arrived_pct"] >= 125  # inflated to ~130% (stops one pod short)


def test_fill_writes_outputs(tiny_trace: tuple[Path, Path], tmp_path: Path) -> None:
    nodes, pods = tiny_trace
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["trace", "fill", "--nodes", str(nodes), "--pods", str(pods), "-o", str(out)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "fill-fgd-42-allocation.png",
        "fill-fgd-42-fragmentation.png",
        "fill-fgd-42-summary.json",
        "fill-fgd-42.csv",
        "fill-fgd-42.json",
    ]
    assert (out / "fill-fgd-42-allocation.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "fill-fgd-42.csv").read_text().startswith("policy,seed,arrived_pct,allocated_pct")


def test_compare_runs_policies_and_seeds(tiny_trace: tuple[Path, Path], tmp_path: Path) -> None:
    nodes, pods = tiny_trace
    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        main,
        [
            "trace",
            "compare",
            "--nodes",
            str(nodes),
            "--pods",
            str(pods),
            "--policies",
            "bestfit,fgd",
            "--seeds",
            "1-2",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "compare-summary.json").read_text())
    assert [s["policy"] for s in summary] == ["bestfit", "fgd"]
    assert summary[0]["seeds"] == [1, 2]
    runs = json.loads((out / "compare.json").read_text())
    assert [(r["policy"], r["seed"]) for r in runs] == [("bestfit", 1), ("bestfit", 2), ("fgd", 1), ("fgd", 2)]


def test_bad_inputs_exit_with_code_2(tiny_trace: tuple[Path, Path], tmp_path: Path) -> None:
    nodes, _pods = tiny_trace
    bad = tmp_path / "bad.csv"
    bad.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,7,0\n")
    result = CliRunner().invoke(main, ["trace", "fill", "--nodes", str(nodes), "--pods", str(bad)])
    assert result.exit_code == 2
    assert "num_gpu" in result.output and "bad.csv:2" in result.output


def test_seed_and_policy_parsing() -> None:
    assert parse_seeds("42-44,50,42") == [42, 43, 44, 50]
    assert parse_seeds("-3") == [-3]
    assert parse_policies("FGD, bestfit") == ["fgd", "bestfit"]
    with pytest.raises(TwinInputError):
        parse_seeds("4x")
    with pytest.raises(TwinInputError):
        parse_seeds("9-3")
    with pytest.raises(TwinInputError):
        parse_policies("tetris")


def test_fill_accepts_a_registry_strategy(tiny_trace: tuple[Path, Path]) -> None:
    nodes, pods = tiny_trace
    result = CliRunner().invoke(
        main, ["trace", "fill", "--nodes", str(nodes), "--pods", str(pods), "--policy", "CompactFirst", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["policy"] == "CompactFirst"
    bad = CliRunner().invoke(main, ["trace", "fill", "--nodes", str(nodes), "--pods", str(pods), "--policy", "tetris"])
    assert bad.exit_code == 2 and "CompactFirst" in bad.output


def test_compare_with_a_process_pool_gives_the_same_runs(tiny_trace: tuple[Path, Path], tmp_path: Path) -> None:
    nodes, pods = tiny_trace
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        args = ["trace", "compare", "--nodes", str(nodes), "--pods", str(pods), "--policies", "fgd,random"]
        result = CliRunner().invoke(main, [*args, "--seeds", "5,6", "--workers", workers, "-o", str(out)])
        assert result.exit_code == 0, result.output
        outs.append((out / "compare.json").read_text())
    assert outs[0] == outs[1]
