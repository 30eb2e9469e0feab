"""``twin hw list`` and ``twin hw show KEY``: the GPU hardware catalogue (hw_profiles/)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console, JustifyMethod
from rich.table import Table

from twin.hardware import HardwareCatalog, HardwareProfile, default_catalog, load_catalog
from twin.resources import GIB

_profiles_option = click.option(
    "--profiles",
    "profiles_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="directory of profile YAML files (default: the shipped hw_profiles/)",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")


def _catalog(profiles_dir: Path | None) -> HardwareCatalog:
    return default_catalog() if profiles_dir is None else load_catalog(profiles_dir)


def profile_to_dict(prof: HardwareProfile) -> dict[str, Any]:
    """A JSON-ready view: the dataclass fields plus VRAM in GiB and each template's resources."""
    data = asdict(prof)
    data["vram_gib"] = prof.vram_bytes / GIB
    for tpl_data, tpl in zip(data["mig_templates"], prof.mig_templates, strict=True):
        res = tpl.resources(prof.fp16_tflops)
        tpl_data["tflops"] = res.tflops
        tpl_data["vram_bytes"] = res.vram
    return data


def _mig_summary(prof: HardwareProfile) -> str:
    if not prof.mig_templates:
        return "-"
    return f"{prof.max_partitions}/{prof.placement_slots} ({len(prof.mig_templates)} templates)"


@click.group()
def hw() -> None:
    """GPU hardware profiles: TFLOPs, VRAM, bandwidth, price, MIG templates."""


@hw.command("list")
@_profiles_option
@_json_option
def list_profiles(profiles_dir: Path | None, as_json: bool) -> None:
    """List every profile."""
    catalog = _catalog(profiles_dir)
    if as_json:
        click.echo(json.dumps([profile_to_dict(p) for p in catalog], indent=2))
        return
    table = Table(title=f"{len(catalog)} GPU hardware profiles")
    columns: list[tuple[str, JustifyMethod]] = [
        ("key", "left"),
        ("NVML name", "left"),
        ("vendor", "left"),
        ("FP16 TFLOPs", "right"),
        ("VRAM GiB", "right"),
        ("GB/s", "right"),
        ("$/h", "right"),
        ("MIG parts/slots", "left"),
    ]
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for prof in catalog:
        table.add_row(
            prof.key + (" *" if prof.placeholder else ""),
            prof.nvml_name,
            prof.vendor,
            f"{prof.fp16_tflops:g}",
            f"{prof.vram_bytes / GIB:g}",
            f"{prof.mem_bandwidth_gbps:g}",
            f"{prof.cost_per_hour:.2f}",
            _mig_summary(prof),
        )
    console = Console()
    console.print(table)
    if any(p.placeholder for p in catalog):
        console.print("* placeholder numbers (undisclosed model); see `twin hw show KEY`")


@hw.command("show")
@click.argument("key")
@_profiles_option
@_json_option
def show(key: str, profiles_dir: Path | None, as_json: bool) -> None:
    """Show one profile by key, alias (e.g. h100) or NVML name."""
    catalog = _catalog(profiles_dir)
    prof = catalog.find(key) or catalog.match_nvml_name(key) or catalog.get(key)
    if as_json:
        click.echo(json.dumps(profile_to_dict(prof), indent=2))
        return
    console = Console()
    info = Table(show_header=False, title=prof.key)
    info.add_column("field")
    info.add_column("value")
    rows = [
        ("NVML name", prof.nvml_name),
        ("vendor", prof.vendor),
        ("FP16 TFLOPs (dense)", f"{prof.fp16_tflops:g}"),
        ("VRAM", f"{prof.vram_bytes / GIB:g} GiB ({prof.vram_bytes} bytes)"),
        ("memory bandwidth", f"{prof.mem_bandwidth_gbps:g} GB/s"),
        ("FP8 TFLOPs (dense)", f"{prof.fp8_tflops:g}" if prof.fp8_tflops is not None else "- (no FP8)"),
        ("GPU interconnect", f"{prof.interconnect_gbps:g} GB/s per direction" if prof.interconnect_gbps else "-"),
        ("cost per hour", f"${prof.cost_per_hour:.2f}"),
        ("max partitions / slots", f"{prof.max_partitions} / {prof.placement_slots}"),
        ("aliases", ", ".join(prof.aliases) or "-"),
        ("placeholder", "yes" if prof.placeholder else "no"),
        ("notes", prof.notes),
    ]
    for name, value in rows:
        info.add_row(name, value)
    console.print(info)
    if prof.mig_templates:
        mig = Table(title="MIG templates")
        for col in ("id", "name", "NVML profile", "GiB", "compute %", "TFLOPs", "max", "starts", "slots"):
            mig.add_column(col)
        for tpl in prof.mig_templates:
            mig.add_row(
                tpl.id,
                tpl.name,
                str(tpl.nvml_profile),
                f"{tpl.memory_gib:g}",
                f"{tpl.compute_percent:g}",
                f"{tpl.resources(prof.fp16_tflops).tflops:g}",
                str(tpl.max_instances),
                ",".join(str(s) for s in tpl.placement_starts),
                str(tpl.slots),
            )
        console.print(mig)
