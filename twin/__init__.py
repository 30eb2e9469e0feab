"""GPU-pool digital twin: TensorFusion-style vGPU pooling and WVA-style SLO autoscaling.

Layers (dependencies point one way): ``resources``/``spec``/``state`` -> ``policy`` ->
``sim`` | ``live`` -> ``cli``. The policy layer is pure: no SimPy, no NVML, no I/O, no clock.
"""

__version__ = "0.1.0"
