"""A pool scenario's ``serving.installation``: read the WVA installation file, replay its Helm steps
and say which served models it leaves autoscaled (twin.policy.serving.wva_models).

Used when the serving source installs its models (a model not autoscaled keeps its replicas) and by
``twin validate`` on a scenario (the same diagnostics). Paths are relative to the scenario file.
"""

from __future__ import annotations

from pathlib import Path

from twin.errors import TwinInputError
from twin.policy.serving.wva_install import run_installation
from twin.policy.serving.wva_models import ModelAutoscaling, models_autoscaling
from twin.scenario import ServingSection
from twin.spec.wva_install import load_installation


def installation_autoscaling(
    section: ServingSection, base: Path, scenario_file: str, where: str
) -> dict[tuple[str, str], ModelAutoscaling] | None:
    """``(namespace, modelID)`` -> verdict for each model of ``section``; None without an installation.

    ``where`` is the field path of ``installation`` in the scenario, for the error when the file is missing."""
    if section.installation is None:
        return None
    name = section.installation
    path = Path(name) if Path(name).is_absolute() else base / name
    if not path.is_file():
        raise TwinInputError("no such WVA installation file", file=scenario_file, field=where, value=name)
    try:
        installation = load_installation(path)
    except TwinInputError as err:  # name the scenario field that points at the file too
        raise err.located(obj=f"the WVA installation of {scenario_file} ({where})") from err
    # Notices name the file as the scenario wrote it, so the summary does not depend on the working folder.
    outcome = run_installation(installation.steps, installation.manifests, source=name)
    return models_autoscaling(outcome, [(m.model.namespace, m.model.id) for m in section.models], name)
