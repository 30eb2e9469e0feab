"""WVA's Helm chart as the twin models it: install modes, what each release renders, Helm ownership.

The seed (the WVA multi-model migration guide) tells two stories this module reproduces:

* **Before chart v0.4.3** the chart always installs the controller *and* one model's resources. A
  second model can only be added by upgrading the same release with the new model's values, which
  renders the new model's VariantAutoscaling/HPA/Service/ServiceMonitor and prunes the old model's:
  model A stops autoscaling. (Installing a second release instead fails, as Helm refuses to adopt the
  controller objects another release owns.)
* **From v0.4.3** ``installMode`` is ``all`` (default), ``controller-only`` or ``model-resources-only``:
  one cluster-wide controller (``wva.namespaceScoped=false``) plus one ``model-resources-only`` release
  per model, each in its own namespace, scale independently.

Its troubleshooting cases are diagnosed from the rendered objects: a namespace-scoped controller
(``--watch-namespace``) that does not watch a model's namespace, and an HPA whose external-metric
selector does not match the labels the controller puts on the desired-replicas series (the HPA then
shows ``<unknown>``). Everything here is pure: no I/O, no clock.

Modelling assumptions (the seed does not give the chart's templates): object names follow the
chart's naming (controller ``workload-variant-autoscaler-controller-manager``, cluster role
``workload-variant-autoscaler-manager-role``, per model ``<llmd.modelName>-decode`` VA, HPA and
``<llmd.modelName>-vllm`` Service/ServiceMonitor); ``wva.namespaceScoped`` defaults to true and a
namespace-scoped controller watches ``llmd.namespace`` (else its release namespace); charts before
v0.5.0 emit ``inferno_desired_replicas``, later ones ``wva_desired_replicas``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from twin.spec.wva_install import HelmStep, KubeObject

CONTROLLER_NAME = "workload-variant-autoscaler-controller-manager"
CLUSTER_ROLE_NAME = "workload-variant-autoscaler-manager-role"
INSTALL_MODES = ("all", "controller-only", "model-resources-only")
MODES_SINCE = (0, 4, 3)
WVA_METRIC_SINCE = (0, 5, 0)
DEFAULTS: dict[str, str] = {
    "installMode": "all",
    "controller.enabled": "true",
    "wva.namespaceScoped": "true",
    "wva.controllerInstance": "",
    "wva.prometheus.baseURL": "",
    "wva.prometheus.tls.insecureSkipVerify": "false",
    "wva.prometheus.caCert": "",
    "llmd.namespace": "",
    "llmd.modelName": "ms-llm-d-modelservice",
    "llmd.modelID": "",
    "va.enabled": "true",
    "va.accelerator": "",
    "va.sloTpot": "",
    "va.sloTtft": "",
    "hpa.enabled": "true",
    "hpa.minReplicas": "1",
    "hpa.maxReplicas": "10",
    "vllmService.enabled": "true",
    "vllmService.nodePort": "",
    "vllmService.interval": "15s",
}


@dataclass(frozen=True)
class Notice:
    """A diagnostic: the object and field it is about, the value found, and what it means."""

    severity: Literal["error", "warning"]
    source: str
    obj: str
    field_path: str
    value: str
    message: str

    def render(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.obj}: {self.field_path}={self.value!r}: {self.message}"


def effective_values(step: HelmStep) -> tuple[dict[str, str], list[Notice]]:
    """Defaults overlaid with the step's values; unknown keys and pre-v0.4.3 ``installMode`` are noticed."""
    notices: list[Notice] = []
    values = dict(DEFAULTS)
    obj = f"HelmRelease/{step.namespace}/{step.release}"
    for key, value in sorted(step.values.items()):
        if key not in DEFAULTS:
            notices.append(
                Notice("warning", step.source, obj, key, value, "not a value of the WVA chart; Helm ignores it")
            )
            continue
        if key == "installMode" and step.chart_version < MODES_SINCE:
            notices.append(
                Notice(
                    "warning",
                    step.source,
                    obj,
                    key,
                    value,
                    "install modes exist from chart v0.4.3; this chart installs the controller and the model's "
                    "resources together whatever is set",
                )
            )
            continue
        values[key] = value
    if values["installMode"] not in INSTALL_MODES:
        notices.append(
            Notice("error", step.source, obj, "installMode", values["installMode"], f"must be one of {INSTALL_MODES}")
        )
        values["installMode"] = "all"
    return values, notices


