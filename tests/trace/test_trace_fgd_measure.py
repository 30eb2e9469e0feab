"""The fragmentation measure and the typical pods (fgd-protocol.md §4, §6.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.policy.placement.fgd_measure import (
    FragmentationModel,
    PodShape,
    TypicalClass,
    fgd_score,
    scoring_view,
    typical_pods,
)
from twin.spec.openb import load_nodes, load_pods


def test_scoring_view() -> None:
    assert scoring_view(0, 0, 0, ()) == PodShape(100, 0, 0, "")  # non-zero CPU default
    assert scoring_view(4000, 1, 1500, ("T4", "P100")) == PodShape(4000, 1000, 1, "T4|P100")  # clamp, order kept


def test_typical_pods_sort_cut_and_renormalise() -> None:
    a, b, c, d = (PodShape(1000 * i, 500, 1) for i in range(1, 5))
    shapes = [a] * 5 + [b] * 3 + [c] + [d]
    # Threshold 80%: need 8 pods; a (5) < 8 adds b -> 8 stops.
    got = typical_pods(shapes, threshold_percent=80)
    assert [(t.shape, t.count) for t in got] == [(a, 5), (b, 3)]
    assert [t.probability for t in got] == pytest.approx([5 / 8, 3 / 8])
    # Equal counts: key descending (larger CPU first).
    got = typical_pods(shapes, threshold_percent=100)
    assert [t.shape for t in got] == [a, b, d, c]


def _hand_model() -> FragmentationModel:
    classes = [
        TypicalClass(PodShape(2000, 0, 0), 1, 0.25),  # CPU-only
        TypicalClass(PodShape(4000, 500, 1), 1, 0.5),  # sharing
        TypicalClass(PodShape(1000, 1000, 2, "A10"), 1, 0.25),  # 2 whole GPUs, A10 only
    ]
    return FragmentationModel(classes, ("A10", "T4"))


def test_node_fragmentation_by_hand() -> None:
    fm = _hand_model()
    # T4, 8 cores, free [300, 800]: CPU-only sees all 1100; sharing is hosted -> only 300 (too small);
    # the A10 class cannot use a T4 -> all 1100. F = 0.25·1100 + 0.5·300 + 0.25·1100 = 700.
    assert fm.node("T4", 8000, [300, 800]) == pytest.approx(700.0)
    # Same on an A10 with 3 cores: sharing lacks CPU (1100); A10 class lacks 2 whole GPUs (1100).
    assert fm.node("A10", 3000, [300, 800]) == pytest.approx(1100.0)
    # Fully free A10 pair with CPU: only the CPU-only class counts the 2000 idle.
    assert fm.node("A10", 8000, [1000, 1000]) == pytest.approx(500.0)
    batch = fm.batch(
        np.array([1, 0, 0]), np.array([8000, 3000, 8000]), np.array([[300, 800, -1], [300, 800, -1], [1000, 1000, -1]])
    )
    assert batch.tolist() == [700.0, 1100.0, 500.0]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 1),
    st.integers(0, 10000),
    st.lists(st.integers(0, 1000), min_size=1, max_size=8),
)
def test_batch_equals_scalar_bit_for_bit(model: int, cpu: int, free: list[int]) -> None:
    fm = _hand_model()
    row = np.array([free + [-1] * (8 - len(free))], dtype=np.int64)
    assert fm.batch(np.array([model]), np.array([cpu]), row)[0] == fm.node(fm.models[model], cpu, free)


def test_fgd_score_is_truncated_sigmoid() -> None:
    assert int(fgd_score(0.0, 0.0)) == 50
    assert int(fgd_score(0.0, 400.0)) == 40  # sigmoid(-0.4) = 0.401
    assert int(fgd_score(1000.0, 0.0)) == 73  # sigmoid(1) = 0.731
    assert fgd_score(np.array([0.0, 10.0]), np.array([0.0, 0.0])).tolist() == [50, 50]  # a 10-milli gain ties


def test_default_trace_typical_pods_and_sanity_values(openb_dir: Path) -> None:
    pods = load_pods(openb_dir / "openb_pod_list_default.csv")
    shapes = [
        scoring_view(int(pods.cpu_milli[i]), int(pods.num_gpu[i]), int(pods.gpu_milli[i]), pods.gpu_spec[i])
        for i in range(len(pods))
    ]
    typical = typical_pods(shapes)
    assert len(typical) == 35 and sum(t.count for t in typical) == 7766
    assert typical[0].shape == PodShape(3152, 810, 1) and typical[0].probability == pytest.approx(0.134818, abs=1e-6)
    assert sum(t.probability for t in typical if t.shape.milli_gpu == 0) == pytest.approx(0.135977, abs=1e-6)
    nodes = load_nodes(openb_dir / "openb_node_list_gpu_node.csv")
    fm = FragmentationModel(typical, sorted(set(nodes.model)))
    assert fm.node("G2", 96000, [1000] * 8) == pytest.approx(1087.8187, abs=1e-4)
    assert fm.node("T4", 104000, [1000] * 2) == pytest.approx(271.9547, abs=1e-4)
    assert fm.node("P100", 16000, [1000] * 2) == pytest.approx(359.2583, abs=1e-4)
    assert fm.node("P100", 8000, [1000] * 2) == pytest.approx(1210.4043, abs=1e-4)
    assert fm.node("A10", 128000, [1000]) == pytest.approx(135.9773, abs=1e-4)
    total = sum(
        fm.node(nodes.model[i], int(nodes.cpu_milli[i]), [1000] * int(nodes.num_gpu[i])) for i in range(len(nodes))
    )
    assert total == pytest.approx(866232.55, abs=0.01)
    assert 100 * total / 6212000 == pytest.approx(13.9445, abs=1e-4)  # "about 14%" for an empty cluster
