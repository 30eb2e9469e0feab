"""``twin validate`` and ``twin spec``: check manifests, show the normalised vGPU requests."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from twin import yamlsafe
from twin.cli.validate_scenario import is_pool_scenario, validate_pool_scenarios
from twin.errors import EXIT_INPUT, TwinInputError, TwinInputErrors
from twin.policy.serving.wva_install import run_installation
from twin.resources import Resource
from twin.spec import SpecBundle, WorkerSpec, load_documents_lenient
from twin.spec.wva import load_wva_documents
from twin.spec.wva_install import load_installation
from twin.units import format_bytes_short, format_percent, format_tflops, parse_bytes, parse_tflops


class _CatalogCapacity(Mapping[str, Resource]):
    """Model capacities from the hardware catalogue (``twin.hardware``), by key or alias."""

    def __init__(self) -> None:
        self._catalog: Any = None

    def _get(self) -> Any:
        # Read the profiles only when a dedicated-gpu pod needs one; twin.hardware is optional.
        if self._catalog is None:
            from twin.hardware import default_catalog

            self._catalog = default_catalog()
        return self._catalog

    def __getitem__(self, model: str) -> Resource:
        profile = self._get().find(model)
        if profile is None:
            raise KeyError(model)
        return Resource(tflops=float(profile.fp16_tflops), vram=int(profile.vram_bytes))

    def __iter__(self) -> Iterator[str]:
        return iter(self._get().keys())

    def __len__(self) -> int:
        return len(self._get().keys())


class _Capacities(Mapping[str, Resource]):
    """``--model-capacity`` values first, then the hardware catalogue."""

    def __init__(self, given: Mapping[str, Resource], catalog: Mapping[str, Resource] | None) -> None:
        self._given = given
        self._catalog = catalog

    def __getitem__(self, model: str) -> Resource:
        if model in self._given:
            return self._given[model]
        if self._catalog is None:
            raise KeyError(model)
        return self._catalog[model]

    def __iter__(self) -> Iterator[str]:
        yield from self._given
        if self._catalog is not None:
            yield from (k for k in self._catalog if k not in self._given)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _capacities(options: Sequence[str]) -> Mapping[str, Resource]:
    given: dict[str, Resource] = {}
    for option in options:
        model, sep, rest = option.partition("=")
        tflops, comma, vram = rest.partition(",")
        if not sep or not comma or not model:
            raise TwinInputError(
                "expected MODEL=TFLOPS,VRAM such as A100=312,80Gi", field="--model-capacity", value=option
            )
        given[model] = Resource(
            tflops=parse_tflops(tflops, field="--model-capacity"), vram=parse_bytes(vram, field="--model-capacity")
        )
    catalog = _CatalogCapacity() if importlib.util.find_spec("twin.hardware") is not None else None
    return _Capacities(given, catalog)


def _flatten(errors: Sequence[TwinInputError]) -> list[TwinInputError]:
    out: list[TwinInputError] = []
    for err in errors:
        out.extend(_flatten(err.errors) if isinstance(err, TwinInputErrors) else [err])
    return out


def _check(
    files: Sequence[str], capacity_options: Sequence[str]
) -> tuple[SpecBundle, list[tuple[str, WorkerSpec]], list[TwinInputError]]:
    bundle, errors = load_documents_lenient(files)
    specs, spec_errors = bundle.check(_capacities(capacity_options))
    return bundle, specs, _flatten([*errors, *spec_errors])


_FILES = click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=str))
_CAPACITY = click.option(
    "--model-capacity",
    "capacity_options",
    multiple=True,
    metavar="MODEL=TFLOPS,VRAM",
    help="Per-device capacity for dedicated-gpu pods, e.g. A100=312,80Gi (GPU objects and the hardware "
    "catalogue are used first for models not given here).",
)


def _belongs(path: str, file: str | None) -> bool:
    if file is None:
        return False
    p, f = Path(path), Path(file)
    return f == p or p in f.parents


@click.command()
@_FILES
@_CAPACITY
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def validate(files: tuple[str, ...], capacity_options: tuple[str, ...], strict: bool) -> None:
    """Check Kubernetes/TensorFusion manifests: schema, quantities, and the webhook's rules.

    Prints one OK line per valid file; otherwise every error (file:line, object, field, value)
    and exits 1. Warnings (unknown tensor-fusion.ai annotations, no-op settings) do not fail
    unless --strict. WVAInstallation files are replayed (as `twin wva check`); a pool scenario is
    checked and its serving models' WVA installation replayed (a model left unscaled is a warning).
    """
    wva_failed = _validate_wva_files(wva_files := [f for f in files if _wva_kind(f)], strict)
    scenarios = [f for f in files if f not in wva_files and is_pool_scenario(f)]
    wva_failed = validate_pool_scenarios(scenarios, strict) or wva_failed
    files = tuple(f for f in files if f not in wva_files and f not in scenarios)
    if not files:
        if wva_failed:
            raise SystemExit(1)
        return
    bundle, specs, errors = _check(files, capacity_options)
    warnings = [w.render() for w in bundle.warnings]
    warnings += [f"{bundle.file_of(obj) or '<input>'}: {obj}: {w}" for obj, spec in specs for w in spec.warnings]
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    for err in errors:
        click.echo(f"error: {err.render()}", err=True)
    failed_files = {f for f in files if any(_belongs(f, e.file) for e in errors)}
    for f in files:
        if f not in failed_files:
            objects = sum(1 for o in bundle.origins.values() if _belongs(f, o.file))
            workers = sum(1 for obj, _ in specs if _belongs(f, bundle.file_of(obj)))
            click.echo(
                f"OK {f}: {objects} object{'s' * (objects != 1)}, "
                f"{workers} TensorFusion pod template{'s' * (workers != 1)}"
            )
    if errors or (strict and warnings) or wva_failed:
        raise SystemExit(1)


_WVA_OBJECT_KINDS = {"VariantAutoscaling", "HorizontalPodAutoscaler", "ConfigMap"}


def _wva_kind(path: str) -> str | None:
    """``install`` for a WVAInstallation file, ``objects`` for a file of only WVA objects, else None.

    Unreadable files return None so the manifest loader reports them with its full context."""
    try:
        docs = [d for d in yamlsafe.load_file_all(path, what="manifest file") if d is not None]
    except TwinInputError:
        return None
    kinds = {d.get("kind") for d in docs if isinstance(d, dict)}
    if kinds == {"WVAInstallation"}:
        return "install"
    # the manifest loader knows none of these kinds: a file of only WVA objects goes to the WVA loader
    return "objects" if docs and kinds <= _WVA_OBJECT_KINDS else None


def _validate_wva_files(files: Sequence[str], strict: bool) -> bool:
    """WVA objects through the WVA loader; installation files through the Helm model and its diagnosis.

    Returns whether any of them failed (an error, a model WVA would not scale, or a warning with --strict)."""
    failed = False
    for f in files:
        try:
            if _wva_kind(f) == "objects":
                wva_bundle = load_wva_documents([f])
                click.echo(
                    f"OK {f}: {len(wva_bundle.variants)} VariantAutoscaling, {len(wva_bundle.hpas)} HPA, "
                    f"{len(wva_bundle.accelerator_costs)} accelerator cost, "
                    f"{len(wva_bundle.service_classes)} service class"
                )
                continue
            installation = load_installation(Path(f))
        except TwinInputError as err:
            for e in _flatten([err]):
                click.echo(f"error: {e.render()}", err=True)
            failed = True
            continue
        outcome = run_installation(installation.steps, installation.manifests, source=f)
        problems = [
            f"{r.step.source}: helm {r.step.action} {r.step.release}: {r.message}" for r in outcome.steps if not r.ok
        ]
        problems += [n.render() for n in outcome.notices if n.severity == "error"]
        problems += [n.render() for m in outcome.models for n in m.reasons]
        warnings = [n.render() for n in outcome.notices if n.severity == "warning"]
        for w in warnings:
            click.echo(f"warning: {w}", err=True)
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        if problems or (strict and warnings):
            failed = True
        else:
            click.echo(f"OK {f}: {len(outcome.steps)} Helm steps, {len(outcome.models)} models autoscaled")
    return failed


def _resource_cell(r: Resource) -> str:
    if r.compute_percent > 0 and r.tflops == 0:
        return format_percent(r.compute_percent)
    return format_tflops(r.tflops)


@click.command()
@_FILES
@_CAPACITY
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def spec(files: tuple[str, ...], capacity_options: tuple[str, ...], as_json: bool) -> None:
    """Show the normalised vGPU request of every TensorFusion-enabled pod and pod template."""
    _, specs, errors = _check(files, capacity_options)
    if errors:
        for err in errors:
            click.echo(f"error: {err.render()}", err=True)
        raise SystemExit(EXIT_INPUT)  # spec answers a question about valid input; validate's "no" is its verdict
    if as_json:
        click.echo(json.dumps([{"object": obj, **s.to_dict()} for obj, s in specs], indent=2))
        return
    table = Table(title="Normalised vGPU requests (per GPU device)")
    for column in ("object", "pool", "qos", "isolation", "gpus", "compute req/lim", "vram req/lim", "local", "extras"):
        table.add_column(column, justify="right" if column == "gpus" else "left")
    for obj, s in specs:
        extras = []
        if s.enabled_replicas is not None:
            extras.append(f"canary {s.enabled_replicas}/{s.replicas}")
        if s.autoscale.enabled:
            extras.append(f"autoscale {s.autoscale.target}")
        if s.gang.enabled:
            extras.append(f"gang {s.gang.min_members}")
        if s.dedicated_gpu:
            extras.append(f"dedicated {s.gpu_model}")
        if s.partition_template:
            extras.append(f"partition {s.partition_template}")
        table.add_row(
            obj,
            s.pool,
            f"{s.qos.value} ({s.qos_source})",
            s.isolation.value,
            str(s.gpu_count),
            f"{_resource_cell(s.request)} / {_resource_cell(s.limit)}",
            f"{format_bytes_short(s.request.vram)} / {format_bytes_short(s.limit.vram)}",
            "yes" if s.is_local_gpu else "no",
            ", ".join(extras),
        )
    Console(width=200).print(table)
