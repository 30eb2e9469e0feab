"""A synthetic but realistic node recording, made with the fake backend through the recorder.

The node: two H100 SXM and one A100 SXM 80GB in MIG mode (3g.40gb + 2 x 1g.10gb). Over
``duration_s`` seconds, sampled every ``interval_s``:
* PID 4101 ("trainer", GPU 0): a training loop, utilisation ~85 % with a dip every 10 s (eval);
* PID 4201 ("serve", GPU 1): inference, utilisation following a slow sine plus noise;
* PID 5001 ("burst", GPU 1): runs from the start and exits at 40 s, which lets the pending
  "big-batch" worker fit on GPU 1;
* PID 4301 ("mig-job", A100, 3g.40gb instance): steady memory, no utilisation (MIG);
* PID 900 (no worker, GPU 0): a monitoring sidecar holding 1 GiB;
* at 55 s GPU 1 falls off the bus (NVML GpuIsLost).
Noise comes from a numpy Generator seeded through ``twin.seeding``, so the file is reproducible
byte for byte; the header says ``synthetic: true``.

The matching workers file is :data:`SYNTHETIC_WORKERS` (also written next to the recording).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from live.backends.fake import FakeBackend
from live.backends.recorder import RecordingBackend
from twin.resources import GIB
from twin.seeding import component_rng

TF = "tensor-fusion.ai/"

SYNTHETIC_WORKERS = {
    "pool": "local",
    "workers": [
        {
            "name": "trainer",
            "namespace": "research",
            "pids": [4101],
            "annotations": {
                TF + "tflops-request": "400",
                TF + "tflops-limit": "600",
                TF + "vram-request": "40Gi",
                TF + "qos": "high",
            },
        },
        {
            "name": "serve",
            "namespace": "serving",
            "pids": [4201],
            "annotations": {
                TF + "compute-percent-request": "30",
                TF + "compute-percent-limit": "50",
                TF + "vram-request": "20Gi",
            },
        },
        {
            "name": "burst",
            "namespace": "research",
            "pids": [5001],
            "annotations": {TF + "tflops-request": "500", TF + "vram-request": "50Gi", TF + "qos": "low"},
        },
        {
            "name": "mig-job",
            "namespace": "research",
            "pids": [4301],
            "annotations": {TF + "tflops-request": "100", TF + "vram-request": "30Gi"},
        },
        {
            "name": "notebook",
            "namespace": "research",
            "annotations": {TF + "tflops-request": "100", TF + "vram-request": "16Gi", TF + "qos": "low"},
        },
        {
            "name": "big-batch",
            "namespace": "research",
            "annotations": {TF + "tflops-request": "650", TF + "vram-request": "60Gi", TF + "qos": "medium"},
        },
    ],
}


def _jitter(rng: np.random.Generator, value: float, sigma: float, lo: float = 0.0, hi: float = 100.0) -> float:
    return round(float(np.clip(value + rng.normal(0.0, sigma), lo, hi)), 1)


def write_synthetic_fixture(directory: str | Path) -> tuple[Path, Path]:
    """Write ``live_synthetic_node.jsonl`` and ``live_synthetic_workers.yaml`` (the tests/data fixture)."""
    import yaml

    from twin.atomic import atomic_write_text

    d = Path(directory)
    recording = d / "live_synthetic_node.jsonl"
    synthetic_node_recording(recording)
    workers = atomic_write_text(
        d / "live_synthetic_workers.yaml",
        "# Workers of tests/data/live_synthetic_node.jsonl (synthetic; see live/synthetic.py).\n"
        + yaml.safe_dump(SYNTHETIC_WORKERS, sort_keys=False),
    )
    workers.chmod(0o644)  # a fixture for the repository, not a private temp file
    return recording, workers


def synthetic_node_recording(
    path: str | Path, *, seed: int = 7, duration_s: float = 60.0, interval_s: float = 0.5
) -> int:
    """Write the recording; returns the number of samples."""
    rng = component_rng(seed, "live.synthetic")
    fake = FakeBackend(hostname="synthetic-node-1")
    g0 = fake.add_gpu("NVIDIA H100 80GB HBM3")
    g1 = fake.add_gpu("NVIDIA H100 80GB HBM3")
    a0 = fake.add_gpu("NVIDIA A100-SXM4-80GB")
    fake.set_mig_mode(a0, True)
    big = fake.create_instance(a0, "3g.40gb")
    fake.create_instance(a0, "1g.10gb")
    fake.create_instance(a0, "1g.10gb")
    fake.add_process(g0, 4101, 38 * GIB, sm_util=80)
    fake.add_process(g0, 900, 1 * GIB, sm_util=0)
    fake.add_process(g1, 4201, 18 * GIB, sm_util=25)
    fake.add_process(g1, 5001, 30 * GIB, sm_util=40)
    fake.add_process(a0, 4301, 28 * GIB, gpu_instance_id=big.gpu_instance_id)
    rec = RecordingBackend(
        fake,
        path,
        interval_s=interval_s,
        synthetic=True,
        note="synthetic: made by live.synthetic.synthetic_node_recording with the fake backend, not a real GPU",
    )
    steps = int(round(duration_s / interval_s)) + 1
    try:
        for k in range(steps):
            t = k * interval_s
            train = 35.0 if (t % 10.0) >= 8.5 else 85.0  # an eval pause every 10 s
            serve = 30.0 + 20.0 * math.sin(2 * math.pi * t / 30.0)
            u0 = _jitter(rng, train + 2.0, 2.0)
            fake.set_process(g0, 4101, sm_util=_jitter(rng, train, 2.0), memory_used=38 * GIB + (int(t) * 16 << 20))
            fake.set_usage(
                g0,
                utilization_gpu=u0,
                utilization_memory=_jitter(rng, u0 * 0.45, 1.5),
                power_w=_jitter(rng, 120 + 5.2 * u0, 8.0, 60, 700),
                temperature_c=_jitter(rng, 45 + u0 * 0.2, 0.5),
            )
            if t == 40.0:
                fake.remove_process(g1, 5001)
            burst = 40.0 if t < 40.0 else 0.0
            u1 = _jitter(rng, serve + burst, 3.0)
            fake.set_process(g1, 4201, sm_util=_jitter(rng, serve, 2.0))
            fake.set_usage(
                g1,
                utilization_gpu=u1,
                utilization_memory=_jitter(rng, u1 * 0.3, 1.0),
                power_w=_jitter(rng, 90 + 4.8 * u1, 8.0, 60, 700),
                temperature_c=_jitter(rng, 38 + u1 * 0.2, 0.5),
            )
            fake.set_usage(a0, power_w=_jitter(rng, 210, 6.0, 60, 400), temperature_c=_jitter(rng, 47, 0.5))
            if t == 55.0:
                fake.lose(g1)
            rec.sample()
            fake.advance(interval_s)
    finally:
        rec.close()
    return steps
