"""Scenario files: schema, clear errors (file, field path, value), --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from simtest_helpers import REPO, small_scenario

from twin.errors import TwinInputError, TwinInputErrors
from twin.resources import GIB, IsolationMode, QoS
from twin.scenario import (
    GeneratorWorkload,
    ManifestWorkload,
    apply_override,
    load_scenario,
    parse_duration,
    validate_scenario,
)


def _write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("15m", 900.0), ("1.5h", 5400.0), ("1d", 86400.0), ("1w", 604800.0), ("250ms", 0.25)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-1h", True, "1y"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_a_full_scenario_validates_into_typed_objects() -> None:
    sc = load_scenario(REPO / "scenarios" / "quickstart.yaml").scenario
    assert sc.duration == 86400.0
    assert sc.pools["h100"].isolation is IsolationMode.SOFT
    assert sc.default_pool == "h100"
    kinds = {type(w) for w in sc.workloads}
    assert kinds == {GeneratorWorkload}
    notebooks = sc.workloads[0]
    assert isinstance(notebooks, GeneratorWorkload)
    assert notebooks.qos == {QoS.LOW: 1.0}
    assert notebooks.shapes[0].request.to_resource().vram == 8 * GIB
    mig = load_scenario(REPO / "scenarios" / "migration.yaml").scenario
    assert isinstance(mig.workloads[0], ManifestWorkload)
    assert [u.at for u in mig.workloads[0].updates] == [6 * 3600.0, 12 * 3600.0, 18 * 3600.0, 24 * 3600.0]


def test_error_names_file_field_path_and_value(tmp_path: Path) -> None:
    data = small_scenario()
    data["pools"]["p"]["count"] = -2
    p = _write(tmp_path, data)
    with pytest.raises(TwinInputError) as err:
        load_scenario(p)
    e = err.value
    assert e.file == str(p)
    assert e.field == "pools.p.count"
    assert e.value == -2
    assert str(p) in str(e) and "pools.p.count" in str(e)


def test_unknown_fields_are_refused_with_their_path(tmp_path: Path) -> None:
    data = small_scenario(
        workloads=[
            {
                "name": "w",
                "arrival": {"process": "poisson", "rate_per_hour": 1},
                "shapes": [{"request": {"tflops": 1}}],
                "lifetime": 60,
                "lifetim": 3,
            }
        ]
    )
    with pytest.raises(TwinInputError) as err:
        load_scenario(_write(tmp_path, data))
    assert "workloads.0" in str(err.value) and "lifetim" in str(err.value)


def test_several_errors_are_reported_together(tmp_path: Path) -> None:
    data = small_scenario(duration="forever", seed="x")
    with pytest.raises(TwinInputErrors) as err:
        load_scenario(_write(tmp_path, data))
    fields = {e.field for e in err.value.errors}
    assert {"duration", "seed"} <= fields


def test_generator_needs_exactly_one_of_lifetime_and_work() -> None:
    data = small_scenario(
        workloads=[
            {"name": "w", "arrival": {"process": "poisson", "rate_per_hour": 1}, "shapes": [{"request": {"tflops": 1}}]}
        ]
    )
    with pytest.raises(TwinInputError, match="exactly one of lifetime"):
        validate_scenario(data)


def test_generator_pool_must_exist() -> None:
    data = small_scenario(
        workloads=[
            {
                "name": "w",
                "pool": "nope",
                "arrival": {"process": "poisson", "rate_per_hour": 1},
                "shapes": [{"request": {"tflops": 1}}],
                "lifetime": 60,
            }
        ]
    )
    with pytest.raises(TwinInputError, match="names pool 'nope'"):
        validate_scenario(data)


def test_overrides_set_dotted_paths_and_list_items_by_index_or_name() -> None:
    data = small_scenario(
        workloads=[
            {
                "name": "w",
                "arrival": {"process": "poisson", "rate_per_hour": 1},
                "shapes": [{"request": {"tflops": 1}}],
                "lifetime": 60,
            }
        ]
    )
    apply_override(data, "pools.p.count=8")
    apply_override(data, "seed=3")
    apply_override(data, "workloads.w.arrival.rate_per_hour=12.5")
    apply_override(data, "workloads.0.shapes.0.gpu_count=2")
    apply_override(data, "duration=6h")
    sc = validate_scenario(data)
    assert sc.pools["p"].count == 8 and sc.seed == 3 and sc.duration == 6 * 3600
    w = sc.workloads[0]
    assert isinstance(w, GeneratorWorkload)
    assert w.arrival.rate_per_hour == 12.5 and w.shapes[0].gpu_count == 2


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    p = _write(tmp_path, small_scenario())
    with pytest.raises(TwinInputError) as err:
        load_scenario(p, ["pools.p.count=lots"])
    assert err.value.field == "pools.p.count" and err.value.value == "lots"
    with pytest.raises(TwinInputError, match="no list item has this name"):
        load_scenario(p, ["workloads.missing.seed=1"])
    with pytest.raises(TwinInputError, match=r"key\.path=value"):
        load_scenario(p, ["seed"])


def test_unreadable_or_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(TwinInputError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(TwinInputError, match="mapping"):
        load_scenario(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(TwinInputError, match="invalid YAML"):
        load_scenario(broken)


def test_unknown_hardware_and_fault_node_are_input_errors() -> None:
    from simtest_helpers import loaded

    from twin.sim.engine import Simulation

    data = small_scenario()
    data["pools"]["p"]["hardware"] = "quantum-gpu"
    with pytest.raises(TwinInputError) as err:
        Simulation(loaded(data))
    assert err.value.field == "pools.p.hardware"
    data = small_scenario(faults=[{"kind": "node-failure", "node": "zz-9", "at": 10}])
    with pytest.raises(TwinInputError) as err:
        Simulation(loaded(data))
    assert err.value.field == "faults.0.node" and err.value.value == "zz-9"
