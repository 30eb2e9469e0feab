"""The simulation kernel's clock: the one place a ``simpy.Environment`` is built.

Every simulator in the twin (the pool engine, the serving simulator, the trace replay) takes its
environment from :func:`new_environment`, so there is one notion of simulated time and one place
to change how it is driven (tests/test_architecture.py checks nobody else builds one).
"""

from __future__ import annotations

import simpy


def new_environment(initial_time: float = 0) -> simpy.Environment:
    """A fresh SimPy environment starting at ``initial_time`` seconds.

    The default is the integer 0, as SimPy's own: the first instant renders as ``0`` in the
    event logs, and the pinned output hashes depend on it."""
    return simpy.Environment(initial_time)
