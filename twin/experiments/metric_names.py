"""Check ``twin plan``'s metric names before the search simulates anything.

A mistyped objective used to fail only after the first configuration had simulated every seed.
A short probe run (the first configuration, one seed, a few simulated minutes) lists the metric
names the scenario reports. A percentile can be missing from a short run (no sample yet), so a name
also passes when its parent (``pending_time_s.high`` for ``pending_time_s.high.p99``) is reported;
the search still checks the full name on its first real evaluation.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence

from twin.errors import TwinInputError

PROBE_DURATION = "10m"
# Tried in order when no --objective is given: pool scenarios, then serving scenarios.
DEFAULT_OBJECTIVES = ("cost_usd.nodes", "cost")

Runner = Callable[[str, int, Sequence[str]], Mapping[str, float]]


def probe_metric_names(scenario: str, overrides: Sequence[str], runner: Runner) -> set[str]:
    return set(runner(scenario, 0, [*overrides, f"duration={PROBE_DURATION}"]))


def known(name: str, names: set[str]) -> bool:
    if name in names:
        return True
    parent = name.rpartition(".")[0]
    return bool(parent) and any(n.startswith(parent + ".") for n in names)


def check_metric_names(wanted: Mapping[str, str], names: set[str], *, scenario: str) -> None:
    """``wanted`` maps a flag (--objective, --constraint) to a metric name; raise naming the first unknown."""
    for flag, name in wanted.items():
        if known(name, names):
            continue
        close = difflib.get_close_matches(name, sorted(names), n=4, cutoff=0.5)
        close += [n for n in sorted(names) if name in n and n not in close][: 4 - len(close)]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise TwinInputError(
            f"the scenario reports no metric {name!r}{hint} (all names: twin run it and read summary.json, "
            "or see docs/sweeps.md)",
            file=scenario,
            field=flag,
            value=name,
        )


def default_objective(names: set[str]) -> str:
    for name in DEFAULT_OBJECTIVES:
        if name in names:
            return name
    raise TwinInputError("the scenario reports no cost metric; give --objective METRIC", field="--objective")
