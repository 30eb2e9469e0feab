"""Fixtures for the trace tests: the shared openb trace (skipped when absent) and tiny runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from twin.experiments.fgd_protocol import PreparedRun
from twin.experiments.trace_gorand import GoRand
from twin.policy.placement.fgd_measure import PodShape, TypicalClass
from twin.spec.openb import default_trace_dir

NodeRow = tuple[int, int, int, str]  # cpu_milli, memory_mib, gpus, model
PodRow = tuple[int, int, int, int]  # cpu_milli, memory_mib, num_gpu, per-GPU milli


@pytest.fixture
def openb_dir() -> Path:
    folder = default_trace_dir()
    if not (folder / "openb_node_list_gpu_node.csv").is_file():
        pytest.skip("shared openb trace not present")
    return folder


def build_run(
    nodes: Sequence[NodeRow],
    pods: Sequence[PodRow],
    ranks: Sequence[int],
    typical: Sequence[tuple[PodShape, float]] = ((PodShape(1000, 500, 1), 1.0),),
    seed: int = 1,
) -> PreparedRun:
    """A PreparedRun built by hand: nodes in the given order, pods placed in the given order."""
    models = tuple(sorted({n[3] for n in nodes}))
    return PreparedRun(
        seed=seed,
        node_names=tuple(f"n{i}" for i in range(len(nodes))),
        node_cpu=np.array([n[0] for n in nodes], dtype=np.int64),
        node_mem=np.array([n[1] for n in nodes], dtype=np.int64),
        node_gpus=np.array([n[2] for n in nodes], dtype=np.int64),
        node_model=np.array([models.index(n[3]) for n in nodes], dtype=np.int64),
        node_rank=np.array(ranks, dtype=np.int64),
        models=models,
        pod_names=tuple(f"p{i}" for i in range(len(pods))),
        pod_cpu=np.array([p[0] for p in pods], dtype=np.int64),
        pod_mem=np.array([p[1] for p in pods], dtype=np.int64),
        pod_num_gpu=np.array([p[2] for p in pods], dtype=np.int64),
        pod_share=np.array([p[3] if p[2] else 0 for p in pods], dtype=np.int64),
        pod_milli_cpu=np.array([p[0] or 100 for p in pods], dtype=np.int64),
        pod_type_ok=np.ones((len(pods), len(models)), dtype=bool),
        typical=tuple(TypicalClass(shape, 1, p) for shape, p in typical),
        copies=0,
        rng=GoRand(seed),
    )


@pytest.fixture
def make_run() -> Callable[..., PreparedRun]:
    return build_run