def _true(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes", "on")


def render(step: HelmStep) -> tuple[list[KubeObject], list[Notice]]:
    """The objects one release of the chart renders with these values."""
    values, notices = effective_values(step)
    mode = values["installMode"]
    if not _true(values["controller.enabled"]):  # PR #747's "client-only" switch, same effect
        mode = "model-resources-only"
    objects: list[KubeObject] = []
    metric = "wva_desired_replicas" if step.chart_version >= WVA_METRIC_SINCE else "inferno_desired_replicas"
    if mode in ("all", "controller-only"):
        watch = ""
        if _true(values["wva.namespaceScoped"]):
            watch = values["llmd.namespace"] or step.namespace
        objects.append(
            KubeObject(
                "Deployment",
                step.namespace,
                CONTROLLER_NAME,
                {
                    "args.watch-namespace": watch,
                    "metric": metric,
                    "controller_instance": values["wva.controllerInstance"],
                    "prometheus.baseURL": values["wva.prometheus.baseURL"],
                },
            )
        )
        objects.append(KubeObject("ClusterRole", "", CLUSTER_ROLE_NAME))
    if mode in ("all", "model-resources-only"):
        objects += _model_objects(values, step, metric, notices)
    return objects, notices


def _model_objects(values: Mapping[str, str], step: HelmStep, metric: str, notices: list[Notice]) -> list[KubeObject]:
    ns = values["llmd.namespace"] or step.namespace
    model = values["llmd.modelName"]
    va_name = f"{model}-decode"
    out: list[KubeObject] = []
    if _true(values["va.enabled"]):
        if not values["llmd.modelID"]:
            notices.append(
                Notice(
                    "error",
                    step.source,
                    f"VariantAutoscaling/{ns}/{va_name}",
                    "llmd.modelID",
                    "",
                    "a VariantAutoscaling needs spec.modelID; set llmd.modelID",
                )
            )
        out.append(
            KubeObject(
                "VariantAutoscaling",
                ns,
                va_name,
                {
                    "spec.modelID": values["llmd.modelID"],
                    "accelerator": values["va.accelerator"],
                    "slo.tpot_ms": values["va.sloTpot"],
                    "slo.ttft_ms": values["va.sloTtft"],
                    "scaleTargetRef.name": va_name,
                },
                {"inference.optimization/acceleratorName": values["va.accelerator"]},
            )
        )
    if _true(values["hpa.enabled"]):
        selector = {"variant_name": va_name, "exported_namespace": ns}
        if values["wva.controllerInstance"]:
            selector["controller_instance"] = values["wva.controllerInstance"]
        out.append(
            KubeObject(
                "HorizontalPodAutoscaler",
                ns,
                va_name,
                {
                    "spec.scaleTargetRef.name": va_name,
                    "spec.minReplicas": values["hpa.minReplicas"],
                    "spec.maxReplicas": values["hpa.maxReplicas"],
                    "spec.metrics[0].external.metric.name": metric,
                    **{f"spec.metrics[0].external.metric.selector.matchLabels.{k}": v for k, v in selector.items()},
                },
            )
        )
    if _true(values["vllmService.enabled"]):
        svc = f"{model}-vllm"
        out.append(KubeObject("Service", ns, svc, {"spec.ports[0].nodePort": values["vllmService.nodePort"]}))
        out.append(
            KubeObject("ServiceMonitor", ns, svc, {"spec.endpoints[0].interval": values["vllmService.interval"]})
        )
    return out


@dataclass
class Cluster:
    """Objects in the cluster with the Helm release owning each, and the releases' rendered sets."""

    objects: dict[tuple[str, str, str], KubeObject] = field(default_factory=dict)
    owner: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)
    releases: dict[tuple[str, str], list[tuple[str, str, str]]] = field(default_factory=dict)
    extra: list[KubeObject] = field(default_factory=list)  # plain manifests applied beside Helm

    def all_objects(self) -> list[KubeObject]:
        return [self.objects[k] for k in sorted(self.objects)] + list(self.extra)


@dataclass(frozen=True)
class StepResult:
    step: HelmStep
    ok: bool
    message: str
    created: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


