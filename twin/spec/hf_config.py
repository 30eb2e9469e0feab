"""A model's architecture from its Hugging Face ``config.json``: what a step-time model needs to know.

Read at the edge, bounded and validated: layers, hidden size, attention and KV heads, head size,
(dense) intermediate size, experts and active experts (Mixtral ``num_local_experts``, Qwen-MoE
``num_experts`` / ``moe_intermediate_size`` / ``shared_expert_intermediate_size``), vocabulary and
whether the embeddings are tied. Unknown keys are ignored (a config has dozens); a missing or
out-of-range key is an error naming the file, the field and the value.

Models are named by a path to a ``config.json``, a name in the built-in table
(:data:`twin.spec.model_catalog.KNOWN_MODELS`), or a Hugging Face id whose config lies in a models
directory (``<dir>/<org>/<name>.json``, the layout of ``../shared/data/vllm-real/models``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.errors import TwinInputError

MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few KB; refuse anything that is clearly not one
_BOUNDS: dict[str, tuple[int, int]] = {
    "num_hidden_layers": (1, 1024),
    "hidden_size": (1, 1 << 17),
    "num_attention_heads": (1, 1024),
    "num_key_value_heads": (1, 1024),
    "head_dim": (1, 4096),
    "intermediate_size": (1, 1 << 20),
    "vocab_size": (1, 1 << 22),
    "num_experts": (0, 4096),
    "num_experts_per_tok": (0, 256),
    "moe_intermediate_size": (1, 1 << 20),
    "shared_expert_intermediate_size": (0, 1 << 20),
}


@dataclass(frozen=True)
class ModelArch:
    """A decoder-only transformer, as the step-time model sees it (gated MLP, grouped-query attention)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # dense MLP width (per expert for MoE models without moe_intermediate_size)
    vocab: int
    experts: int = 0  # 0 = dense
    active_experts: int = 0
    expert_intermediate: int = 0
    shared_expert_intermediate: int = 0
    tied_embeddings: bool = False

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def attn_params_per_layer(self) -> int:
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        return self.hidden * q + 2 * self.hidden * kv + q * self.hidden

    @property
    def expert_params(self) -> int:
        """One routed expert's gated MLP (gate, up, down)."""
        return 3 * self.hidden * self.expert_intermediate

    @property
    def dense_mlp_params_per_layer(self) -> int:
        """The MLP weights every token uses: the dense MLP, or an MoE layer's router and shared expert."""
        if not self.is_moe:
            return 3 * self.hidden * self.intermediate
        return self.hidden * self.experts + 3 * self.hidden * self.shared_expert_intermediate

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def total_params(self) -> int:
        per_layer = self.attn_params_per_layer + self.dense_mlp_params_per_layer + self.experts * self.expert_params
        head = 0 if self.tied_embeddings else self.embedding_params
        return self.layers * per_layer + self.embedding_params + head

    @property
    def active_params(self) -> int:
        """Parameters one token's forward pass multiplies (embedding lookup excluded, LM head included)."""
        per_layer = (
            self.attn_params_per_layer + self.dense_mlp_params_per_layer + self.active_experts * self.expert_params
        )
        return self.layers * per_layer + self.embedding_params

    def kv_bytes_per_token(self, kv_dtype_bytes: float) -> float:
        """K and V of one token over all layers."""
        return 2.0 * self.layers * self.kv_heads * self.head_dim * kv_dtype_bytes


def _int(raw: Mapping[str, Any], key: str, file: str, default: int | None = None) -> int:
    if key not in raw or raw[key] is None:
        if default is None:
            raise TwinInputError("missing from the model config", file=file, field=key)
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TwinInputError("must be an integer", file=file, field=key, value=value)
    lo, hi = _BOUNDS[key]
    if not lo <= value <= hi:
        raise TwinInputError(f"must be in [{lo}, {hi}]", file=file, field=key, value=value)
    return value


