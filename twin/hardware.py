"""GPU hardware profiles: one YAML file per model in ``hw_profiles/``, matched by NVML name.

A profile carries what TensorFusion's catalogues carry (model key, NVML ``fullModelName``, vendor,
dense FP16 TFLOPs, price, MIG partition limits and templates, semantics 6) plus what the twin needs
and the catalogues lack (VRAM, memory bandwidth). MIG template families live in
``hw_profiles/templates/<family>.yaml`` and a profile refers to one by name (``mig_family``), like
the ProviderConfig's ``partitionTemplateRefs``.

Files are validated once, here, with pydantic; every error names the file, the field and the value.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from twin import yamlsafe
from twin.errors import TwinInputError, TwinInputErrors
from twin.resources import GIB, Resource

TEMPLATES_SUBDIR = "templates"


@dataclass(frozen=True)
class MigTemplate:
    """One partition template (NVIDIA MIG profile), semantics 2.7 and 6.2.

    ``placement_starts`` are the slot indices where an instance may begin (``placementLimit``);
    ``slots`` is how many consecutive slots one instance occupies.
    """

    id: str
    name: str
    nvml_profile: int
    memory_gib: float
    compute_percent: float
    max_instances: int
    placement_starts: tuple[int, ...]
    slots: int

    def resources(self, capacity_tflops: float) -> Resource:
        """What one instance takes from a device: ``pct·cap/100`` TFLOPs (2 decimals) and the template GiB."""
        return Resource(
            tflops=round(self.compute_percent * capacity_tflops / 100.0, 2),
            vram=int(round(self.memory_gib * GIB)),
        )

    def matches(self, ident: str) -> bool:
        """True if ``ident`` names this template (see :func:`normalize_template_identifier`)."""
        wanted = ident.strip().lower()
        if wanted in (self.id.lower(), self.name.lower()):
            return True
        return normalize_template_identifier(ident) == normalize_template_identifier(self.name)


def normalize_template_identifier(ident: str) -> str:
    """The twin's ``MatchTemplateIdentifier`` rule.

    Lower-case; drop a leading ``nvidia.com/`` (the device-plugin resource name) and then a leading
    ``mig-``; turn ``.``, ``+`` and ``_`` into ``-``. So ``mig-1g.10gb``, ``nvidia.com/mig-1g.10gb``,
    ``MIG-1G-10GB`` and ``1g.10gb`` all name the template called ``1g.10gb``, and ``mig-1g.10gb+me``
    names ``1g.10gb+me``. Template ids (``nv-80g-1g-10gb``) are matched exactly (case-insensitively).
    """
    text = ident.strip().lower()
    for prefix in ("nvidia.com/", "mig-"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    for char in ".+_":
        text = text.replace(char, "-")
    return text


def find_template(templates: Sequence[MigTemplate], ident: str) -> MigTemplate | None:
    """The template named ``ident`` among ``templates``: exact id or name (case-insensitive) first,
    then the normalised alias rule; within a pass the first in sequence order wins."""
    wanted = ident.strip().lower()
    for tpl in templates:
        if wanted in (tpl.id.lower(), tpl.name.lower()):
            return tpl
    for tpl in templates:
        if tpl.matches(ident):
            return tpl
    return None


@dataclass(frozen=True)
class HardwareProfile:
    """One GPU model. ``key`` is TensorFusion's exact model key (``GPU.status.gpuModel``)."""

    key: str
    nvml_name: str
    vendor: str
    fp16_tflops: float
    vram_bytes: int
    mem_bandwidth_gbps: float
    cost_per_hour: float
    max_partitions: int
    placement_slots: int
    mig_templates: tuple[MigTemplate, ...]
    aliases: tuple[str, ...]
    notes: str
    placeholder: bool = False  # numbers invented so a trace model can run (openb G1/G2/G3)
    # What the serving step-time model needs besides FP16 and bandwidth (None: unknown / unsupported).
    fp8_tflops: float | None = None  # dense FP8 tensor TFLOPs; None = no FP8 tensor cores
    interconnect_gbps: float | None = None  # GPU-to-GPU bandwidth per direction (NVLink, else PCIe)

    @property
    def capacity(self) -> Resource:
        """Full-device capacity: dense FP16 TFLOPs and VRAM bytes."""
        return Resource(tflops=self.fp16_tflops, vram=self.vram_bytes)

    @property
    def vram_gib(self) -> float:
        return self.vram_bytes / GIB

    def template(self, ident: str) -> MigTemplate | None:
        """The template named ``ident`` (id, name, or alias such as ``mig-1g.10gb``), or None.

        Exact id/name matches win over normalised matches; within a pass, file order decides.
        """
        return find_template(self.mig_templates, ident)


