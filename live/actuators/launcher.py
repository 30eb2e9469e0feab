"""Starts a placed worker's command on the GPUs it got, with CUDA MPS limits from its allocation.

Environment given to the command (see :func:`launch_env`):
* ``CUDA_VISIBLE_DEVICES``: the placed devices' UUIDs, in placement order;
* ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``: the worker's compute limit as TensorFusion's UpLimit
  (compute-percent limit, else ``ceil(tflops limit / device TFLOPs · 100)`` clamped to [1, 100]);
  unset when the worker has no compute limit (a zero limit means unlimited, semantics 2.1);
* ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``: ``<ordinal>=<MiB>M`` per visible device from the VRAM
  limit (rounded down to whole MiB so the cap is never above the limit); unset without a VRAM limit;
* ``TENSOR_FUSION_WORKER``: the worker's ``namespace/name``.

The MPS variables only bind when an MPS control daemon serves the GPUs; without one CUDA ignores
them. The launcher never stops or signals a process: workers run in their own session, so stopping
the agent leaves them alone. Partitioned (MIG) placements are refused: creating MIG instances needs
root and an idle GPU, which the agent does not do.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence

from live.decisions import Decision, Placed
from live.inventory import Inventory
from live.workers import Worker
from twin.errors import TwinInputError
from twin.policy.isolation import up_limit_fraction
from twin.resources import MIB, AllocRequest, IsolationMode

log = logging.getLogger(__name__)

Spawn = Callable[[Sequence[str], Mapping[str, str]], int]


def launch_env(req: AllocRequest, gpu_ids: Sequence[str], inventory: Inventory) -> dict[str, str]:
    """The CUDA environment for ``req`` placed on ``gpu_ids`` (device UUIDs)."""
    gpus = []
    for gid in gpu_ids:
        g = inventory.gpu(gid)
        if g is None:
            raise TwinInputError("placed on a GPU this node does not have", obj=req.uid, field="gpu_ids", value=gid)
        gpus.append(g)
    env = {"CUDA_VISIBLE_DEVICES": ",".join(gpu_ids), "TENSOR_FUSION_WORKER": req.uid}
    limit = req.limit
    if limit.compute_percent > 0 or limit.tflops > 0:
        # One percentage per client: with mixed models take the largest, so no device is capped below its limit.
        pct = max(math.ceil(up_limit_fraction(limit, g.capacity.tflops) * 100 - 1e-9) for g in gpus)
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(pct)
    if limit.vram > 0:
        mib = limit.vram // MIB
        env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = ",".join(f"{i}={mib}M" for i in range(len(gpu_ids)))
    return env


def _popen(command: Sequence[str], env: Mapping[str, str]) -> int:
    proc = subprocess.Popen(list(command), env={**os.environ, **env}, start_new_session=True)
    return proc.pid


class LauncherActuator:
    """Runs ``command`` of a worker from the workers file when the agent places it."""

    name = "launcher"

    def __init__(self, spawn: Spawn = _popen) -> None:
        self.spawn = spawn
        self.launched: dict[str, int] = {}

    def apply(self, decision: Decision, worker: Worker | None, inventory: Inventory) -> tuple[int, ...]:
        if not isinstance(decision, Placed) or worker is None:
            return ()
        if not worker.command:
            log.info("launcher: %s has no command in the workers file; nothing to start", worker.uid)
            return ()
        if worker.uid in self.launched:
            return ()
        req = worker.request()
        if decision.partition_template is not None or req.isolation is IsolationMode.PARTITIONED:
            raise TwinInputError(
                "the launcher cannot create MIG instances; start partitioned workers yourself",
                obj=worker.uid,
                field="isolation",
                value=req.isolation.value,
            )
        env = launch_env(req, decision.gpu_ids, inventory)
        pid = self.spawn(worker.command, env)
        self.launched[worker.uid] = pid
        log.info("launcher: started %s as PID %d on %s", worker.uid, pid, env["CUDA_VISIBLE_DEVICES"])
        return (pid,)
