"""The pydantic base for every user-written object, and field types that parse Kubernetes quantities.

Models are frozen (validated once, at the edge, then only read) and ignore fields the twin does
not use, so a manifest copied from a real cluster loads unchanged. Quantities are parsed into
numbers on the way in; a bad one becomes a pydantic error at its field path, which the loader
turns into a TwinInputError naming the file, object, field and value.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictBool, StrictInt
from pydantic.alias_generators import to_camel

from twin.errors import TwinInputError
from twin.resources import Resource
from twin.units import parse_bytes, parse_decimal, parse_duration, parse_percent, parse_tflops


class SpecModel(BaseModel):
    """camelCase field names as in the CRDs, unknown fields ignored, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True, allow_inf_nan=False
    )


def _as_value_error(fn: Any) -> Any:
    """Wrap a units parser so pydantic records its message at the field path."""

    def validate(value: Any) -> Any:
        try:
            return fn(value)
        except TwinInputError as err:
            raise ValueError(err.message) from None

    return validate


def _ratio(value: Any) -> float:
    return float(parse_decimal(value))


def _price(value: Any) -> float:
    """``"$0.0069228"`` or ``0.0069228`` -> 0.0069228 (TensorFusion writes prices with a dollar sign)."""
    if isinstance(value, str):
        value = value.strip().removeprefix("$")
    amount = parse_decimal(value)
    if amount < Decimal(0):
        raise TwinInputError("a price must not be negative", value=value)
    return float(amount)


def _duration(value: Any) -> float:
    return parse_duration(value)


TFlopsQ = Annotated[float, BeforeValidator(_as_value_error(parse_tflops))]
BytesQ = Annotated[int, BeforeValidator(_as_value_error(parse_bytes))]
PercentQ = Annotated[float, BeforeValidator(_as_value_error(parse_percent))]
RatioQ = Annotated[float, BeforeValidator(_as_value_error(_ratio))]
PriceQ = Annotated[float, BeforeValidator(_as_value_error(_price))]
DurationQ = Annotated[float, BeforeValidator(_as_value_error(_duration))]
Bool = StrictBool
Int = StrictInt


class ResourceSpec(SpecModel):
    """TensorFusion ``Resource{tflops, compute, vram}``; ``compute`` is a percent of one device."""

    tflops: TFlopsQ = 0.0
    compute: PercentQ = 0.0
    vram: BytesQ = 0

    def to_resource(self) -> Resource:
        return Resource(tflops=self.tflops, vram=self.vram, compute_percent=self.compute)


class ResourcesSpec(SpecModel):
    requests: ResourceSpec = ResourceSpec()
    limits: ResourceSpec = ResourceSpec()


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("metadata", "annotations", "tensor-fusion.ai/qos")`` -> ``metadata.annotations["tensor-fusion.ai/qos"]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif any(c in part for c in "./ ") or not part:
            text += f'["{part}"]'
        else:
            text += f".{part}" if text else part
    return text
