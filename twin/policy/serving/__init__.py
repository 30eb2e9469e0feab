"""LLM-serving autoscaling policies (llm-d WVA): queue model, inferno sizing, saturation V1/V2, HPA.

Pure: no simpy, no I/O, no clock. The simulator (``twin.sim.serving``) and the CLI
(``twin serving``) drive these functions.
"""

from twin.policy.serving.autoscalers import Autoscaler, autoscaler_names, get_autoscaler
from twin.policy.serving.hpa import HPABehavior, HPAController, HPASpec, KedaScaler, MetricSignal
from twin.policy.serving.inferno import AcceleratorPerf, Allocation, ServerLoad, create_allocation
from twin.policy.serving.observation import ModelObservation, ReplicaMetrics, VariantInfo, group_by_model
from twin.policy.serving.queue_model import (
    Generation,
    InfeasibleTargetError,
    QueueMetrics,
    QueueModel,
    ServiceTimes,
    SizeResult,
    SizeTargets,
)

__all__ = [
    "AcceleratorPerf",
    "Allocation",
    "Autoscaler",
    "Generation",
    "HPABehavior",
    "HPAController",
    "HPASpec",
    "InfeasibleTargetError",
    "KedaScaler",
    "MetricSignal",
    "ModelObservation",
    "QueueMetrics",
    "QueueModel",
    "ReplicaMetrics",
    "ServerLoad",
    "ServiceTimes",
    "SizeResult",
    "SizeTargets",
    "VariantInfo",
    "autoscaler_names",
    "create_allocation",
    "get_autoscaler",
    "group_by_model",
]
