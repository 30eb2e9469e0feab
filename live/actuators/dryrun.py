"""The default actuator: log every decision (JSON Lines if a file is given), change nothing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import IO

from live.decisions import Decision, LimiterUpdate, decision_dict
from live.inventory import Inventory
from live.workers import Worker

log = logging.getLogger("live.decisions")


class DryRunActuator:
    """Logs decisions. Limiter ticks (two per second per worker) go to DEBUG, the rest to INFO."""

    name = "dry-run"

    def __init__(self, path: str | Path | None = None) -> None:
        # The log stays open for the agent's lifetime; close() ends it.
        self._fh: IO[str] | None = Path(path).open("a", encoding="utf-8") if path is not None else None  # noqa: SIM115
        self.seen: list[Decision] = []

    def apply(self, decision: Decision, worker: Worker | None, inventory: Inventory) -> tuple[int, ...]:
        self.seen.append(decision)
        body = decision_dict(decision)
        level = logging.DEBUG if isinstance(decision, LimiterUpdate) else logging.INFO
        log.log(level, "dry-run: %s", json.dumps(body, sort_keys=True))
        if self._fh is not None:
            self._fh.write(json.dumps(body, sort_keys=True) + "\n")
            self._fh.flush()
        return ()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
