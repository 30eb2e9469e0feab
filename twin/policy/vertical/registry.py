"""Recommenders by name: ``percentile``, ``cron``, ``external`` (run in this order)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from twin.errors import TwinInputError
from twin.policy.registry import Registry
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


RECOMMENDERS: Registry[Recommender] = Registry("recommender", obj="recommender")
RECOMMENDERS.register("percentile", _percentile)
RECOMMENDERS.register("cron", _cron)
RECOMMENDERS.register("external", _external)


def recommender_names() -> list[str]:
    return RECOMMENDERS.names()


def get_recommender(name: str, **params: Any) -> Recommender:
    return RECOMMENDERS.get(name, **params)
