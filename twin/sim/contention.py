"""Per-GPU contention: who runs on each device, what each receives, and the utilisation total.

When the set of residents of a GPU or one resident's demand changes, :meth:`GpuLoad.recompute`
re-runs the isolation model (twin.policy.isolation) for that GPU only and returns the workers whose
received share changed: per-event work is O(residents of the affected GPU).
"""

from __future__ import annotations

from collections.abc import Sequence

from twin.policy.isolation import ErlParams, received_shares
from twin.resources import IsolationMode
from twin.sim.workers import SimWorker

_MEMO_LIMIT = 4096  # entries; continuous demands (random walks) never hit, so keep it small


class GpuLoad:
    """Residents, shares and VRAM use per GPU, and the cluster-wide used-TFLOPs total."""

    def __init__(
        self, capacity_tflops: dict[str, float], vram: dict[str, int], price_per_hour: dict[str, float], erl: ErlParams
    ) -> None:
        self.capacity_tflops = capacity_tflops
        self.vram_capacity = vram
        self.price_per_hour = price_per_hour
        self.busy_price_per_hour = 0.0  # catalogue price of the GPUs that host someone
        self.erl = erl
        self.residents: dict[str, list[SimWorker]] = {g: [] for g in capacity_tflops}
        self.vram_used: dict[str, int] = dict.fromkeys(capacity_tflops, 0)
        self._used_tflops: dict[str, float] = dict.fromkeys(capacity_tflops, 0.0)
        self.used_tflops = 0.0  # sum over GPUs of received fraction x capacity
        self.busy_gpus = 0  # GPUs with at least one resident
        self._memo: dict[tuple[IsolationMode, tuple[float, ...], tuple[float, ...]], tuple[float, ...]] = {}

    def add(self, w: SimWorker) -> None:
        for g in w.gpu_ids:
            res = self.residents[g]
            if not res:
                self.busy_gpus += 1
                self.busy_price_per_hour += self.price_per_hour[g]
            res.append(w)
            self.vram_used[g] += w.vram_usage

    def remove(self, w: SimWorker) -> None:
        for g in w.gpu_ids:
            res = self.residents[g]
            res.remove(w)
            if not res:
                self.busy_gpus -= 1
                self.busy_price_per_hour -= self.price_per_hour[g]
            self.vram_used[g] -= w.vram_usage
            w.shares.pop(g, None)

    def set_vram(self, w: SimWorker, usage: int) -> None:
        for g in w.gpu_ids:
            self.vram_used[g] += usage - w.vram_usage
        w.vram_usage = usage

    def recompute(self, gpu: str) -> list[SimWorker]:
        """Re-run the isolation model on ``gpu``; return residents whose minimum share changed."""
        res = self.residents[gpu]
        shares: Sequence[float]
        if res:
            mode = res[0].req.isolation
            if mode is IsolationMode.PARTITIONED:
                shares = [min(w.demand, w.slice_fraction) for w in res]
            else:
                shares = self.shares(mode, tuple([w.demand for w in res]), tuple([w.up_limit for w in res]))
        else:
            shares = ()
        return self.set_shares(gpu, shares)

    def shares(
        self, mode: IsolationMode, demands: tuple[float, ...], up_limits: tuple[float, ...]
    ) -> tuple[float, ...]:
        """What workers with these demands and up-limits receive together on one device in ``mode``.

        The isolation model is a pure function of its inputs and a pool sees few distinct mixes, so
        results are remembered (bounded) instead of re-run per event.
        """
        key = (mode, demands, up_limits)
        cached = self._memo.get(key)
        if cached is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            cached = self._memo[key] = tuple(received_shares(mode, demands, up_limits, None, self.erl))
        return cached

    def set_shares(self, gpu: str, shares: Sequence[float]) -> list[SimWorker]:
        """Install the residents' shares on ``gpu``; return those whose minimum share changed."""
        res = self.residents[gpu]
        total = 0.0
        changed: list[SimWorker] = []
        for w, s in zip(res, shares, strict=True):
            total += s
            w.shares[gpu] = s
            new = min(w.shares.values()) if len(w.shares) > 1 else s
            if new != w.share:
                changed.append(w)
        used = total * self.capacity_tflops[gpu]
        self.used_tflops += used - self._used_tflops[gpu]
        self._used_tflops[gpu] = used
        return changed
