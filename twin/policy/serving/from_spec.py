"""Validated WVA documents (``twin.spec.wva``) -> policy objects: perf parameters, HPA specs, variants."""

from __future__ import annotations

from twin.policy.serving.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    HPABehavior,
    HPASpec,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
)
from twin.policy.serving.inferno import AcceleratorPerf
from twin.policy.serving.observation import VariantInfo
from twin.policy.serving.queue_model import Generation, SizeTargets
from twin.spec.wva import (
    AcceleratorProfile,
    HorizontalPodAutoscaler,
    HPABehaviorDoc,
    HPARulesDoc,
    VariantAutoscaling,
    WvaBundle,
)

ACCELERATOR_LABEL = "inference.optimization/acceleratorName"


def accelerator_perf(profile: AcceleratorProfile) -> AcceleratorPerf:
    """One modelProfile entry as queue-model parameters (era A or current, by which fields are set)."""
    p = profile.perf_parms
    if p.decode_parms is not None and p.prefill_parms is not None:
        return AcceleratorPerf(
            profile.acc,
            alpha=p.decode_parms.alpha,
            beta=p.decode_parms.beta,
            gamma=p.prefill_parms.gamma,
            delta=p.prefill_parms.delta,
            generation=Generation.ERA_A,
            acc_count=profile.acc_count,
            max_batch=profile.max_batch_size,
            at_tokens=profile.at_tokens,
        )
    assert p.alpha is not None and p.beta is not None and p.gamma is not None  # the spec validator ensures one form
    return AcceleratorPerf(
        profile.acc,
        alpha=p.alpha,
        beta=p.beta,
        gamma=p.gamma,
        acc_count=profile.acc_count,
        max_batch=profile.max_batch_size,
        at_tokens=profile.at_tokens,
    )


def _rules(side: HPARulesDoc | None, default: ScalingRules) -> ScalingRules:
    if side is None:
        return default
    policies = (
        default.policies
        if side.policies is None
        else tuple(ScalingPolicy(PolicyType(p.type), p.value, float(p.period_seconds)) for p in side.policies)
    )
    window = default.stabilization_s if side.stabilization_window_seconds is None else side.stabilization_window_seconds
    return ScalingRules(float(window), SelectPolicy(side.select_policy), policies)


def hpa_behavior(doc: HPABehaviorDoc | None) -> HPABehavior:
    """An HPA ``behavior`` block; omitted sides and fields take the Kubernetes defaults."""
    beh = doc or HPABehaviorDoc.model_validate({})
    return HPABehavior(_rules(beh.scale_up, DEFAULT_SCALE_UP), _rules(beh.scale_down, DEFAULT_SCALE_DOWN))


def hpa_spec(doc: HorizontalPodAutoscaler, sync_period_s: float = 15.0) -> HPASpec:
    """The policy-layer HPA from an autoscaling/v2 object (Kubernetes defaults for omitted parts)."""
    return HPASpec(
        min_replicas=doc.spec.min_replicas,
        max_replicas=doc.spec.max_replicas,
        behavior=hpa_behavior(doc.spec.behavior),
        sync_period_s=sync_period_s,
    )


def variant_info(bundle: WvaBundle, va: VariantAutoscaling, current: int = 1) -> VariantInfo:
    """A VA as the autoscalers see it.

    The accelerator is the VA's ``inference.optimization/acceleratorName`` label, else its first
    modelProfile entry (era A's KeepAccelerator: only the labelled accelerator is sized). The cost
    is the accelerator-unit-costs entry when there is one, else ``variantCost``. Min/max replicas
    come from the matching HPA when there is one (latest WVA reads them there).
    """
    profiles = va.spec.model_profile.accelerators if va.spec.model_profile else []
    acc = va.metadata.labels.get(ACCELERATOR_LABEL, profiles[0].acc if profiles else "")
    profile = next((p for p in profiles if p.acc == acc), None)
    perf = accelerator_perf(profile) if profile is not None else None
    unit = bundle.accelerator_costs.get(acc)
    cost = unit.cost if unit is not None else va.spec.variant_cost
    hpa = bundle.hpa_for(va)
    lo = hpa.spec.min_replicas if hpa else va.spec.min_replicas
    hi = hpa.spec.max_replicas if hpa else va.spec.max_replicas
    ttft, itl = bundle.slo_for(va.spec.model_id)
    return VariantInfo(
        name=va.metadata.name,
        model_id=va.spec.model_id,
        namespace=va.metadata.namespace,
        accelerator=acc,
        cost=cost,
        current=current,
        ready=current,
        min_replicas=lo,
        max_replicas=hi,
        gpus_per_replica=profile.acc_count if profile else 1,
        perf=perf,
        targets=SizeTargets(ttft_ms=ttft, itl_ms=itl),
    )


def variant_infos(bundle: WvaBundle, current: dict[str, int] | None = None) -> list[VariantInfo]:
    """Every variant the documents define: the VAs, then HPAs annotated ``llm-d.ai/managed: "true"``
    that no VA scales (the latest WVA, where the VA CRD is deprecated). ``current`` maps a variant
    name to its replica count (default 1)."""
    counts = current or {}
    out = [variant_info(bundle, va, counts.get(va.metadata.name, 1)) for va in bundle.variants]
    scaled = [bundle.hpa_for(va) for va in bundle.variants]
    covered = {(h.metadata.namespace, h.metadata.name) for h in scaled if h is not None}
    for hpa in bundle.hpas:
        if not hpa.managed or (hpa.metadata.namespace, hpa.metadata.name) in covered:
            continue
        n = counts.get(hpa.metadata.name, 1)
        ttft, itl = bundle.slo_for(hpa.model_id)
        out.append(
            VariantInfo(
                name=hpa.metadata.name,
                model_id=hpa.model_id,
                namespace=hpa.metadata.namespace,
                cost=hpa.variant_cost,
                current=n,
                ready=n,
                min_replicas=hpa.spec.min_replicas,
                max_replicas=hpa.spec.max_replicas,
                targets=SizeTargets(ttft_ms=ttft, itl_ms=itl),
            )
        )
    return out
