"""``twin validate`` on pool scenarios: the schema and limits, then each serving workload's WVA
installation replayed, printing why a model is not autoscaled (file, object, field, value).

A model left unscaled is a warning, not an error: the scenario is valid and simulates exactly that
(the model keeps its replicas); ``--strict`` fails on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from twin import yamlsafe
from twin.errors import TwinInputError, TwinInputErrors
from twin.scenario import ServingWorkload, load_scenario
from twin.sim.serving_install import installation_autoscaling


def is_pool_scenario(path: str) -> bool:
    """A YAML mapping with ``pools`` and no ``kind`` (manifests have a kind, serving scenarios no pools)."""
    try:
        data = yamlsafe.load_file(path, what="scenario")
    except TwinInputError:
        return False  # the manifest loader reports it with its full context
    return isinstance(data, dict) and "pools" in data and "kind" not in data


def validate_pool_scenarios(files: Sequence[str], strict: bool) -> bool:
    """Print OK or the errors and warnings of each scenario; return whether any failed."""
    failed = False
    for f in files:
        try:
            warnings, served, active = _check(f)
        except TwinInputError as err:
            errors = err.errors if isinstance(err, TwinInputErrors) else [err]
            for e in errors:
                click.echo(f"error: {e.render()}", err=True)
            failed = True
            continue
        for w in warnings:
            click.echo(f"warning: {w}", err=True)
        if strict and warnings:
            failed = True
        else:
            click.echo(f"OK {f}: pool scenario, {served} served models, {active} autoscaled")
    return failed


def _check(file: str) -> tuple[list[str], int, int]:
    loaded = load_scenario(file)
    base = Path(file).parent
    warnings: list[str] = []
    served = active = 0
    for i, wl in enumerate(loaded.scenario.workloads):
        if not isinstance(wl, ServingWorkload):
            continue
        where = f"workloads.{i}.serving.installation"
        verdicts = installation_autoscaling(wl.serving, base, file, where)
        served += len(wl.serving.models)
        if verdicts is None:
            active += len(wl.serving.models)
            continue
        for (ns, model_id), v in verdicts.items():
            active += v.active
            for n in v.notices:
                warnings.append(f"{file}: {where}: model {model_id} in {ns} is not autoscaled: {n.render()}")
    return warnings, served, active
