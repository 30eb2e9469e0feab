"""A pytest fixture that gates scheduling-policy changes inside a user's own test suite.

Enable it with ``pytest_plugins = ["twin.testing"]`` in a ``conftest.py``, then::

    def test_placement_did_not_regress(twin_check):
        twin_check(["scenarios/quickstart.yaml"], baseline="tests/baseline.json")

It runs the scenarios over the baseline's seeds (``workers=2`` runs them in two processes), compares
the metric distributions with the baseline and fails with the table of what changed significantly.
Set ``TWIN_UPDATE_BASELINE=1`` to rewrite the baseline instead (review the diff, then commit it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from twin.experiments.check import run_check
from twin.experiments.executors import make_executor

CheckFn = Callable[..., None]


@pytest.fixture
def twin_check() -> CheckFn:
    def check(
        scenarios: Sequence[str | Path],
        *,
        baseline: str | Path,
        tolerance: Sequence[str] = (),
        runner: str | None = None,
        seeds: int | None = None,
        workers: int = 1,
    ) -> None:
        update = os.environ.get("TWIN_UPDATE_BASELINE", "") not in ("", "0", "false")
        with make_executor("local" if workers > 1 else "serial", workers) as pool:
            outcome = run_check(
                [str(s) for s in scenarios],
                str(baseline),
                tolerance=tolerance,
                update=update,
                runner=runner,
                seeds=seeds,
                pool=pool,
            )
        if outcome.failed:
            pytest.fail("twin check found regressions:\n" + outcome.table_text, pytrace=False)

    return check
