"""``twin plan`` constraints on each served model's metrics (issue 14, item 5): parsing, selectors
(key, namespace, model ID, glob), one constraint per model, and errors that list what exists."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.experiments.plan import Constraint, parse_constraint
from twin.experiments.serving_constraints import aliases, expand, model_keys, resolve, select

CHAT = "meta-llama/Llama-3.1-8B|llm-chat"
ASSIST = "mistralai/Mistral-7B-v0.1|llm-assist"
MODEL_METRICS = ("slo.ttft_ms", "slo.itl_ms", "slo_attainment", "ttft_attainment", "ttft_ms.p95", "avg_replicas")


def names_for(*keys: str) -> set[str]:
    """A run's flat metric names with these served models (as twin.experiments.runner flattens them)."""
    names = {"cost_usd.nodes", "slo_attainment", "slo_attainment.medium", "workers.arrived"}
    names |= {f"serving.{k}.{m}" for k in keys for m in MODEL_METRICS}
    return names


NAMES = names_for(CHAT, ASSIST)


def test_model_keys_are_read_from_the_run_names() -> None:
    assert model_keys(NAMES) == [CHAT, ASSIST]  # sorted: meta-llama < mistralai
    assert model_keys({"cost_usd.nodes", "slo_attainment"}) == []


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (CHAT, [CHAT]),  # the key itself
        ("llm-assist", [ASSIST]),  # the namespace
        ("meta-llama/Llama-3.1-8B", [CHAT]),  # the model ID
        ("Mistral-7B-v0.1", [ASSIST]),  # the ID's last part
        ("*", [ASSIST, CHAT]),  # every model
        ("llm-*", [ASSIST, CHAT]),
        ("*Llama*", [CHAT]),
        ("nope", []),
    ],
)
def test_selectors(selector: str, expected: list[str]) -> None:
    assert select(selector, [ASSIST, CHAT]) == expected


def test_a_glob_constraint_becomes_one_constraint_per_model() -> None:
    out = expand([parse_constraint("serving.*.slo_attainment>=0.95")], NAMES)
    assert [str(c) for c in out] == [f"serving.{CHAT}.slo_attainment>=0.95", f"serving.{ASSIST}.slo_attainment>=0.95"]


def test_dotted_model_ids_and_dotted_metrics_split_where_both_exist() -> None:
    # The model ID holds dots (Llama-3.1-8B) and so does the metric (ttft_ms.p95).
    assert resolve(f"serving.{CHAT}.ttft_ms.p95", NAMES) == [f"serving.{CHAT}.ttft_ms.p95"]
    assert resolve("serving.Llama-3.1-8B.ttft_ms.p95", NAMES) == [f"serving.{CHAT}.ttft_ms.p95"]
    # A percentile missing from the short probe run passes when its parent is reported.
    assert resolve("serving.llm-chat.ttft_ms.p99", NAMES) == [f"serving.{CHAT}.ttft_ms.p99"]


def test_other_constraints_pass_through_and_duplicates_collapse() -> None:
    cs = [
        parse_constraint("slo_attainment.medium>=0.9"),
        parse_constraint("serving.llm-chat.slo_attainment>=0.95"),
        parse_constraint("serving.Llama-3.1-8B.slo_attainment>=0.95"),
    ]
    out = expand(cs, NAMES)
    assert out == [
        Constraint("slo_attainment.medium", ">=", 0.9),
        Constraint(f"serving.{CHAT}.slo_attainment", ">=", 0.95),
    ]


def test_an_unknown_model_lists_the_models() -> None:
    with pytest.raises(TwinInputError) as err:
        resolve("serving.llm-code.slo_attainment", NAMES, scenario="cap.yaml")
    msg = str(err.value)
    assert "no served model matches" in msg and CHAT in msg and ASSIST in msg and "cap.yaml" in msg
    assert "serving.llm-code.slo_attainment" in msg  # the value


def test_an_unknown_metric_lists_the_models_metrics() -> None:
    with pytest.raises(TwinInputError) as err:
        resolve("serving.*.slo_attainmnet", NAMES)
    msg = str(err.value)
    assert "reports no metric 'slo_attainmnet'" in msg and "slo_attainment" in msg and "ttft_ms.p95" in msg


def test_a_scenario_without_models_says_so() -> None:
    with pytest.raises(TwinInputError, match="serves no models"):
        resolve("serving.*.slo_attainment", {"cost_usd.nodes"})


def test_constraint_text_forms() -> None:
    assert parse_constraint(f"serving.{CHAT}.slo_attainment >= 0.95") == Constraint(
        f"serving.{CHAT}.slo_attainment", ">=", 0.95
    )
    assert parse_constraint("serving.*.ttft_ms.p95<800") == Constraint("serving.*.ttft_ms.p95", "<", 800.0)
    for bad in ("slo => 1", "slo>=", ">=1", "a b>=1", "slo>=abc", "x" * 600 + ">=1"):
        with pytest.raises(TwinInputError, match="--constraint"):
            parse_constraint(bad)


_ID_PART = st.text(st.sampled_from("abcXYZ019-_."), min_size=1, max_size=12).filter(lambda s: s.strip("."))
_NS = st.text(st.sampled_from("abc019-"), min_size=1, max_size=10)
_KEYS = st.lists(
    st.builds(lambda org, name, ns: f"{org}/{name}|{ns}", _ID_PART, _ID_PART, _NS), min_size=1, max_size=4, unique=True
)


@given(keys=_KEYS, metric=st.sampled_from(MODEL_METRICS), op=st.sampled_from([">=", "<=", ">", "<"]))
def test_property_a_full_key_resolves_to_exactly_that_model(keys: list[str], metric: str, op: str) -> None:
    names = names_for(*keys)
    for key in keys:
        c = parse_constraint(f"serving.{key}.{metric}{op}0.5")
        assert expand([c], names) == [Constraint(f"serving.{key}.{metric}", op, 0.5)]
    every = expand([parse_constraint(f"serving.*.{metric}>=0.5")], names)
    assert [c.metric for c in every] == [f"serving.{k}.{metric}" for k in sorted(keys)]


@given(keys=_KEYS, selector=st.text(st.sampled_from("abc/|-.*?"), min_size=1, max_size=8))
def test_property_a_selector_names_only_models_it_matches(keys: list[str], selector: str) -> None:
    chosen = select(selector, sorted(keys))
    assert chosen == [k for k in sorted(keys) if k in chosen]  # in key order, no duplicates
    for k in chosen:
        assert any(a == selector for a in aliases(k)) or set("*?") & set(selector)


_PRINTABLE = st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="<>=!")


@given(metric=st.text(_PRINTABLE, min_size=1, max_size=40), op=st.sampled_from([">=", "<=", ">", "<"]))
def test_property_constraint_parse_round_trips(metric: str, op: str) -> None:
    assume(metric[0].isalpha() or metric[0] in "_*?[")
    c = parse_constraint(f" {metric} {op} 0.25 ")
    assert c == Constraint(metric, op, 0.25) and parse_constraint(str(c)) == c
