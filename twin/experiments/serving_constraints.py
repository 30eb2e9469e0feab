"""Constraints on each served model's metrics: ``serving.<model>.<metric>`` in ``twin plan``.

A pool scenario's ``serving`` workload reports every model under WVA's key ``modelID|namespace``
(summary.json ``serving``; ``twin.sim.serving_pool_report.model_summary``), so a run's flat metric
names look like ``serving.meta-llama/Llama-3.1-8B|llm-chat.slo_attainment``. Model IDs hold dots,
so such a name cannot be split at its dots; instead the part after ``serving.`` is a *selector*
and a metric, split where the selector names at least one model and the rest is a metric that
model reports (the first such split from the left). A selector is

* a model's key (``meta-llama/Llama-3.1-8B|llm-chat``), its namespace (``llm-chat``), its model ID
  (``meta-llama/Llama-3.1-8B``) or the ID's last part (``Llama-3.1-8B``);
* or a glob (``*``, ``?``, ``[...]``) matched against each of those: ``serving.*.slo_attainment``
  means every model.

A constraint whose selector names several models becomes one constraint per model (in the order
the run reports them), so ``serving.*.slo_attainment>=0.95`` holds only when every model meets it.
The models are read from the probe run's names: every model reports its SLO (``slo.ttft_ms``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import replace

from twin.errors import TwinInputError
from twin.experiments.plan import Constraint

PREFIX = "serving."
# Every model's summary carries its SLO: the marker that a ``serving.<key>.`` prefix is a model.
_MARKER = ".slo.ttft_ms"
_GLOB = frozenset("*?[")


def model_keys(names: Iterable[str]) -> list[str]:
    """The served models' keys among a run's metric names, sorted."""
    return sorted({n[len(PREFIX) : -len(_MARKER)] for n in names if n.startswith(PREFIX) and n.endswith(_MARKER)})


def aliases(key: str) -> tuple[str, ...]:
    """The names a selector may use for a model: key, namespace, model ID, the ID's last part."""
    model_id, _, namespace = key.rpartition("|")
    return (key, namespace, model_id, model_id.rpartition("/")[2])


def select(selector: str, keys: Sequence[str]) -> list[str]:
    """The models (keys, in ``keys`` order) that ``selector`` names."""
    if _GLOB & set(selector):
        return [k for k in keys if any(fnmatch.fnmatchcase(a, selector) for a in aliases(k))]
    exact = [k for k in keys if k == selector]
    return exact or [k for k in keys if selector in aliases(k)]


def metrics_of(key: str, names: Iterable[str]) -> set[str]:
    """The metric names (after ``serving.<key>.``) one model reports."""
    head = f"{PREFIX}{key}."
    return {n[len(head) :] for n in names if n.startswith(head)}


def _known(metric: str, reported: set[str]) -> bool:
    # A percentile may be missing from a short probe run (no sample yet): its parent counts.
    if metric in reported:
        return True
    parent = metric.rpartition(".")[0]
    return bool(parent) and any(r.startswith(parent + ".") for r in reported)


def resolve(metric: str, names: set[str], *, scenario: str | None = None) -> list[str]:
    """The concrete metric names a ``serving.<selector>.<metric>`` name stands for.

    Raises a bad-input error listing the models, or the metrics a model reports, when nothing matches.
    """
    keys = model_keys(names)
    field = "--constraint"
    if not keys:
        raise TwinInputError(
            "the scenario serves no models (a pool scenario's `serving` workload reports "
            "serving.<modelID|namespace>.<metric>)",
            file=scenario,
            field=field,
            value=metric,
        )
    rest = metric[len(PREFIX) :]
    first_named: tuple[list[str], str] | None = None
    for i, ch in enumerate(rest):
        if ch != ".":
            continue
        chosen = select(rest[:i], keys)
        if not chosen:
            continue
        tail = rest[i + 1 :]
        if all(_known(tail, metrics_of(k, names)) for k in chosen):
            return [f"{PREFIX}{k}.{tail}" for k in chosen]
        first_named = first_named or (chosen, tail)
    if first_named is None:
        listed = "; ".join(f"{k} (namespace {aliases(k)[1]}, model {aliases(k)[3]})" for k in keys)
        raise TwinInputError(
            f"no served model matches; write serving.<model>.<metric> with <model> a key, namespace, "
            f"model ID or glob (serving.*.slo_attainment). Models: {listed}",
            file=scenario,
            field=field,
            value=metric,
        )
    chosen, tail = first_named
    reported = sorted(set.intersection(*(metrics_of(k, names) for k in chosen)))
    raise TwinInputError(
        f"model {chosen[0]} reports no metric {tail!r}; its metrics: {', '.join(reported)}",
        file=scenario,
        field=field,
        value=metric,
    )


def short(metric: str, keys: Sequence[str]) -> str:
    """``serving.<key>.m`` as ``serving.<namespace>.m`` when that namespace names one model (for tables)."""
    for k in keys:
        head = f"{PREFIX}{k}."
        if metric.startswith(head):
            ns = aliases(k)[1]
            if select(ns, keys) == [k]:
                return f"{PREFIX}{ns}.{metric[len(head) :]}"
    return metric


def expand(constraints: Sequence[Constraint], names: set[str], *, scenario: str | None = None) -> list[Constraint]:
    """Each ``serving.`` constraint as one constraint per model it names; others unchanged."""
    out: list[Constraint] = []
    for c in constraints:
        if not c.metric.startswith(PREFIX) or c.metric in names:
            out.append(c)
            continue
        out.extend(replace(c, metric=m) for m in resolve(c.metric, names, scenario=scenario))
    return list(dict.fromkeys(out))  # two selectors naming one model: keep one constraint
