"""Fixtures for the spec tests; the builders live in spec_builders.py (a unique module name)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from spec_builders import DEFAULT_POOL, bundle_of, pod_doc

from twin.resources import Resource
from twin.spec import WorkerSpec

SpecFn = Callable[..., WorkerSpec]


@pytest.fixture
def spec_of() -> SpecFn:
    """The single WorkerSpec of a pod with these annotations (short keys get the tensor-fusion.ai/ prefix)."""

    def build(
        annotations: Mapping[str, str],
        *,
        extra: Sequence[Mapping[str, Any]] = (),
        pool: Mapping[str, Any] | None = DEFAULT_POOL,
        model_capacity: Mapping[str, Resource] | None = None,
        **pod: Any,
    ) -> WorkerSpec:
        bundle = bundle_of(pod_doc(annotations, **pod), *extra, pool=pool)
        specs = bundle.worker_specs(model_capacity)
        assert len(specs) == 1
        return specs[0][1]

    return build
