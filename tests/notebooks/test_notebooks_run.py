"""Each notebook runs top to bottom as a plain script (fast setting) and writes its plots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
TRACE_DIR = Path(os.environ.get("TWIN_OPENB_DIR", ROOT.parent / "shared" / "data" / "openb"))
PLOTS = {
    "capacity_planning": ["plan.png", "slo_by_a100.png"],
    "migration_enabled_replicas": ["migration_steps.png"],
    "placement_policies_on_trace": ["fill_up_curves.png"],
    "choosing_llm_autoscaler": ["attainment_vs_cost.png", "replicas_over_time.png"],
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_notebook(name: str, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "TWIN_NOTEBOOK_FAST": "1", "TWIN_NOTEBOOK_OUT": str(out), "MPLBACKEND": "Agg", **env}
    return subprocess.run(
        [sys.executable, str(NOTEBOOKS / f"{name}.py")],
        cwd=out,  # not the repo: the notebooks must find the scenarios on their own
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_every_notebook_is_listed_here_and_in_jupytext_percent_format() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.py")) == sorted(PLOTS)
    for name in PLOTS:
        text = (NOTEBOOKS / f"{name}.py").read_text()
        assert "format_name: percent" in text
        cells = [line for line in text.splitlines() if line.startswith("# %%")]
        assert cells[0] == "# %% [markdown]", f"{name}: the first cell says what the notebook is for"
        assert sum(c == "# %%" for c in cells) >= 3 and sum(c == "# %% [markdown]" for c in cells) >= 3


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_notebook_runs_as_a_script_and_writes_its_plots(name: str, tmp_path: Path) -> None:
    if name == "placement_policies_on_trace" and not (TRACE_DIR / "openb_node_list_gpu_node.csv").exists():
        pytest.skip(f"openb trace not in {TRACE_DIR}")
    done = run_notebook(name, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for plot in PLOTS[name]:
        data = (tmp_path / name / plot).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, plot
    assert "plots:" in done.stdout


def test_trace_notebook_stops_cleanly_without_the_trace(tmp_path: Path) -> None:
    done = run_notebook("placement_policies_on_trace", tmp_path, TWIN_OPENB_DIR=str(tmp_path / "absent"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "openb trace not found" in done.stdout
    assert not (tmp_path / "placement_policies_on_trace").exists()