class HardwareCatalog:
    """All known profiles, looked up by key, alias or NVML name."""

    def __init__(self, profiles: Iterable[HardwareProfile]) -> None:
        self._by_key: dict[str, HardwareProfile] = {}
        self._by_lower: dict[str, HardwareProfile] = {}
        for prof in sorted(profiles, key=lambda p: p.key):
            names = [prof.key, *prof.aliases]
            for name in names:
                other = self._by_lower.get(name.lower())
                if other is not None and other is not prof:
                    raise TwinInputError(
                        f"name is used by two profiles ({other.key} and {prof.key})",
                        obj=prof.key,
                        field="aliases" if name != prof.key else "key",
                        value=name,
                    )
                self._by_lower[name.lower()] = prof
            self._by_key[prof.key] = prof

    def keys(self) -> list[str]:
        return sorted(self._by_key)

    def profiles(self) -> list[HardwareProfile]:
        return [self._by_key[k] for k in self.keys()]

    def __iter__(self) -> Iterator[HardwareProfile]:
        return iter(self.profiles())

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.find(key) is not None

    def find(self, key: str) -> HardwareProfile | None:
        """Exact key first, then key or alias case-insensitively; None if unknown."""
        exact = self._by_key.get(key)
        if exact is not None:
            return exact
        return self._by_lower.get(key.strip().lower())

    def get(self, key: str) -> HardwareProfile:
        prof = self.find(key)
        if prof is None:
            raise TwinInputError(
                f"unknown GPU model; known keys: {', '.join(self.keys())}", field="gpu model", value=key
            )
        return prof

    def match_nvml_name(self, name: str) -> HardwareProfile | None:
        """The profile for a device name as NVML reports it (semantics 6, hypervisor matching).

        Case-insensitive, surrounding spaces ignored. First pass: equal to a profile's ``nvml_name``
        (``fullModelName``). Second pass: after removing the profile's vendor as a prefix if present
        ("NVIDIA L4" -> "L4"), equal to the profile's key. Profiles are tried in key order.
        """
        wanted = " ".join(name.split()).lower()
        if not wanted:
            return None
        profiles = self.profiles()
        for prof in profiles:
            if prof.nvml_name.lower() == wanted:
                return prof
        for prof in profiles:
            prefix = prof.vendor.lower() + " "
            bare = wanted[len(prefix) :] if wanted.startswith(prefix) else wanted
            if bare == prof.key.lower():
                return prof
        return None


# --- loading and validation -------------------------------------------------------------------


class _TemplateModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    nvml_profile: int = Field(ge=0)
    memory_gib: float = Field(gt=0)
    compute_percent: float = Field(gt=0, le=100)
    max_instances: int = Field(ge=1)
    placement_starts: list[int] = Field(min_length=1)
    slots: int = Field(ge=1)

    @field_validator("placement_starts")
    @classmethod
    def _starts_valid(cls, value: list[int]) -> list[int]:
        if any(s < 0 for s in value) or sorted(set(value)) != value:
            raise ValueError("placement_starts must be distinct, non-negative and ascending")
        return value


class _TemplateFamilyModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    family: str = Field(min_length=1)
    notes: str = Field(min_length=1)
    templates: list[_TemplateModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _ids_in_family(self) -> _TemplateFamilyModel:
        seen: set[str] = set()
        for tpl in self.templates:
            if not tpl.id.startswith(self.family + "-"):
                raise ValueError(f"template id {tpl.id!r} must start with the family name {self.family + '-'!r}")
            if tpl.id in seen:
                raise ValueError(f"template id {tpl.id!r} appears twice")
            seen.add(tpl.id)
        return self


class _ProfileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    key: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_]+$")
    nvml_name: str = Field(min_length=1)
    vendor: str = Field(min_length=1)
    fp16_tflops: float = Field(gt=0)
    vram_gib: float = Field(gt=0)
    mem_bandwidth_gbps: float = Field(gt=0)
    fp8_tflops: float | None = Field(None, gt=0, le=1e6)
    interconnect_gbps: float | None = Field(None, gt=0, le=1e6)
    cost_per_hour: float = Field(ge=0)
    max_partitions: int = Field(ge=0)
    placement_slots: int = Field(ge=0)
    mig_family: str | None = None
    aliases: list[str] = Field(default_factory=list)
    placeholder: bool = False
    notes: str = Field(min_length=1)

    @model_validator(mode="after")
    def _partitions_consistent(self) -> _ProfileModel:
        if self.mig_family is not None and (self.max_partitions < 1 or self.placement_slots < 1):
            raise ValueError("a profile with mig_family needs max_partitions >= 1 and placement_slots >= 1")
        if self.placeholder and "PLACEHOLDER" not in self.notes:
            raise ValueError("a placeholder profile must say PLACEHOLDER in its notes")
        return self


def _read_yaml(path: Path) -> Any:
    return yamlsafe.load_file(path, what="hardware profile")


