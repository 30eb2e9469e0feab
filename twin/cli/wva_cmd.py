"""``twin wva check``: what a sequence of WVA Helm installs leaves in the cluster, and which models scale."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from twin.policy.serving.wva_install import InstallationOutcome, run_installation
from twin.spec.wva_install import load_installation


@click.group()
def wva() -> None:
    """WVA installation: Helm install modes, per-model resources, the seed's troubleshooting cases."""


@wva.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def check(files: tuple[Path, ...], as_json: bool) -> None:
    """Replay each WVAInstallation file's Helm steps and say which models WVA autoscales.

    Exit 0 when every step succeeds and every model is autoscaled; 1 when a step fails or a model is
    not autoscaled (each reason names the object, the field and the value); 2 on bad input.
    """
    outcomes = {str(f): _outcome(f) for f in files}
    if as_json:
        click.echo(json.dumps({f: _as_dict(o) for f, o in outcomes.items()}, indent=2, sort_keys=True))
    else:
        console = Console()
        for file, outcome in outcomes.items():
            _print(console, file, outcome)
    if any(o.failed or not all(m.autoscaled for m in o.models) for o in outcomes.values()):
        raise SystemExit(1)


def _outcome(path: Path) -> InstallationOutcome:
    installation = load_installation(path)
    return run_installation(installation.steps, installation.manifests, source=path.name)


def _as_dict(outcome: InstallationOutcome) -> dict[str, object]:
    return {
        "steps": [
            {
                "action": r.step.action,
                "release": r.step.release,
                "namespace": r.step.namespace,
                "ok": r.ok,
                "message": r.message,
                "created": list(r.created),
                "deleted": list(r.deleted),
            }
            for r in outcome.steps
        ],
        "notices": [n.render() for n in outcome.notices],
        "models": [
            {
                "namespace": m.namespace,
                "variant": m.variant,
                "model_id": m.model_id,
                "autoscaled": m.autoscaled,
                "reasons": [
                    {"object": n.obj, "field": n.field_path, "value": n.value, "message": n.message} for n in m.reasons
                ],
            }
            for m in outcome.models
        ],
        "objects": [o.ref for o in outcome.objects],
    }


def _print(console: Console, file: str, outcome: InstallationOutcome) -> None:
    console.print(f"[bold]{file}[/bold]")
    for r in outcome.steps:
        mark = "ok " if r.ok else "FAIL"
        console.print(
            f"  {mark} helm {r.step.action} {r.step.release} -n {r.step.namespace}: {r.message}", markup=False
        )
        for ref in r.deleted:
            console.print(f"       deleted {ref}", markup=False)
    for n in outcome.notices:
        console.print(f"  {n.severity}: {n.render()}", markup=False)
    table = Table("namespace", "variant", "model", "autoscaled")
    for m in outcome.models:
        table.add_row(m.namespace, m.variant, m.model_id, "yes" if m.autoscaled else "NO")
    if not outcome.models:
        console.print("  no VariantAutoscaling was ever installed")
        return
    console.print(table)
    for m in outcome.models:
        for n in m.reasons:
            console.print(f"  {m.namespace}/{m.variant} is not autoscaled: {n.render()}", markup=False, soft_wrap=True)
