"""Loader for Alibaba's openb GPU-sharing trace (cluster-trace-gpu-v2023).

Node lists: ``sn,cpu_milli,memory_mib,gpu,model``. Pod lists: 11 columns
(``name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,
deletion_time,scheduled_time``), or 5 columns for the four ``multigpu*`` files. Every row is
checked; a malformed one raises :class:`TwinInputError` naming file, line, column and value.
The trace itself is never copied into the repository: paths come from the user or default to the
shared data folder next to the repository.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from twin import limits
from twin.errors import TwinInputError
from twin.resources import AllocRequest, IsolationMode, QoS, Resource

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = (
    "name",
    "cpu_milli",
    "memory_mib",
    "num_gpu",
    "gpu_milli",
    "gpu_spec",
    "qos",
    "pod_phase",
    "creation_time",
    "deletion_time",
    "scheduled_time",
)
POD_COLUMNS_SHORT = POD_COLUMNS[:5]
GPU_MODELS = ("P100", "T4", "V100M16", "V100M32", "A10", "G1", "G2", "G3")
QOS_VALUES = ("LS", "BE", "Burstable", "Guaranteed")
POD_PHASES = ("Running", "Succeeded", "Failed", "Pending")
NUM_GPU_VALUES = (0, 1, 2, 4, 8)
MISSING_TIME = -1  # times absent from the row (5-column files, Pending pods' scheduled_time)

IntArray = npt.NDArray[np.int64]


def default_trace_dir() -> Path:
    """``<repo>/../shared/data/openb``: where the shared copy of the trace lives."""
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "openb"


def default_nodes_path() -> Path:
    return default_trace_dir() / "openb_node_list_gpu_node.csv"


def default_pods_path(trace: str = "default") -> Path:
    return default_trace_dir() / f"openb_pod_list_{trace}.csv"


@dataclass(frozen=True)
class NodeList:
    """One node list, rows in file order. ``model`` is "" for CPU-only nodes."""

    source: str
    names: tuple[str, ...]
    cpu_milli: IntArray
    memory_mib: IntArray
    num_gpu: IntArray
    model: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def total_gpus(self) -> int:
        return int(self.num_gpu.sum())


@dataclass(frozen=True)
class PodList:
    """One pod list, rows in file order.

    ``gpu_spec`` holds each pod's allowed GPU models in their written order (empty: any model).
    ``qos``/``phase`` are "" and the times :data:`MISSING_TIME` in the 5-column files.
    """

    source: str
    names: tuple[str, ...]
    cpu_milli: IntArray
    memory_mib: IntArray
    num_gpu: IntArray
    gpu_milli: IntArray
    gpu_spec: tuple[tuple[str, ...], ...]
    qos: tuple[str, ...]
    phase: tuple[str, ...]
    creation_time: IntArray
    deletion_time: IntArray
    scheduled_time: IntArray
    short_schema: bool

    def __len__(self) -> int:
        return len(self.names)


def _int_field(file: str, line: int, column: str, raw: str, *, minimum: int = 0, optional: bool = False) -> int:
    if raw == "" and optional:
        return MISSING_TIME
    try:
        value = int(raw)
    except ValueError:
        raise TwinInputError("not an integer", file=file, line=line, field=column, value=raw) from None
    if value < minimum:
        raise TwinInputError(f"must be >= {minimum}", file=file, line=line, field=column, value=raw)
    if value > _INT_MAX:
        raise TwinInputError(f"must be <= {_INT_MAX}", file=file, line=line, field=column, value=raw)
    return value


_INT_MAX = 2**53  # every trace column (milli-units, MiB, seconds) is far below; numpy int64 is the bound


def _read_rows(path: Path, expected: tuple[tuple[str, ...], ...]) -> tuple[str, tuple[str, ...], list[list[str]]]:
    file = str(path)
    try:
        if path.stat().st_size > limits.FILE_MAX_BYTES.value:
            raise TwinInputError(f"the trace file is above the {limits.FILE_MAX_BYTES.hint()}", file=file)
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise TwinInputError("trace file not found", file=file) from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise TwinInputError(f"cannot read trace file: {err}", file=file) from None
    if not rows:
        raise TwinInputError("empty file, expected a header row", file=file, line=1)
    header = tuple(h.strip() for h in rows[0])
    if header not in expected:
        wanted = " or ".join(",".join(e) for e in expected)
        raise TwinInputError(f"unexpected header, expected {wanted}", file=file, line=1, value=",".join(header))
    return file, header, rows[1:]


def load_nodes(path: str | Path) -> NodeList:
    """Read a node list (``openb_node_list_*.csv``)."""
    file, _header, rows = _read_rows(Path(path), (NODE_COLUMNS,))
    names: list[str] = []
    cpu: list[int] = []
    mem: list[int] = []
    gpus: list[int] = []
    models: list[str] = []
    seen: set[str] = set()
    for offset, row in enumerate(rows):
        line = offset + 2
        if len(row) != len(NODE_COLUMNS):
            raise TwinInputError(
                f"expected {len(NODE_COLUMNS)} columns", file=file, line=line, field="row", value=",".join(row)
            )
        name, model = row[0], row[4]
        if not name:
            raise TwinInputError("empty node name", file=file, line=line, field="sn", value=name)
        if name in seen:
            raise TwinInputError("duplicate node name", file=file, line=line, field="sn", value=name)
        seen.add(name)
        n_gpu = _int_field(file, line, "gpu", row[3])
        if n_gpu > 0 and model not in GPU_MODELS:
            raise TwinInputError(
                f"unknown GPU model, expected one of {', '.join(GPU_MODELS)}",
                file=file,
                line=line,
                field="model",
                value=model,
            )
        if n_gpu == 0 and model:
            raise TwinInputError(
                "a node without GPUs names a GPU model", file=file, line=line, field="model", value=model
            )
        names.append(name)
        cpu.append(_int_field(file, line, "cpu_milli", row[1]))
        mem.append(_int_field(file, line, "memory_mib", row[2]))
        gpus.append(n_gpu)
        models.append(model)
    return NodeList(
        source=file,
        names=tuple(names),
        cpu_milli=np.asarray(cpu, dtype=np.int64),
        memory_mib=np.asarray(mem, dtype=np.int64),
        num_gpu=np.asarray(gpus, dtype=np.int64),
        model=tuple(models),
    )


def load_pods(path: str | Path) -> PodList:
    """Read a pod list (``openb_pod_list_*.csv``), either schema."""
    file, header, rows = _read_rows(Path(path), (POD_COLUMNS, POD_COLUMNS_SHORT))
    short = header == POD_COLUMNS_SHORT
    width = len(header)
    names: list[str] = []
    ints: dict[str, list[int]] = {c: [] for c in ("cpu_milli", "memory_mib", "num_gpu", "gpu_milli")}
    times: dict[str, list[int]] = {c: [] for c in ("creation_time", "deletion_time", "scheduled_time")}
    specs: list[tuple[str, ...]] = []
    qos: list[str] = []
    phases: list[str] = []
    seen: set[str] = set()
    for offset, row in enumerate(rows):
        line = offset + 2
        if len(row) != width:
            raise TwinInputError(f"expected {width} columns", file=file, line=line, field="row", value=",".join(row))
        name = row[0]
        if not name:
            raise TwinInputError("empty pod name", file=file, line=line, field="name", value=name)
        if name in seen:
            raise TwinInputError("duplicate pod name", file=file, line=line, field="name", value=name)
        seen.add(name)
        names.append(name)
        for col_index, column in enumerate(("cpu_milli", "memory_mib", "num_gpu", "gpu_milli"), start=1):
            ints[column].append(_int_field(file, line, column, row[col_index]))
        if ints["gpu_milli"][-1] > 1000:
            raise TwinInputError(
                "gpu_milli is a share of one GPU, 0..1000", file=file, line=line, field="gpu_milli", value=row[4]
            )
        if ints["num_gpu"][-1] == 0 and ints["gpu_milli"][-1] != 0:
            raise TwinInputError(
                "a pod without GPUs (num_gpu 0) must have gpu_milli 0",
                file=file,
                line=line,
                field="gpu_milli",
                value=row[4],
            )
        if ints["num_gpu"][-1] not in NUM_GPU_VALUES:
            raise TwinInputError(
                f"num_gpu must be one of {NUM_GPU_VALUES}", file=file, line=line, field="num_gpu", value=row[3]
            )
        if short:
            specs.append(())
            qos.append("")
            phases.append("")
            for column in times:
                times[column].append(MISSING_TIME)
            continue
        spec = tuple(item for item in row[5].split("|") if item)
        for item in spec:
            if item not in GPU_MODELS:
                raise TwinInputError(
                    f"unknown GPU model in gpu_spec, expected items of {', '.join(GPU_MODELS)}",
                    file=file,
                    line=line,
                    field="gpu_spec",
                    value=row[5],
                )
        specs.append(spec)
        if row[6] not in QOS_VALUES:
            raise TwinInputError(
                f"qos must be one of {', '.join(QOS_VALUES)}", file=file, line=line, field="qos", value=row[6]
            )
        if row[7] not in POD_PHASES:
            raise TwinInputError(
                f"pod_phase must be one of {', '.join(POD_PHASES)}",
                file=file,
                line=line,
                field="pod_phase",
                value=row[7],
            )
        qos.append(row[6])
        phases.append(row[7])
        for col_index, column in enumerate(times, start=8):
            times[column].append(_int_field(file, line, column, row[col_index], optional=True))
    as_array = {k: np.asarray(v, dtype=np.int64) for k, v in (ints | times).items()}
    return PodList(
        source=file,
        names=tuple(names),
        cpu_milli=as_array["cpu_milli"],
        memory_mib=as_array["memory_mib"],
        num_gpu=as_array["num_gpu"],
        gpu_milli=as_array["gpu_milli"],
        gpu_spec=tuple(specs),
        qos=tuple(qos),
        phase=tuple(phases),
        creation_time=as_array["creation_time"],
        deletion_time=as_array["deletion_time"],
        scheduled_time=as_array["scheduled_time"],
        short_schema=short,
    )


def trace_names(directory: str | Path | None = None) -> list[str]:
    """The pod-list variants present in ``directory`` (``default``, ``cpu050``, ...), sorted."""
    folder = Path(directory) if directory is not None else default_trace_dir()
    prefix = "openb_pod_list_"
    return sorted(p.stem[len(prefix) :] for p in folder.glob(f"{prefix}*.csv"))


MIB_BYTES = 1 << 20


def openb_request(
    name: str,
    *,
    num_gpu: int,
    share: int,
    cpu_milli: int,
    memory_mib: int,
    gpu_model: str | None,
    pool: str,
    qos: QoS = QoS.MEDIUM,
    workload: str = "",
    vram_per_milli: int = 0,
    limit_is_request: bool = False,
) -> AllocRequest:
    """The one openb pod -> request mapping (docs/trace.md, "A pod becomes one request").

    ``share`` is the per-GPU share in milli-GPU, counted as ``request.tflops`` on GPUs whose
    capacity is 1000 (and kept as ``gpu_milli``); ``num_gpu = 0`` is a CPU-only pod. Two choices
    differ by experiment: the dynamic replay requests no VRAM (``vram_per_milli=0``, the GPUs keep
    their real VRAM), while the fill-up through the registry mirrors the share in VRAM on 1000-MiB
    GPUs (``vram_per_milli=MIB_BYTES``, ``limit_is_request``) so TensorFusion's VRAM-weighted scores
    see the pod.
    """
    request = Resource(tflops=float(share), vram=share * vram_per_milli) if num_gpu or vram_per_milli else Resource()
    return AllocRequest(
        uid=name,
        name=name,
        workload=workload,
        pool=pool,
        qos=qos,
        isolation=IsolationMode.SOFT,
        gpu_count=num_gpu,
        request=request,
        limit=request if limit_is_request else Resource(),
        gpu_model=gpu_model,
        cpu_milli=cpu_milli,
        memory=memory_mib * MIB_BYTES,
        gpu_milli=share,
    )
