"""Full-trace reproduction of the FGD paper's default-trace numbers (slow: run with -m slow).

The protocol replays the reference simulator bit-exactly (fgd-protocol.md), so the per-seed
values must match the published two-decimal curves exactly; the tolerance only absorbs the
printing of the targets (0.005 points). 10-seed means are published to two decimals as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twin.experiments.fgd_protocol import allocation_at, bin_curves, prepare_run, run_fill_up
from twin.spec.openb import load_nodes, load_pods

pytestmark = pytest.mark.slow


def _allocation(openb_dir: Path, policy: str, seed: int) -> tuple[float | None, float | None]:
    run = prepare_run(
        load_nodes(openb_dir / "openb_node_list_gpu_node.csv"),
        load_pods(openb_dir / "openb_pod_list_default.csv"),
        seed,
    )
    points = bin_curves(run_fill_up(run, policy))
    return allocation_at(points, 98), allocation_at(points, 130)


@pytest.mark.parametrize(("policy", "at98", "at130"), [("fgd", 95.14, 95.29), ("bestfit", 92.93, 93.13)])
def test_seed42_allocation(openb_dir: Path, policy: str, at98: float, at130: float) -> None:
    got98, got130 = _allocation(openb_dir, policy, 42)
    assert got98 == pytest.approx(at98, abs=0.005)
    assert got130 == pytest.approx(at130, abs=0.005)


@pytest.mark.parametrize(("policy", "mean130"), [("fgd", 95.39), ("bestfit", 93.08)])
def test_ten_seed_mean_at_130(openb_dir: Path, policy: str, mean130: float) -> None:
    values = [_allocation(openb_dir, policy, seed)[1] for seed in range(42, 52)]
    assert all(v is not None for v in values)
    assert float(np.mean([v for v in values if v is not None])) == pytest.approx(mean130, abs=0.005)
