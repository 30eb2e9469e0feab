"""The FGD fragmentation measure (Weng et al., ATC'23; fgd-protocol.md §4, §6).

Pure functions over plain numbers: the twin's strategies (:mod:`research`) and the paper-protocol
runner (:mod:`twin.experiments.fgd_protocol`) share them. Units are the paper's: CPU in
millicores, GPU in milli-GPU (1000 = one whole device). Memory plays no part.

A node's fragmentation for a target workload of typical classes m (probability p_m) is
``F_n = Σ_m p_m · amount_m(n)``: every idle GPU share counts for a class the node cannot host at
all (wrong type, too little CPU, too few GPUs big enough, or a CPU-only class), and for a class it
can host only the GPUs individually too small for it count. The float order follows the
reference (six accumulators, summed in a fixed order) because the integer-truncated FGD score
makes ties, and ties must break the same way for the published curves to replay exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MILLI_PER_GPU = 1000
POPULARITY_THRESHOLD = 95  # percent of pods the typical classes must cover (paper runs)
DEFAULT_CPU_MILLI = 100  # kube-scheduler's "non-zero" CPU request used in every score

# Accumulator slots, in the order the reference adds them up.
Q1_LACK_BOTH, Q2_LACK_GPU, Q4_LACK_CPU, XL_CPU_ONLY_FITS, XR_CPU_ONLY_LACKS, NA_NO_ACCESS = range(6)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class PodShape:
    """The scoring view of a pod: CPU (non-zero view), per-GPU share, GPU count, type string."""

    milli_cpu: int
    milli_gpu: int
    gpu_number: int
    gpu_type: str = ""  # allowed models joined by "|" in written order; "" = any

    @property
    def allowed_models(self) -> tuple[str, ...]:
        return tuple(t for t in self.gpu_type.split("|") if t)


def scoring_view(cpu_milli: int, num_gpu: int, gpu_milli: int, gpu_spec: Sequence[str]) -> PodShape:
    """A trace pod as the scores see it (fgd-protocol.md §1.2)."""
    milli_cpu = cpu_milli if cpu_milli != 0 else DEFAULT_CPU_MILLI
    if num_gpu == 0:
        return PodShape(milli_cpu, 0, 0, "")
    share = MILLI_PER_GPU if gpu_milli > MILLI_PER_GPU else max(gpu_milli, 0)
    return PodShape(milli_cpu, share, num_gpu, "|".join(gpu_spec))


@dataclass(frozen=True, slots=True)
class TypicalClass:
    shape: PodShape
    count: int
    probability: float


def typical_pods(shapes: Iterable[PodShape], threshold_percent: int = POPULARITY_THRESHOLD) -> tuple[TypicalClass, ...]:
    """The most popular pod classes covering ``threshold_percent`` of the pods (§4).

    Sorted by count descending, then by key descending (CPU, GPU share, GPU count, type string);
    classes are added while the running count is below the threshold; probabilities are
    renormalised over the kept classes.
    """
    counts = Counter(shapes)
    total = sum(counts.values())
    if total == 0:
        return ()
    ordered = sorted(
        counts.items(),
        key=lambda kv: (kv[1], kv[0].milli_cpu, kv[0].milli_gpu, kv[0].gpu_number, kv[0].gpu_type.encode()),
        reverse=True,
    )
    need = threshold_percent * total / 100
    kept: list[tuple[PodShape, int]] = []
    cum = 0
    for shape, count in ordered:
        if cum >= need:
            break
        kept.append((shape, count))
        cum += count
    share_kept = cum / total
    return tuple(TypicalClass(shape, count, (count / total) / share_kept) for shape, count in kept)


class FragmentationModel:
    """Fragmentation of node states for one target workload, vectorised over a batch of states.

    ``models`` is the GPU-model vocabulary; a node state is (model index, free CPU, free milli per
    GPU) with ``-1`` marking GPU slots the node does not have.
    """

    def __init__(self, classes: Sequence[TypicalClass], models: Sequence[str]) -> None:
        self.classes = tuple(classes)
        self.models = tuple(models)
        self._cpu = np.array([c.shape.milli_cpu for c in classes], dtype=np.int64)
        self._gpu = np.array([c.shape.milli_gpu for c in classes], dtype=np.int64)
        self._num = np.array([c.shape.gpu_number for c in classes], dtype=np.int64)
        self._p = np.array([c.probability for c in classes], dtype=np.float64)
        self._cpu_only = self._gpu == 0
        type_ok = np.ones((len(models), len(classes)), dtype=bool)
        for j, cls in enumerate(classes):
            allowed = cls.shape.allowed_models
            if allowed:
                for i, model in enumerate(models):
                    type_ok[i, j] = model in allowed
        self._type_ok = type_ok

    def batch(self, model_index: IntArray, cpu_left: IntArray, free_milli: IntArray) -> FloatArray:
        """F for each row; ``free_milli`` is (rows, slots) with -1 for absent GPUs."""
        rows = free_milli.shape[0]
        if rows == 0:
            return np.zeros(0, dtype=np.float64)
        free = np.maximum(free_milli, 0)
        idle = free.sum(axis=1)
        demand = self._gpu[None, :, None]
        big_enough = free_milli[:, None, :] >= demand  # (rows, classes, slots); absent (-1) never
        gpu_ok = big_enough.sum(axis=2) >= self._num[None, :]
        small_part = (free[:, None, :] * ~big_enough).sum(axis=2)
        cpu_ok = cpu_left[:, None] >= self._cpu[None, :]
        type_ok = self._type_ok[model_index]
        category = np.where(
            cpu_ok & gpu_ok,
            Q2_LACK_GPU,  # Q3: only the too-small GPUs count, filed under Q2
            np.where(gpu_ok, Q4_LACK_CPU, np.where(cpu_ok, Q2_LACK_GPU, Q1_LACK_BOTH)),
        )
        category = np.where(type_ok, category, NA_NO_ACCESS)
        category = np.where(self._cpu_only[None, :], np.where(cpu_ok, XL_CPU_ONLY_FITS, XR_CPU_ONLY_LACKS), category)
        hosted = cpu_ok & gpu_ok & type_ok & ~self._cpu_only[None, :]
        amount = np.where(hosted, small_part, idle[:, None])
        contribution = self._p[None, :] * amount
        # The reference adds each class's contribution to its category slot in class order, then the
        # six slots in slot order. np.add.at applies its updates one by one in index order, and the
        # flattened (row, class) order is class-ascending within a row; cumsum adds strictly left to
        # right (np.sum would pair terms): the same additions in the same order, so bit for bit.
        slots = np.zeros((rows, 6), dtype=np.float64)
        np.add.at(slots, (np.repeat(np.arange(rows), category.shape[1]), category.ravel()), contribution.ravel())
        return np.cumsum(slots, axis=1)[:, -1]

    def node(self, model: str, cpu_left: int, free_milli: Sequence[int]) -> float:
        """F of one node (the same arithmetic as :meth:`batch`, in plain Python)."""
        idle = sum(free_milli)
        acc = [0.0] * 6
        model_i = self.models.index(model) if model in self.models else -1
        for j, cls in enumerate(self.classes):
            shape = cls.shape
            cpu_ok = cpu_left >= shape.milli_cpu
            if shape.milli_gpu == 0:
                acc[XL_CPU_ONLY_FITS if cpu_ok else XR_CPU_ONLY_LACKS] += cls.probability * idle
                continue
            if model_i < 0 or not self._type_ok[model_i, j]:
                acc[NA_NO_ACCESS] += cls.probability * idle
                continue
            gpu_ok = sum(1 for r in free_milli if r >= shape.milli_gpu) >= shape.gpu_number
            if cpu_ok and gpu_ok:
                acc[Q2_LACK_GPU] += cls.probability * sum(r for r in free_milli if r < shape.milli_gpu)
            elif gpu_ok:
                acc[Q4_LACK_CPU] += cls.probability * idle
            elif cpu_ok:
                acc[Q2_LACK_GPU] += cls.probability * idle
            else:
                acc[Q1_LACK_BOTH] += cls.probability * idle
        total = 0.0
        for value in acc:
            total += value
        return total


def fgd_score(frag_before: float | FloatArray, frag_after: float | FloatArray) -> IntArray:
    """``trunc(100·σ((before − after)/1000))``: the FGD node score, integer in [0, 100]."""
    delta = (np.asarray(frag_before, dtype=np.float64) - np.asarray(frag_after, dtype=np.float64)) / 1000.0
    sigma = 1.0 / (1.0 + np.exp(-delta))
    return np.trunc(sigma * 100.0).astype(np.int64)


def fgd_score_scalar(frag_before: float, frag_after: float) -> int:
    return int(fgd_score(frag_before, frag_after))
