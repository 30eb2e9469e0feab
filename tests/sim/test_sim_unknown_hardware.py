from __future__ import annotations

from pathlib import Path

import pytest

from twin.errors import TwinInputError
from twin.scenario import load_scenario
from twin.sim.engine import Simulation


def test_unknown_hardware_names_file_field_value_and_the_known_keys(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nduration: 1h\npools: {a: {hardware: h100x, count: 1}}\n")
    with pytest.raises(TwinInputError) as err:
        Simulation(load_scenario(path))
    text = str(err.value)
    for part in (str(path), "pools.a.hardware", "'h100x'", "H100_SXM"):
        assert part in text
