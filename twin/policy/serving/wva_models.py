"""Which served models of a pool scenario a WVA installation leaves autoscaled, and why not.

A served model is matched to the installation's VariantAutoscalings by ``(namespace, modelID)``,
the seed's ``llmd.namespace`` and ``llmd.modelID``. It is autoscaled when one of its
VariantAutoscalings is reconciled by a controller watching its namespace and has an HPA that can
read the desired replicas (:func:`twin.policy.serving.wva_install.diagnose`). A model the
installation never rendered has no VariantAutoscaling and no HPA, so nothing scales it: it is
reported as not autoscaled, naming what is missing (the file is the cluster's whole WVA story).
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from twin.policy.serving.wva_install import InstallationOutcome, Notice


@dataclass(frozen=True)
class ModelAutoscaling:
    """One served model's verdict: ``reason`` is one line naming the file, object and field."""

    namespace: str
    model_id: str
    active: bool
    reason: str
    notices: tuple[Notice, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"active": self.active, "reason": self.reason}


NO_INSTALLATION = "no WVA installation in the scenario: the model's autoscaler and HPA act as configured"


def models_autoscaling(
    outcome: InstallationOutcome, models: Sequence[tuple[str, str]], source: str
) -> dict[tuple[str, str], ModelAutoscaling]:
    """``(namespace, modelID)`` -> verdict, for every model asked about (in the given order)."""
    out: dict[tuple[str, str], ModelAutoscaling] = {}
    for ns, model_id in models:
        statuses = sorted(
            (m for m in outcome.models if (m.namespace, m.model_id) == (ns, model_id)), key=lambda m: m.variant
        )
        working = [m for m in statuses if m.autoscaled]
        if working:
            va = working[0]
            reason = (
                f"{source}: VariantAutoscaling/{ns}/{va.variant}: spec.modelID={model_id!r}: reconciled by a "
                "controller watching its namespace; its HPA reads the desired replicas"
            )
            out[(ns, model_id)] = ModelAutoscaling(ns, model_id, True, reason)
            continue
        notices = tuple(n for m in statuses for n in m.reasons)
        if not notices:
            notices = (_absent(outcome, ns, model_id, source),)
        out[(ns, model_id)] = ModelAutoscaling(ns, model_id, False, "; ".join(n.render() for n in notices), notices)
    return out


def _absent(outcome: InstallationOutcome, ns: str, model_id: str, source: str) -> Notice:
    message = (
        "no VariantAutoscaling in this namespace has this modelID after the installation's steps (a "
        "model-resources-only release with llmd.namespace and llmd.modelID renders one); nothing scales the model"
    )
    failed = [r for r in outcome.steps if not r.ok]
    if failed:
        first = failed[0]
        message += f"; {first.step.source or source}: helm {first.step.action} {first.step.release}: {first.message}"
    return Notice("error", source, f"VariantAutoscaling/{ns}", "spec.modelID", model_id, message)