def apply(cluster: Cluster, step: HelmStep) -> tuple[StepResult, list[Notice]]:
    """Helm's semantics: ``install`` refuses objects owned by another release or an existing release name;
    ``upgrade`` replaces the release's object set (pruning what it no longer renders); ``uninstall``
    deletes what the release owns."""
    rel = (step.namespace, step.release)
    if step.action == "uninstall":
        keys = cluster.releases.pop(rel, None)
        if keys is None:
            return StepResult(
                step, False, f"Error: uninstall: Release not loaded: {step.release}: release: not found"
            ), []
        for key in keys:
            cluster.objects.pop(key, None)
            cluster.owner.pop(key, None)
        return StepResult(step, True, f'release "{step.release}" uninstalled', deleted=_refs(keys)), []
    exists = rel in cluster.releases
    if step.action == "install" and exists:
        return StepResult(step, False, "Error: INSTALLATION FAILED: cannot re-use a name that is still in use"), []
    if step.action == "upgrade" and not exists and not step.install_if_missing:
        return StepResult(step, False, f'Error: UPGRADE FAILED: "{step.release}" has no deployed releases'), []
    rendered, notices = render(step)
    for obj in rendered:
        owner = cluster.owner.get(obj.key)
        if owner is not None and owner != rel:
            verb = "INSTALLATION" if step.action == "install" or not exists else "UPGRADE"
            where = f' in namespace "{obj.namespace}"' if obj.namespace else ""
            return (
                StepResult(
                    step,
                    False,
                    f"Error: {verb} FAILED: rendered manifests contain a resource that already exists. Unable to "
                    f'continue: {obj.kind} "{obj.name}"{where} exists and cannot be imported into the current '
                    f"release: invalid ownership metadata; annotation validation error: key "
                    f'"meta.helm.sh/release-name" must equal "{step.release}": current value is "{owner[1]}"',
                ),
                notices,
            )
    old = cluster.releases.get(rel, [])
    new_keys = [o.key for o in rendered]
    pruned = [k for k in old if k not in set(new_keys)]
    for key in pruned:
        cluster.objects.pop(key, None)
        cluster.owner.pop(key, None)
    for obj in rendered:
        cluster.objects[obj.key] = obj
        cluster.owner[obj.key] = rel
    cluster.releases[rel] = new_keys
    created = [k for k in new_keys if k not in set(old)]
    verb = "installed" if not exists else "upgraded"
    return StepResult(step, True, f'release "{step.release}" {verb}', _refs(created), _refs(pruned)), notices


def _refs(keys: Sequence[tuple[str, str, str]]) -> tuple[str, ...]:
    return tuple(f"{k}/{ns}/{n}" if ns else f"{k}/{n}" for k, ns, n in keys)


@dataclass(frozen=True)
class ModelStatus:
    """Whether a model's VariantAutoscaling is reconciled and its HPA can read the desired replicas."""

    namespace: str
    variant: str
    model_id: str
    autoscaled: bool
    reasons: tuple[Notice, ...]


def diagnose(cluster: Cluster, source: str = "") -> list[ModelStatus]:
    """Per VariantAutoscaling: a controller watching its namespace, and an HPA reading its series."""
    objects = cluster.all_objects()
    controllers = [o for o in objects if o.kind == "Deployment" and o.name == CONTROLLER_NAME]
    statuses: list[ModelStatus] = []
    for va in (o for o in objects if o.kind == "VariantAutoscaling"):
        reasons: list[Notice] = []
        watching = [c for c in controllers if c.fields.get("args.watch-namespace", "") in ("", va.namespace)]
        if not controllers:
            reasons.append(Notice("error", source, va.ref, "(controller)", "", "no WVA controller is installed"))
        elif not watching:
            for c in controllers:
                reasons.append(
                    Notice(
                        "error",
                        source,
                        c.ref,
                        "spec.template.spec.containers[0].args --watch-namespace",
                        c.fields["args.watch-namespace"],
                        f"the controller only watches this namespace, not {va.namespace!r}; reinstall it with "
                        "wva.namespaceScoped=false",
                    )
                )
        hpas = [
            h
            for h in objects
            if h.kind == "HorizontalPodAutoscaler"
            and h.namespace == va.namespace
            and h.fields.get("spec.scaleTargetRef.name") == va.fields.get("scaleTargetRef.name")
        ]
        if not hpas:
            reasons.append(
                Notice("error", source, va.ref, "(HPA)", "", "no HPA scales this variant; nothing acts on the decision")
            )
        for hpa in hpas:
            reasons += _selector_notices(hpa, va, watching or controllers, source)
        statuses.append(
            ModelStatus(va.namespace, va.name, va.fields.get("spec.modelID", ""), not reasons, tuple(reasons))
        )
    return statuses


