"""WVA inputs a person writes: VariantAutoscaling, its ConfigMaps and the HPA that actuates it.

Read from multi-document YAML (``load_wva_documents``). Supported objects:

* ``llmd.ai/v1alpha1 VariantAutoscaling`` (semantics 1.1): era-A fields (``modelProfile`` with
  ``decodeParms {alpha, beta}`` / ``prefillParms {gamma, delta}``), v0.4 ``variantCost``, v0.6
  ``minReplicas``/``maxReplicas`` and ``scaleTargetRef``. A twin extension, ``perfParms {alpha, beta,
  gamma}`` without the decode/prefill split, selects the current (Feb 2026) service-time model.
* ConfigMap ``accelerator-unit-costs`` (``{"device": ..., "cost": "<cents/h>"}`` per accelerator) and
  ``service-classes-config`` (one YAML class per key: name, priority, data [{model, slo-tpot, slo-ttft}]).
* ``autoscaling/v2 HorizontalPodAutoscaler`` with ``behavior``; WVA annotations ``llm-d.ai/*``.

Every error is a TwinInputError naming the file, the object (Kind/namespace/name), the field path
and the bad value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from twin import yamlsafe
from twin.errors import TwinInputError, TwinInputErrors

DEFAULT_VARIANT_COST = 10.0


def _number(value: object) -> float:
    """CRD numbers are often strings ("0.044"); YAML may give them as numbers."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError as err:
            raise ValueError(f"cannot read {value!r} as a number") from err
    else:
        raise ValueError(f"expected a number, not a {type(value).__name__}")
    if not math.isfinite(result) or result < 0:
        raise ValueError("must be a finite number >= 0")
    return result


Number = Annotated[float, BeforeValidator(_number)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, allow_inf_nan=False)


class Metadata(_Loose):
    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class DecodeParms(_Strict):
    alpha: Number
    beta: Number


class PrefillParms(_Strict):
    gamma: Number
    delta: Number


class PerfParms(_Strict):
    """Era A: ``decodeParms`` + ``prefillParms``. Twin extension: ``alpha``/``beta``/``gamma`` (current model)."""

    decode_parms: DecodeParms | None = Field(None, alias="decodeParms")
    prefill_parms: PrefillParms | None = Field(None, alias="prefillParms")
    alpha: Number | None = None
    beta: Number | None = None
    gamma: Number | None = None

    @model_validator(mode="after")
    def _one_form(self) -> PerfParms:
        era_a = self.decode_parms is not None and self.prefill_parms is not None
        current = self.alpha is not None and self.beta is not None and self.gamma is not None
        if era_a == current:
            raise ValueError(
                "perfParms needs either decodeParms and prefillParms (era A) or alpha, beta and gamma (current model)"
            )
        return self

    @property
    def era_a(self) -> bool:
        return self.decode_parms is not None


class AcceleratorProfile(_Strict):
    acc: str
    acc_count: int = Field(1, alias="accCount", ge=1)
    max_batch_size: int = Field(256, alias="maxBatchSize", ge=1)
    at_tokens: int = Field(0, alias="atTokens", ge=0)
    perf_parms: PerfParms = Field(alias="perfParms")


class ModelProfile(_Strict):
    accelerators: list[AcceleratorProfile] = Field(min_length=1)


class ObjectRef(_Loose):
    name: str = ""
    key: str = ""
    kind: str = ""
    api_version: str = Field("", alias="apiVersion")


class VariantAutoscalingSpec(_Strict):
    model_id: str = Field(alias="modelID", min_length=1)
    slo_class_ref: ObjectRef | None = Field(None, alias="sloClassRef")
    model_profile: ModelProfile | None = Field(None, alias="modelProfile")
    variant_cost: Number = Field(DEFAULT_VARIANT_COST, alias="variantCost")
    scale_target_ref: ObjectRef | None = Field(None, alias="scaleTargetRef")
    min_replicas: int = Field(1, alias="minReplicas", ge=0)
    max_replicas: int = Field(10, alias="maxReplicas", ge=1)