def _pydantic_errors(err: ValidationError, *, file: Path, obj: str | None) -> TwinInputError:
    errors = [
        TwinInputError(
            e["msg"],
            file=str(file),
            obj=obj,
            field=".".join(str(p) for p in e["loc"]) or None,
            value=e.get("input") if e["loc"] else None,
        )
        for e in err.errors()
    ]
    return errors[0] if len(errors) == 1 else TwinInputErrors(errors)


def _load_families(directory: Path) -> dict[str, tuple[MigTemplate, ...]]:
    families: dict[str, tuple[MigTemplate, ...]] = {}
    tdir = directory / TEMPLATES_SUBDIR
    if not tdir.is_dir():
        return families
    for path in sorted(tdir.glob("*.yaml")):
        raw = _read_yaml(path)
        try:
            fam = _TemplateFamilyModel.model_validate(raw)
        except ValidationError as err:
            raise _pydantic_errors(err, file=path, obj=None) from err
        if fam.family != path.stem:
            raise TwinInputError("family must equal the file name", file=str(path), field="family", value=fam.family)
        families[fam.family] = tuple(
            MigTemplate(
                id=t.id,
                name=t.name,
                nvml_profile=t.nvml_profile,
                memory_gib=t.memory_gib,
                compute_percent=t.compute_percent,
                max_instances=t.max_instances,
                placement_starts=tuple(t.placement_starts),
                slots=t.slots,
            )
            for t in fam.templates
        )
    return families


def _check_templates_fit(path: Path, prof: _ProfileModel, templates: tuple[MigTemplate, ...]) -> None:
    for tpl in templates:
        last = max(tpl.placement_starts) + tpl.slots
        if last > prof.placement_slots:
            raise TwinInputError(
                f"template {tpl.id} ends at slot {last}, beyond placement_slots",
                file=str(path),
                obj=prof.key,
                field="placement_slots",
                value=prof.placement_slots,
            )
        if tpl.memory_gib > prof.vram_gib:
            raise TwinInputError(
                f"template {tpl.id} needs {tpl.memory_gib} GiB, more than the card has",
                file=str(path),
                obj=prof.key,
                field="vram_gib",
                value=prof.vram_gib,
            )


def load_profile(path: Path, families: Mapping[str, tuple[MigTemplate, ...]]) -> HardwareProfile:
    raw = _read_yaml(path)
    obj = raw.get("key") if isinstance(raw, dict) and isinstance(raw.get("key"), str) else None
    try:
        model = _ProfileModel.model_validate(raw)
    except ValidationError as err:
        raise _pydantic_errors(err, file=path, obj=obj) from err
    if model.key != path.stem:
        raise TwinInputError(
            "key must equal the file name (one file per model)", file=str(path), field="key", value=model.key
        )
    templates: tuple[MigTemplate, ...] = ()
    if model.mig_family is not None:
        if model.mig_family not in families:
            raise TwinInputError(
                f"unknown template family; known: {', '.join(sorted(families)) or 'none'}",
                file=str(path),
                obj=model.key,
                field="mig_family",
                value=model.mig_family,
            )
        templates = families[model.mig_family]
        _check_templates_fit(path, model, templates)
    return HardwareProfile(
        key=model.key,
        nvml_name=model.nvml_name,
        vendor=model.vendor,
        fp16_tflops=model.fp16_tflops,
        vram_bytes=int(round(model.vram_gib * GIB)),
        mem_bandwidth_gbps=model.mem_bandwidth_gbps,
        cost_per_hour=model.cost_per_hour,
        max_partitions=model.max_partitions,
        placement_slots=model.placement_slots,
        mig_templates=templates,
        aliases=tuple(model.aliases),
        notes=" ".join(model.notes.split()),
        placeholder=model.placeholder,
        fp8_tflops=model.fp8_tflops,
        interconnect_gbps=model.interconnect_gbps,
    )


def load_catalog(directory: Path) -> HardwareCatalog:
    """Every ``*.yaml`` profile in ``directory`` plus the template families in ``directory/templates``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TwinInputError("hardware profile directory not found", file=str(directory))
    families = _load_families(directory)
    profiles = [load_profile(p, families) for p in sorted(directory.glob("*.yaml"))]
    if not profiles:
        raise TwinInputError("no hardware profiles (*.yaml) in directory", file=str(directory))
    return HardwareCatalog(profiles)


def default_profiles_dir() -> Path:
    """The repository's ``hw_profiles/``; an installed wheel falls back to ``twin/hw_profiles`` package data."""
    repo = Path(__file__).resolve().parents[1] / "hw_profiles"
    if repo.is_dir():
        return repo
    return Path(str(importlib.resources.files("twin") / "hw_profiles"))


@functools.cache
def default_catalog() -> HardwareCatalog:
    return load_catalog(default_profiles_dir())
