"""Label selectors for ``verticalScalingRules`` (``metav1.LabelSelector``: matchLabels + matchExpressions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from twin.errors import TwinInputError


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: SelectorOperator
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # The API server's rule: In/NotIn need values, Exists/DoesNotExist take none.
        needs_values = self.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN)
        if needs_values and not self.values:
            raise TwinInputError(
                f"operator {self.operator.value} needs values", field="matchExpressions", value=self.key
            )
        if not needs_values and self.values:
            raise TwinInputError(
                f"operator {self.operator.value} takes no values", field="matchExpressions", value=self.values
            )

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator is SelectorOperator.IN:
            return present and labels[self.key] in self.values
        if self.operator is SelectorOperator.NOT_IN:
            return not present or labels[self.key] not in self.values
        if self.operator is SelectorOperator.EXISTS:
            return present
        return not present


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """All of ``match_labels`` and all ``match_expressions`` must hold; an empty selector matches all."""

    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(r.matches(labels) for r in self.match_expressions)