def _selector_notices(hpa: KubeObject, va: KubeObject, controllers: Sequence[KubeObject], source: str) -> list[Notice]:
    """The HPA shows ``<unknown>`` unless some controller emits its metric with labels its selector matches."""
    prefix = "spec.metrics[0].external.metric.selector.matchLabels."
    selector = {k[len(prefix) :]: v for k, v in hpa.fields.items() if k.startswith(prefix)}
    wanted = hpa.fields.get("spec.metrics[0].external.metric.name", "")
    best: list[Notice] | None = None
    for c in controllers:
        emitted = {"variant_name": va.name, "exported_namespace": va.namespace}
        if c.fields.get("controller_instance"):
            emitted["controller_instance"] = c.fields["controller_instance"]
        found: list[Notice] = []
        if wanted != c.fields.get("metric"):
            found.append(
                Notice(
                    "error",
                    source,
                    hpa.ref,
                    "spec.metrics[0].external.metric.name",
                    wanted,
                    f"the controller emits {c.fields.get('metric')}; the HPA shows <unknown> for its external metric",
                )
            )
        for key in sorted(set(selector) | ({"controller_instance"} & set(emitted))):
            if selector.get(key) != emitted.get(key):
                found.append(
                    Notice(
                        "error",
                        source,
                        hpa.ref,
                        prefix + key,
                        selector.get(key, "(missing)"),
                        f"the series carries {key}={emitted.get(key, '(no such label)')!r}; the selector matches "
                        "nothing and the HPA shows <unknown> for its external metric",
                    )
                )
        if best is None or len(found) < len(best):
            best = found
    return best or []


@dataclass(frozen=True)
class InstallationOutcome:
    """What a sequence of Helm steps leaves: each step's result, every notice, each model's status."""

    steps: tuple[StepResult, ...]
    notices: tuple[Notice, ...]
    models: tuple[ModelStatus, ...]
    objects: tuple[KubeObject, ...]

    @property
    def failed(self) -> bool:
        return any(not s.ok for s in self.steps) or any(n.severity == "error" for n in self.notices)

    @property
    def autoscaled(self) -> dict[str, bool]:
        """``namespace/variant`` -> whether WVA scales it."""
        return {f"{m.namespace}/{m.variant}": m.autoscaled for m in self.models}


def run_installation(
    steps: Sequence[HelmStep], manifests: Sequence[KubeObject] = (), source: str = ""
) -> InstallationOutcome:
    """Apply the steps in order (a failed step changes nothing, as Helm), then diagnose every model."""
    cluster = Cluster(extra=list(manifests))
    results: list[StepResult] = []
    notices: list[Notice] = []
    seen: dict[str, KubeObject] = {}  # every VariantAutoscaling that ever existed, by ref
    deleted_by: dict[str, str] = {}
    for step in steps:
        result, found = apply(cluster, step)
        results.append(result)
        notices += found
        for ref in result.deleted:
            deleted_by[ref] = step.source or f"helm {step.action} {step.release}"
        for obj in cluster.objects.values():
            if obj.kind == "VariantAutoscaling":
                seen[obj.ref] = obj
                deleted_by.pop(obj.ref, None)
    models = diagnose(cluster, source)
    present = {f"VariantAutoscaling/{m.namespace}/{m.variant}" for m in models}
    for ref, va in sorted(seen.items()):
        if ref not in present:
            gone = Notice(
                "error",
                deleted_by.get(ref, source),
                ref,
                "(object)",
                "deleted",
                "this model's VariantAutoscaling was deleted by a later Helm step; WVA no longer scales it",
            )
            models.append(ModelStatus(va.namespace, va.name, va.fields.get("spec.modelID", ""), False, (gone,)))
    return InstallationOutcome(tuple(results), tuple(notices), tuple(models), tuple(cluster.all_objects()))
