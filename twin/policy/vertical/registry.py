"""Recommenders by name: ``percentile``, ``cron``, ``external`` (run in this order)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from twin.errors import TwinInputError
from twin.policy.vertical.cron import EPOCH, CronRecommender
from twin.policy.vertical.external import ExternalRecommender, ExternalScaler
from twin.policy.vertical.percentile import PercentileRecommender
from twin.policy.vertical.types import Recommender


def _percentile(**params: Any) -> Recommender:
    if params:
        raise TwinInputError("the percentile recommender takes no parameters", obj="recommender", value=sorted(params))
    return PercentileRecommender()


def _cron(*, epoch: datetime = EPOCH) -> Recommender:
    return CronRecommender(epoch)


def _external(*, scaler: ExternalScaler) -> Recommender:
    return ExternalRecommender(scaler)


_REGISTRY: dict[str, Callable[..., Recommender]] = {
    "percentile": _percentile,
    "cron": _cron,
    "external": _external,
}


def recommender_names() -> list[str]:
    return list(_REGISTRY)


def get_recommender(name: str, **params: Any) -> Recommender:
    factory = _REGISTRY.get(name)
    if factory is None:
        raise TwinInputError(f"unknown recommender; known: {', '.join(_REGISTRY)}", obj="recommender", value=name)
    try:
        return factory(**params)
    except TypeError as err:
        raise TwinInputError(
            f"bad parameters for recommender {name!r}: {err}", obj="recommender", value=params
        ) from None
