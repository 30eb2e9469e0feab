"""Hugging Face config.json at the edge: the architecture the step model needs, bounded and validated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.spec.hf_config import MAX_CONFIG_BYTES, arch_from_dict, load_hf_config, resolve_model
from twin.spec.model_catalog import KNOWN_MODELS

MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "vllm-real" / "models"
LLAMA: dict[str, Any] = dict(KNOWN_MODELS["meta-llama/Llama-3.1-8B"])


def test_known_models_have_their_published_sizes() -> None:
    sizes = {n: resolve_model(n).total_params / 1e9 for n in KNOWN_MODELS}
    assert sizes["meta-llama/Llama-3.1-8B"] == pytest.approx(8.03, abs=0.01)
    assert sizes["meta-llama/Llama-3.1-70B"] == pytest.approx(70.55, abs=0.01)
    assert sizes["Qwen/Qwen3-32B"] == pytest.approx(32.76, abs=0.01)
    assert sizes["Qwen/Qwen3-30B-A3B-Instruct-2507"] == pytest.approx(30.53, abs=0.01)
    assert sizes["mistralai/Mixtral-8x7B-v0.1"] == pytest.approx(46.70, abs=0.01)
    mixtral = resolve_model("mixtral-8x7b-v0.1")
    assert (mixtral.experts, mixtral.active_experts, mixtral.expert_intermediate) == (8, 2, 14336)


@pytest.mark.skipif(not MODELS.is_dir(), reason="../shared/data/vllm-real absent")
def test_the_shared_config_files_read_like_the_built_in_table() -> None:
    for path in sorted(MODELS.glob("*/*.json")):
        hf_id = f"{path.parent.name}/{path.stem}"
        from_file = load_hf_config(path, hf_id)
        assert from_file == resolve_model(hf_id)
        assert resolve_model(str(path)).layers == from_file.layers


def test_errors_name_the_file_field_and_value(tmp_path: Path) -> None:
    bad = {**LLAMA, "num_key_value_heads": 7}
    with pytest.raises(TwinInputError) as err:
        arch_from_dict(bad, "x", "cfg.json")
    assert err.value.file == "cfg.json" and err.value.field == "num_key_value_heads" and err.value.value == 7
    with pytest.raises(TwinInputError, match="missing") as err:
        arch_from_dict({k: v for k, v in LLAMA.items() if k != "hidden_size"}, "x", "cfg.json")
    assert err.value.field == "hidden_size"
    with pytest.raises(TwinInputError, match="integer"):
        arch_from_dict({**LLAMA, "num_hidden_layers": 32.0}, "x", "cfg.json")
    with pytest.raises(TwinInputError, match=r"\[1, 1024\]"):
        arch_from_dict({**LLAMA, "num_hidden_layers": 10**9}, "x", "cfg.json")
    with pytest.raises(TwinInputError, match="num_experts"):
        arch_from_dict({**LLAMA, "num_experts": 8, "num_experts_per_tok": 9}, "x", "cfg.json")
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(TwinInputError, match="not valid JSON") as err:
        load_hf_config(path)
    assert err.value.file == str(path)
    path.write_bytes(b" " * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(TwinInputError, match="larger than"):
        load_hf_config(path)
    with pytest.raises(TwinInputError, match="unknown model"):
        resolve_model("No-Such-Model-7B")
    with pytest.raises(TwinInputError, match="not found"):
        resolve_model(str(tmp_path / "absent.json"))


def test_a_config_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "my-model.json"
    path.write_text(json.dumps({**LLAMA, "text_config": {"vocab_size": 1000}}))
    arch = resolve_model(str(path))
    assert arch.name == "my-model" and arch.vocab == 1000 and arch.head_dim == 128


_values = st.one_of(st.integers(-5, 10**7), st.floats(allow_nan=True), st.text(max_size=3), st.none(), st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted({*LLAMA, "num_experts", "num_experts_per_tok", "head_dim"})), _values))
def test_any_mapping_gives_an_arch_or_one_clear_error(overrides: dict[str, Any]) -> None:
    try:
        arch = arch_from_dict({**LLAMA, **overrides}, "x", "cfg.json")
    except TwinInputError as err:
        assert err.file == "cfg.json" and err.field
    else:
        assert arch.layers >= 1 and arch.heads % arch.kv_heads == 0 and arch.total_params > 0
