"""The decision log: every arrival, binding, refusal, preemption, eviction, OOM, fault and finish.

Entries are kept as small tuples while the run goes and rendered to JSON lines once at the end,
with sorted keys and fixed float formatting, so equal runs give byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Subscriber = Callable[[float, str, str, dict[str, Any]], None]  # (t, kind, subject, details)
Observer = Callable[[float, Any, dict[str, Any]], None]  # (t, about, details)


class EventLog:
    """Records decisions (when ``enabled``), counts them, and publishes them to subscribers.

    Observers (the metrics collector, the fragmentation probe, reports, controllers, tests)
    listen to the kinds they need instead of reading the engine's attributes; they hear every
    event of that kind, recorded or not. Two ways to listen:

    * :meth:`subscribe`: ``fn(t, kind, subject, details)`` with the details as recorded;
    * :meth:`observe`: ``fn(t, about, details)`` with the object the event is about (the pod, a
      rollout's phase mark), which is never rendered. An observer does not make the engine build
      details it would otherwise skip (``bind`` without a record or a subscriber): it may get ``{}``.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.entries: list[tuple[float, str, str, dict[str, Any]]] = []
        self.counts: dict[str, int] = {}
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._observers: dict[str, list[Observer]] = {}

    def subscribe(self, kind: str, fn: Subscriber) -> None:
        """Call ``fn(t, kind, subject, details)`` for every later event of ``kind``."""
        self._subscribers.setdefault(kind, []).append(fn)

    def observe(self, kind: str, fn: Observer) -> None:
        """Call ``fn(t, about, details)`` for every later event of ``kind`` (in subscription order)."""
        self._observers.setdefault(kind, []).append(fn)

    def wants_details(self, kind: str) -> bool:
        """Whether an event of ``kind`` needs its details built (recorded, or a subscriber listens)."""
        return self.enabled or kind in self._subscribers

    def log(self, t: float, kind: str, subject: str, about: Any = None, /, **details: Any) -> None:
        """Count and record an event and tell its listeners; ``about`` goes to observers only."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.enabled:
            self.entries.append((t, kind, subject, details))
        subscribers = self._subscribers.get(kind)
        if subscribers:
            for fn in subscribers:
                fn(t, kind, subject, details)
        observers = self._observers.get(kind)
        if observers:
            for ob in observers:
                ob(t, about, details)

    def to_jsonl(self) -> str:
        lines = []
        for t, kind, subject, details in self.entries:
            record: dict[str, Any] = {"t": round(t, 6), "event": kind, "subject": subject}
            for key, value in details.items():
                if value is not None:
                    record[key] = round(value, 6) if isinstance(value, float) else value
            lines.append(json.dumps(record, sort_keys=True, separators=(",", ":")))
        return "\n".join(lines) + ("\n" if lines else "")
