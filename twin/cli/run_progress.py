"""Progress of many runs on any terminal: a rich bar on a TTY, plain throttled lines otherwise.

A CI log or a pipe gets one line every few seconds (``sweep: 12/40 runs, 0:00:31``) and a last
line at the end, so a long sweep off a terminal never looks hung and never floods the log.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

PLAIN_EVERY_S = 5.0


class RunProgress:
    def __init__(self, console: Console, description: str, total: int | None, *, unit: str = "runs") -> None:
        self._console = console
        self._description = description
        self._total = total
        self._unit = unit
        self._done = 0
        self._started = time.monotonic()
        self._last_line = self._started
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )

    def __enter__(self) -> RunProgress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self._description, total=self._total)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif kind is None:
            self._line()

    def advance(self, count: int = 1) -> None:
        self._done += count
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, count)
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_EVERY_S:
            self._line()

    def describe(self, text: str) -> None:
        self._description = text
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=text)

    def _line(self) -> None:
        self._last_line = time.monotonic()
        elapsed = int(self._last_line - self._started)
        of = f"/{self._total}" if self._total is not None else ""
        clock = f"{elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
        self._console.print(f"{self._description}: {self._done}{of} {self._unit}, {clock}", highlight=False)