def arch_from_dict(raw: object, name: str, file: str) -> ModelArch:
    """Validate a parsed ``config.json``; ``file`` names it in errors."""
    if not isinstance(raw, dict):
        raise TwinInputError("a model config is a JSON object", file=file, value=type(raw).__name__)
    if "text_config" in raw and isinstance(raw["text_config"], dict):
        raw = {**raw, **raw["text_config"]}  # multimodal wrappers keep the language model here
    layers = _int(raw, "num_hidden_layers", file)
    hidden = _int(raw, "hidden_size", file)
    heads = _int(raw, "num_attention_heads", file)
    kv_heads = _int(raw, "num_key_value_heads", file, default=heads)
    if heads % kv_heads:
        raise TwinInputError(
            f"must divide num_attention_heads ({heads})", file=file, field="num_key_value_heads", value=kv_heads
        )
    head_dim = _int(raw, "head_dim", file, default=max(hidden // heads, 1))
    intermediate = _int(raw, "intermediate_size", file)
    vocab = _int(raw, "vocab_size", file)
    if raw.get("num_experts") is None and raw.get("num_local_experts") is not None:
        raw = {**raw, "num_experts": raw["num_local_experts"]}  # Mixtral's name for it
    experts = _int(raw, "num_experts", file, default=0)
    active = _int(raw, "num_experts_per_tok", file, default=0) if experts else 0
    if experts and not 1 <= active <= experts:
        raise TwinInputError(
            f"must be in [1, num_experts={experts}] for a mixture-of-experts model",
            file=file,
            field="num_experts_per_tok",
            value=raw.get("num_experts_per_tok"),
        )
    expert_inter = _int(raw, "moe_intermediate_size", file, default=intermediate) if experts else 0
    shared = _int(raw, "shared_expert_intermediate_size", file, default=0) if experts else 0
    tied = raw.get("tie_word_embeddings", False)
    if not isinstance(tied, bool):
        raise TwinInputError("must be true or false", file=file, field="tie_word_embeddings", value=tied)
    return ModelArch(
        name=name,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=intermediate,
        vocab=vocab,
        experts=experts,
        active_experts=active,
        expert_intermediate=expert_inter,
        shared_expert_intermediate=shared,
        tied_embeddings=tied,
    )


def load_hf_config(path: Path, name: str | None = None) -> ModelArch:
    """Read and validate one ``config.json``."""
    file = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise TwinInputError(f"larger than {MAX_CONFIG_BYTES} bytes: not a model config", file=file, value=size)
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise TwinInputError(f"cannot read: {err.strerror}", file=file) from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TwinInputError(f"not valid JSON: {err}", file=file) from err
    return arch_from_dict(raw, name or path.stem, file)


def resolve_model(ref: str, search_dirs: Sequence[Path] = ()) -> ModelArch:
    """A model by config path, built-in name, or Hugging Face id (``org/name``) under ``search_dirs``.

    Names match case-insensitively, with or without the organisation (``Llama-3.1-8B`` finds
    ``meta-llama/Llama-3.1-8B``).
    """
    from twin.spec.model_catalog import KNOWN_MODELS

    text = ref.strip()
    if not text or len(text) > 4096:
        raise TwinInputError("give a config.json path or a model name", field="model", value=ref)
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise TwinInputError("model config file not found", file=text, field="model")
        return load_hf_config(path)
    wanted = text.lower()
    for hf_id, raw in sorted(KNOWN_MODELS.items()):
        if wanted in (hf_id.lower(), hf_id.split("/")[-1].lower()):
            return arch_from_dict(raw, hf_id, f"built-in model {hf_id}")
    for directory in search_dirs:
        for candidate in sorted(Path(directory).glob("*/*.json")):
            hf_id = f"{candidate.parent.name}/{candidate.stem}"
            if wanted in (hf_id.lower(), candidate.stem.lower()):
                return load_hf_config(candidate, hf_id)
    known = ", ".join(sorted(k.split("/")[-1] for k in KNOWN_MODELS))
    raise TwinInputError(f"unknown model; give a config.json path or one of: {known}", field="model", value=ref)
