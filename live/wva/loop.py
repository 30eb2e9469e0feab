"""The live WVA loop: every interval, each model's observation from Prometheus goes through the
same autoscaler object the simulator runs, and the desired replicas are published.

One autoscaler instance per model (``modelID|namespace``), as in ``twin.sim.serving.run_models``.
A model whose metrics are missing or stale is skipped for the cycle and the previous desired
value (else the current replicas) is kept, like WVA's safety net (semantics 4.3). Actuation
(patching the Deployment's scale subresource) happens only when a scaler is given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from live.wva.observe import WVA_MAX_AGE_S, ReplicaCount, observe_model
from live.wva.prom import NoMetrics, PromClient, PrometheusError, StaleMetrics
from twin.policy.serving.autoscalers import Autoscaler
from twin.policy.serving.observation import ModelObservation, VariantInfo, group_by_model


@dataclass(frozen=True)
class Cycle:
    """One model at one cycle: what was observed (None when skipped) and what was emitted."""

    t: float
    model: str
    observation: ModelObservation | None
    desired: dict[str, int]
    skipped: str | None = None
    scaled: tuple[tuple[str, int], ...] = ()  # (variant, replicas) patched this cycle


class Scaler(Protocol):
    """Writes replicas to a variant's scale target (Deployment ``/scale``)."""

    def set_replicas(self, namespace: str, variant: str, replicas: int) -> None: ...


@dataclass
class VariantState:
    info: VariantInfo
    desired: int | None = None
    current: int = 0
    scale_up: int = 0
    scale_down: int = 0


class WvaLoop:
    def __init__(
        self,
        client: PromClient,
        variants: Sequence[VariantInfo],
        make_autoscaler: Callable[[], Autoscaler],
        *,
        counts: Callable[[], Mapping[tuple[str, str], ReplicaCount]] | None = None,
        scaler: Scaler | None = None,
        retention_s: float = 600.0,
        max_age_s: float = WVA_MAX_AGE_S,
        controller_instance: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.groups = group_by_model(variants)
        self.scalers = {key: make_autoscaler() for key in self.groups}
        self.interval_s = next(iter(self.scalers.values())).interval_s if self.scalers else 60.0
        self.counts = counts
        self.scaler = scaler
        self.retention_s = retention_s
        self.max_age_s = max_age_s
        self.controller_instance = controller_instance
        self.clock = clock
        self.lock = threading.Lock()
        self.state = {(v.namespace, v.name): VariantState(v, current=v.current) for v in variants}
        self.history: list[Cycle] = []

    def cycle(self, at: float | None = None) -> list[Cycle]:
        """One pass over every model, in key order. Raises PrometheusUnreachable (nothing changes)."""
        t = self.clock() if at is None else at
        counts = dict(self.counts()) if self.counts is not None else {}
        out: list[Cycle] = []
        for key, group in self.groups.items():
            ns = group[0].namespace
            model_counts = {v.name: counts[(ns, v.name)] for v in group if (ns, v.name) in counts}
            last = {v.name: d for v in group if (d := self.state[(ns, v.name)].desired) is not None}
            try:
                obs = observe_model(
                    self.client,
                    group,
                    t,
                    retention_s=self.retention_s,
                    max_age_s=self.max_age_s,
                    counts=model_counts,
                    desired=last,
                )
            except (NoMetrics, StaleMetrics) as err:
                kept = {v.name: self._kept(ns, v, model_counts) for v in group}
                out.append(Cycle(t, key, None, kept, skipped=str(err)))
                continue
            desired = self.scalers[key].decide(t, obs)
            out.append(Cycle(t, key, obs, dict(desired), scaled=self._apply(ns, obs, desired)))
        with self.lock:
            for c in out:
                ns = c.model.rsplit("|", 1)[1]
                for name, n in c.desired.items():
                    st = self.state[(ns, name)]
                    if c.observation is not None:
                        st.current = next(v.current for v in c.observation.variants if v.name == name)
                    if st.desired is not None and n > st.desired:
                        st.scale_up += 1
                    elif st.desired is not None and n < st.desired:
                        st.scale_down += 1
                    st.desired = n
            self.history.extend(out)
        return out

    def _kept(self, ns: str, v: VariantInfo, counts: Mapping[str, ReplicaCount]) -> int:
        st = self.state[(ns, v.name)]
        if st.desired is not None:
            return st.desired
        return counts[v.name].current if v.name in counts else st.current

    def _apply(self, ns: str, obs: ModelObservation, desired: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
        if self.scaler is None:
            return ()
        done = []
        for v in obs.variants:
            n = desired.get(v.name)
            if n is not None and n != v.current:
                self.scaler.set_replicas(ns, v.name, n)
                done.append((v.name, n))
        return tuple(done)

    def run(
        self,
        stop: threading.Event,
        *,
        cycles: int | None = None,
        on_cycle: Callable[[list[Cycle]], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> int:
        """Cycle every ``interval_s`` until ``stop`` or after ``cycles`` attempts; Prometheus errors go to
        ``on_error`` (the loop keeps trying, like the controller). Returns the number of cycles that ran."""
        done = attempts = 0
        while not stop.is_set() and (cycles is None or attempts < cycles):
            started = self.clock()
            attempts += 1
            try:
                result = self.cycle()
                done += 1
                if on_cycle is not None:
                    on_cycle(result)
            except PrometheusError as err:
                if on_error is None:
                    raise
                on_error(err)
            if cycles is not None and attempts >= cycles:
                break
            stop.wait(max(self.interval_s - (self.clock() - started), 0.0))
        return done
