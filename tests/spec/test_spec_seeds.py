"""Every ```yaml example in the shared TensorFusion/WVA docs loads as written.

Objects (with a ``kind``) go through the full loader; metadata fragments and bare annotation maps go
through ``parse_annotation_block``. Template placeholders such as ``"{total_tflops_of_instance_type}"``
must fail with an error that names the annotation.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from twin.errors import TwinInputError, TwinInputErrors
from twin.spec import parse_annotation_block, parse_documents

SEEDS = Path(__file__).resolve().parents[2].parent / "shared" / "seeds"
_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def _blocks() -> list[tuple[str, str]]:
    if not SEEDS.is_dir():
        return []
    out = []
    for path in sorted(SEEDS.glob("*.txt")):
        for i, m in enumerate(_BLOCK.finditer(path.read_text(encoding="utf-8"))):
            out.append((f"{path.name}#{i}", m.group(1)))
    return out


BLOCKS = _blocks()
pytestmark = pytest.mark.skipif(not BLOCKS, reason="shared seed docs are not available on this machine")


def _is_object(text: str) -> bool:
    return any(isinstance(d, dict) and "kind" in d for d in yaml.safe_load_all(text))


def test_seed_blocks_were_found() -> None:
    # The seeds hold 2 objects (a Deployment, a WorkloadProfile) and 6 annotation/label fragments.
    objects = [b for b in BLOCKS if _is_object(b[1])]
    assert len(objects) >= 2 and len(BLOCKS) - len(objects) >= 6


@pytest.mark.parametrize(("name", "text"), [b for b in BLOCKS if _is_object(b[1])], ids=lambda v: str(v)[:40])
def test_seed_objects_load(name: str, text: str) -> None:
    bundle = parse_documents(text, name)
    assert len(bundle.origins) >= 1


@pytest.mark.parametrize(
    ("name", "text"),
    [b for b in BLOCKS if not _is_object(b[1]) and not _PLACEHOLDER.search(b[1])],
    ids=lambda v: str(v)[:40],
)
def test_seed_annotation_blocks_load(name: str, text: str) -> None:
    parse_annotation_block(text, name)


@pytest.mark.parametrize(("name", "text"), [b for b in BLOCKS if _PLACEHOLDER.search(b[1])], ids=lambda v: str(v)[:40])
def test_seed_placeholders_fail_naming_the_field(name: str, text: str) -> None:
    with pytest.raises(TwinInputError) as info:
        parse_annotation_block(text, name)
    errors = info.value.errors if isinstance(info.value, TwinInputErrors) else [info.value]
    placeholders = _PLACEHOLDER.findall(text)
    assert len(errors) == len(placeholders)
    for err in errors:
        assert err.field is not None and err.field.startswith('metadata.annotations["tensor-fusion.ai/')
        assert err.file == name and isinstance(err.value, str) and _PLACEHOLDER.fullmatch(err.value)


def test_seed_deployment_normalises_with_a_pool_and_profile() -> None:
    """The docs' example Deployment, given the pool and profile it refers to, yields the documented request."""
    deployment = next(t for _, t in BLOCKS if "kind: Deployment" in t)
    extra = (
        "---\napiVersion: tensor-fusion.ai/v1\nkind: GPUPool\nmetadata:\n  name: default-pool\n  annotations:\n"
        '    tensor-fusion.ai/is-default-pool: "true"\n'
        "---\napiVersion: tensor-fusion.ai/v1\nkind: WorkloadProfile\nmetadata: {name: default-profile}\n"
    )
    [(_, spec)] = parse_documents(deployment + extra, "seed").worker_specs()
    assert (spec.request.tflops, spec.limit.tflops, spec.request.vram, spec.limit.vram) == (10, 20, 4 << 30, 4 << 30)
    assert (spec.qos.value, spec.gpu_count, spec.is_local_gpu, spec.inject_container) == (
        "medium",
        1,
        True,
        ("python",),
    )
