"""docs/hardware.md's catalogue table matches the shipped profiles."""

from __future__ import annotations

from pathlib import Path

from twin.hardware import default_catalog
from twin.resources import GIB

DOC = Path(__file__).resolve().parents[2] / "docs" / "hardware.md"


def _table_rows() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        key = cells[0].split("`")[1]
        rows[key] = cells
    return rows


def test_doc_table_lists_every_profile_with_its_numbers() -> None:
    rows = _table_rows()
    catalog = default_catalog()
    assert sorted(rows) == catalog.keys()
    for prof in catalog:
        cells = rows[prof.key]
        assert cells[1] == prof.nvml_name
        assert cells[2] == prof.vendor
        assert float(cells[3]) == prof.fp16_tflops
        assert float(cells[4]) * GIB == prof.vram_bytes
        assert float(cells[5]) == prof.mem_bandwidth_gbps
        assert float(cells[6]) == prof.cost_per_hour
        assert ("placeholder" in cells[0]) == prof.placeholder
        assert (cells[7] == "-") == (not prof.mig_templates)
