"""Hardware profiles: every shipped file loads, values match the TensorFusion catalogue, lookups."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from twin.errors import TwinInputError
from twin.hardware import (
    HardwareCatalog,
    default_catalog,
    default_profiles_dir,
    find_template,
    load_catalog,
    normalize_template_identifier,
)
from twin.resources import GIB, Resource

REQUIRED = [
    "T4", "A10", "A10G", "L4", "L40", "L40S", "A30", "A100_SXM_40G", "A100_PCIe_40G", "A100_SXM_80G",
    "A100_PCIe_80G", "H100_SXM", "H100_PCIe_80G", "H200", "B200_SXM", "RTX4090", "MI300X",
]  # fmt: skip
OPENB_MODELS = ["P100", "T4", "V100M16", "V100M32", "A10", "G1", "G2", "G3"]


@pytest.fixture(scope="module")
def catalog() -> HardwareCatalog:
    return default_catalog()


def _copy_profiles(tmp_path: Path) -> Path:
    target = tmp_path / "hw"
    shutil.copytree(default_profiles_dir(), target)
    return target


def test_every_required_and_openb_model_is_shipped(catalog: HardwareCatalog) -> None:
    for key in [*REQUIRED, *OPENB_MODELS]:
        assert catalog.get(key).key == key


def test_every_shipped_file_is_valid_and_named_after_its_key() -> None:
    directory = default_profiles_dir()
    files = sorted(directory.glob("*.yaml"))
    catalog = load_catalog(directory)
    assert [f.stem for f in files] == catalog.keys()
    for prof in catalog:
        assert prof.notes, prof.key
        assert prof.fp16_tflops > 0 and prof.vram_bytes > 0 and prof.mem_bandwidth_gbps > 0


def test_values_follow_the_catalogue_choices(catalog: HardwareCatalog) -> None:
    # ProviderConfig wins over the ConfigMap, except the L40 sparse figure (semantics 6).
    assert catalog.get("L40").fp16_tflops == 181
    assert catalog.get("H100_PCIe_80G").fp16_tflops == 756
    assert catalog.get("T4").cost_per_hour == 0.35
    assert catalog.get("A100_SXM_80G").nvml_name == "NVIDIA A100-SXM4-80GB"
    assert catalog.get("H100_SXM").vram_bytes == 80 * GIB
    assert catalog.get("MI300X").vendor == "AMD"
    assert catalog.get("B200_SXM").vram_bytes == 180 * GIB


def test_placeholder_models_are_marked(catalog: HardwareCatalog) -> None:
    for key in ("G1", "G2", "G3"):
        prof = catalog.get(key)
        assert prof.placeholder and "PLACEHOLDER" in prof.notes
    assert not catalog.get("V100M32").placeholder


def test_mig_templates_attached_per_family(catalog: HardwareCatalog) -> None:
    a30 = catalog.get("A30")
    assert (a30.max_partitions, a30.placement_slots) == (4, 4)
    assert [t.id for t in a30.mig_templates] == ["nv-a30-1g-6gb", "nv-a30-2g-12gb", "nv-a30-4g-24gb"]
    h200 = catalog.get("H200")
    full = h200.template("7g.141gb")
    assert full is not None and full.slots == 8 and full.placement_starts == (0,)
    assert catalog.get("A100_SXM_40G").template("nv-40g-3g-20gb") is not None
    assert catalog.get("L4").mig_templates == () and catalog.get("L4").template("1g.10gb") is None
    for key in ("A100_SXM_80G", "A100_PCIe_80G", "H100_SXM", "H100_PCIe_80G"):
        assert len(catalog.get(key).mig_templates) == 7


def test_template_resources_two_decimals(catalog: HardwareCatalog) -> None:
    tpl = catalog.get("A100_SXM_80G").template("3g.40gb")
    assert tpl is not None
    # 42.8571 % of 312 = 133.714152 -> 133.71
    assert tpl.resources(312) == Resource(tflops=133.71, vram=40 * GIB)
    one = catalog.get("H100_SXM").template("1g.10gb")
    assert one is not None and one.resources(989).tflops == 141.29  # 141.2867...


@pytest.mark.parametrize(
    ("ident", "expected"),
    [
        ("nv-80g-1g-10gb", "nv-80g-1g-10gb"),
        ("NV-80G-1G-10GB", "nv-80g-1g-10gb"),
        ("1g.10gb", "nv-80g-1g-10gb"),
        ("mig-1g.10gb", "nv-80g-1g-10gb"),
        ("mig-1g-10gb", "nv-80g-1g-10gb"),
        ("nvidia.com/mig-1g.10gb", "nv-80g-1g-10gb"),
        ("MIG-1G.10GB+ME", "nv-80g-1g-10gb-me"),
        ("mig-1g.20gb", "nv-80g-1g-20gb"),
        ("mig-7g.80gb", "nv-80g-7g-80gb"),
    ],
)
def test_template_lookup_by_id_name_alias(catalog: HardwareCatalog, ident: str, expected: str) -> None:
    tpl = catalog.get("H100_SXM").template(ident)
    assert tpl is not None and tpl.id == expected


def test_template_lookup_misses(catalog: HardwareCatalog) -> None:
    h100 = catalog.get("H100_SXM")
    assert h100.template("mig-4g-94gb") is None  # an H100 NVL profile, not on this card
    assert h100.template("nv-40g-1g-5gb") is None
    assert normalize_template_identifier("nvidia.com/mig-4g.94gb") == "4g-94gb"


@pytest.mark.parametrize(
    ("nvml", "key"),
    [
        ("NVIDIA A100-SXM4-80GB", "A100_SXM_80G"),
        ("nvidia a100-sxm4-80gb", "A100_SXM_80G"),
        ("  NVIDIA  H100 80GB HBM3 ", "H100_SXM"),
        ("Tesla T4", "T4"),
        ("NVIDIA T4", "T4"),  # vendor prefix stripped, then the model key matches
        ("nvidia l40s", "L40S"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A100 80GB PCIe", "A100_PCIe_80G"),
        ("AMD Instinct MI300X", "MI300X"),
        ("AMD MI300X", "MI300X"),
        ("Tesla V100-SXM2-32GB", "V100M32"),
        ("T4", "T4"),  # no vendor prefix to strip: the bare name is compared with the key
    ],
)
def test_match_nvml_name(catalog: HardwareCatalog, nvml: str, key: str) -> None:
    prof = catalog.match_nvml_name(nvml)
    assert prof is not None and prof.key == key


@pytest.mark.parametrize("nvml", ["NVIDIA GeForce RTX 5090", "", "A100", "Tesla A10", "NVIDIA h100"])
def test_match_nvml_name_unknown(catalog: HardwareCatalog, nvml: str) -> None:
    # Aliases are for people, not for NVML: "NVIDIA h100" strips to "h100", which is no model key.
    assert catalog.match_nvml_name(nvml) is None


def test_get_by_alias_case_insensitive_and_unknown(catalog: HardwareCatalog) -> None:
    assert catalog.get("H100").key == "H100_SXM"
    assert catalog.get("h100-sxm").key == "H100_SXM"
    assert catalog.get("a100_pcie_40gb").key == "A100_PCIe_40G"
    assert "h200" in catalog and "nope" not in catalog
    with pytest.raises(TwinInputError, match="known keys: A10, "):
        catalog.get("RTX9999")


def test_default_catalog_is_cached() -> None:
    assert default_catalog() is default_catalog()


def _edit(path: Path, **changes: object) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_bad_field_names_file_field_and_value(tmp_path: Path) -> None:
    directory = _copy_profiles(tmp_path)
    _edit(directory / "L4.yaml", fp16_tflops=-3)
    with pytest.raises(TwinInputError) as err:
        load_catalog(directory)
    assert err.value.file is not None and err.value.file.endswith("L4.yaml")
    assert err.value.obj == "L4" and err.value.field == "fp16_tflops" and err.value.value == -3


def test_unknown_field_and_key_mismatch_rejected(tmp_path: Path) -> None:
    directory = _copy_profiles(tmp_path)
    _edit(directory / "L4.yaml", tdp_watts=72)
    with pytest.raises(TwinInputError, match="tdp_watts"):
        load_catalog(directory)
    directory = _copy_profiles(tmp_path / "b")
    _edit(directory / "L4.yaml", key="L4X")
    with pytest.raises(TwinInputError, match="file name"):
        load_catalog(directory)


def test_unknown_family_and_template_too_big(tmp_path: Path) -> None:
    directory = _copy_profiles(tmp_path)
    _edit(directory / "A30.yaml", mig_family="nv-a31")
    with pytest.raises(TwinInputError, match="unknown template family") as err:
        load_catalog(directory)
    assert err.value.field == "mig_family" and err.value.value == "nv-a31"
    directory = _copy_profiles(tmp_path / "b")
    _edit(directory / "A30.yaml", placement_slots=3)
    with pytest.raises(TwinInputError, match="beyond placement_slots"):
        load_catalog(directory)


def test_duplicate_alias_rejected(tmp_path: Path) -> None:
    directory = _copy_profiles(tmp_path)
    _edit(directory / "L4.yaml", aliases=["h100"])
    with pytest.raises(TwinInputError, match="two profiles"):
        load_catalog(directory)


def test_invalid_yaml_and_missing_dir(tmp_path: Path) -> None:
    directory = _copy_profiles(tmp_path)
    (directory / "L4.yaml").write_text("key: [unclosed\n")
    with pytest.raises(TwinInputError, match="invalid YAML"):
        load_catalog(directory)
    with pytest.raises(TwinInputError, match="not found"):
        load_catalog(tmp_path / "missing")


def test_placeholder_must_say_so(tmp_path: Path) -> None:
    directory = _copy_profiles(tmp_path)
    _edit(directory / "G1.yaml", notes="made-up numbers")
    with pytest.raises(TwinInputError, match="PLACEHOLDER"):
        load_catalog(directory)


def test_capacity_and_find_template(catalog: HardwareCatalog) -> None:
    a30 = catalog.get("A30")
    assert a30.capacity == Resource(tflops=165, vram=24 * GIB) and a30.vram_gib == 24
    assert find_template(a30.mig_templates, "MIG-2G.12GB") is a30.mig_templates[1]
    assert find_template((), "1g.6gb") is None


def test_two_profiles_with_one_key_rejected(catalog: HardwareCatalog) -> None:
    l4 = catalog.get("L4")
    with pytest.raises(TwinInputError, match="two profiles"):
        HardwareCatalog([l4, replace(l4, nvml_name="other")])