class VariantAutoscaling(_Loose):
    api_version: Literal["llmd.ai/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["VariantAutoscaling"]
    metadata: Metadata
    spec: VariantAutoscalingSpec


class HPAPolicyDoc(_Strict):
    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(alias="periodSeconds", gt=0, le=1800)


class HPARulesDoc(_Strict):
    stabilization_window_seconds: int | None = Field(None, alias="stabilizationWindowSeconds", ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] = Field("Max", alias="selectPolicy")
    policies: list[HPAPolicyDoc] | None = None
    tolerance: Number | None = None


class HPABehaviorDoc(_Strict):
    scale_up: HPARulesDoc | None = Field(None, alias="scaleUp")
    scale_down: HPARulesDoc | None = Field(None, alias="scaleDown")


class HPASpecDoc(_Loose):
    scale_target_ref: ObjectRef = Field(alias="scaleTargetRef")
    min_replicas: int = Field(1, alias="minReplicas", ge=0)
    max_replicas: int = Field(alias="maxReplicas", ge=1)
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    behavior: HPABehaviorDoc | None = None


MANAGED_ANNOTATION = "llm-d.ai/managed"
MODEL_ID_ANNOTATION = "llm-d.ai/model-id"
VARIANT_COST_ANNOTATION = "llm-d.ai/variant-cost"


class HorizontalPodAutoscaler(_Loose):
    """autoscaling/v2 HPA. Annotated ``llm-d.ai/managed: "true"`` it is itself a WVA variant (latest WVA)."""

    api_version: Literal["autoscaling/v2"] = Field(alias="apiVersion")
    kind: Literal["HorizontalPodAutoscaler"]
    metadata: Metadata
    spec: HPASpecDoc

    @property
    def managed(self) -> bool:
        return self.metadata.annotations.get(MANAGED_ANNOTATION, "").lower() == "true"

    @property
    def model_id(self) -> str:
        return self.metadata.annotations.get(MODEL_ID_ANNOTATION, "")

    @property
    def variant_cost(self) -> float:
        raw = self.metadata.annotations.get(VARIANT_COST_ANNOTATION)
        return DEFAULT_VARIANT_COST if raw is None else _number(raw)


class AcceleratorCost(_Strict):
    device: str = ""
    cost: Number


class SLOEntry(_Strict):
    model: str
    slo_tpot: Number = Field(alias="slo-tpot")
    slo_ttft: Number = Field(alias="slo-ttft")


class ServiceClass(_Strict):
    name: str
    priority: int = Field(ge=1, le=100)
    data: list[SLOEntry] = Field(default_factory=list)


@dataclass
class WvaBundle:
    """Everything read from the WVA documents, keyed as WVA looks it up."""

    variants: list[VariantAutoscaling] = field(default_factory=list)
    hpas: list[HorizontalPodAutoscaler] = field(default_factory=list)
    accelerator_costs: dict[str, AcceleratorCost] = field(default_factory=dict)
    service_classes: list[ServiceClass] = field(default_factory=list)

    def slo_for(self, model_id: str) -> tuple[float, float]:
        """(TTFT ms, ITL ms) of the first class containing the model; (0, 0) when none does.

        WVA walks a Go map (nondeterministic when a model is in several classes); the twin takes
        the highest-priority class (lowest number), then the name. ``slo-tpot`` is the ITL target.
        """
        for cls in sorted(self.service_classes, key=lambda c: (c.priority, c.name)):
            for entry in cls.data:
                if entry.model == model_id:
                    return entry.slo_ttft, entry.slo_tpot
        return 0.0, 0.0

    def hpa_for(self, variant: VariantAutoscaling) -> HorizontalPodAutoscaler | None:
        """The HPA scaling the same target as the VA (else one named like it), same namespace."""
        ns = variant.metadata.namespace
        target = variant.spec.scale_target_ref.name if variant.spec.scale_target_ref else variant.metadata.name
        for hpa in self.hpas:
            if hpa.metadata.namespace == ns and hpa.spec.scale_target_ref.name == target:
                return hpa
        return None


def _located(err: ValidationError, file: str, obj: str, prefix: str = "") -> TwinInputErrors:
    out = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        out.append(TwinInputError(e["msg"], file=file, obj=obj, field=prefix + path, value=e.get("input")))
    return TwinInputErrors(out)


def _object_name(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    return f"{doc.get('kind', '?')}/{meta.get('namespace', 'default')}/{meta.get('name', '?')}"


def _config_map(bundle: WvaBundle, doc: dict[str, Any], file: str) -> None:
    obj = _object_name(doc)
    name = (doc.get("metadata") or {}).get("name", "")
    data = doc.get("data") or {}
    if not isinstance(data, dict):
        raise TwinInputError("must be a mapping", file=file, obj=obj, field="data", value=data)
    if name == "accelerator-unit-costs":
        for key, raw in data.items():
            try:
                parsed = json.loads(raw) if isinstance(raw, str) else raw
                bundle.accelerator_costs[str(key)] = AcceleratorCost.model_validate(parsed)
            except json.JSONDecodeError as err:
                raise TwinInputError(
                    f"not JSON: {err.msg}", file=file, obj=obj, field=f"data.{key}", value=raw
                ) from err
            except ValidationError as err:
                raise _located(err, file, obj, f"data.{key}.") from err
    elif name == "service-classes-config":
        for key, raw in data.items():
            try:
                parsed = yamlsafe.load(raw, f"{file}: {obj} data.{key}") if isinstance(raw, str) else raw
                bundle.service_classes.append(ServiceClass.model_validate(parsed))
            except ValidationError as err:
                raise _located(err, file, obj, f"data.{key}.") from err


def _check_managed(hpa: HorizontalPodAutoscaler, file: str, obj: str) -> None:
    if not hpa.model_id:
        raise TwinInputError(
            "a WVA-managed HPA needs the llm-d.ai/model-id annotation",
            file=file,
            obj=obj,
            field=f"metadata.annotations.{MODEL_ID_ANNOTATION}",
            value=None,
        )
    try:
        _ = hpa.variant_cost
    except ValueError as err:
        raise TwinInputError(
            str(err),
            file=file,
            obj=obj,
            field=f"metadata.annotations.{VARIANT_COST_ANNOTATION}",
            value=hpa.metadata.annotations.get(VARIANT_COST_ANNOTATION),
        ) from err


def load_wva_documents(paths: Sequence[str | Path]) -> WvaBundle:
    """Read VAs, HPAs and the two ConfigMaps from YAML files; other kinds are skipped."""
    bundle = WvaBundle()
    for path in paths:
        file = str(path)
        docs = yamlsafe.load_file_all(path, what="manifest file")
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise TwinInputError("each document must be a mapping", file=file, value=doc)
            kind = doc.get("kind")
            obj = _object_name(doc)
            try:
                if kind == "VariantAutoscaling":
                    bundle.variants.append(VariantAutoscaling.model_validate(doc))
                elif kind == "HorizontalPodAutoscaler":
                    hpa = HorizontalPodAutoscaler.model_validate(doc)
                    if hpa.spec.min_replicas > hpa.spec.max_replicas:
                        raise TwinInputError(
                            "must not exceed maxReplicas",
                            file=file,
                            obj=obj,
                            field="spec.minReplicas",
                            value=hpa.spec.min_replicas,
                        )
                    if hpa.managed:
                        _check_managed(hpa, file, obj)
                    bundle.hpas.append(hpa)
                elif kind == "ConfigMap":
                    _config_map(bundle, doc, file)
            except ValidationError as err:
                raise _located(err, file, obj) from err
    return bundle
