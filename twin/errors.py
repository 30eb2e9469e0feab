"""One error type for bad user input: it names the file, the object, the field and the value."""

from __future__ import annotations

import reprlib

# Errors quote the offending value; an expanded YAML alias bomb or a 1 GB line must not be printed whole.
REPR_MAX_CHARS = 200


def short(value: object, limit: int = REPR_MAX_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters (containers cut before repr walks them)."""
    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlevel = 3
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = 8
    try:
        text = r.repr(value)
    except RecursionError:
        return f"<{type(value).__name__}, nested too deeply to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TwinInputError(ValueError):
    """Bad input a person wrote (YAML, annotation, CSV row, CLI flag).

    ``real_system_ignores`` marks values that TensorFusion would silently ignore (for example an
    unparseable quantity): the twin refuses them and says so, so the user learns about it.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        obj: str | None = None,
        field: str | None = None,
        value: object = None,
        line: int | None = None,
        real_system_ignores: bool = False,
    ) -> None:
        self.message = message
        self.file = file
        self.obj = obj
        self.field = field
        self.value = value
        self.line = line
        self.real_system_ignores = real_system_ignores
        super().__init__(self.render())

    def render(self) -> str:
        where = []
        if self.file:
            where.append(f"{self.file}:{self.line}" if self.line is not None else self.file)
        if self.obj:
            where.append(self.obj)
        if self.field:
            where.append(f"field {self.field}")
        head = ": ".join(where)
        text = self.message
        if self.value is not None:
            text += f" (got {short(self.value)})"
        if self.real_system_ignores:
            text += "; TensorFusion would silently ignore this value, the twin refuses it"
        return f"{head}: {text}" if head else text

    def located(self, *, file: str | None = None, obj: str | None = None) -> TwinInputError:
        """The same error with a file/object filled in where it was missing."""
        return TwinInputError(
            self.message,
            file=self.file or file,
            obj=self.obj or obj,
            field=self.field,
            value=self.value,
            line=self.line,
            real_system_ignores=self.real_system_ignores,
        )


class TwinInputErrors(TwinInputError):
    """Several input errors found in one pass (``twin validate`` reports them all)."""

    def __init__(self, errors: list[TwinInputError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.render() for e in errors))


class TwinEnvironmentError(RuntimeError):
    """The machine lacks something the command needs (a GPU, a driver, an optional extra): exit 3."""


# The exit-code convention of every ``twin`` command (docs/exit-codes.md); twin.cli applies it centrally.
EXIT_OK = 0
EXIT_VERDICT = 1  # the command ran and its answer is "no": a check regression, an infeasible plan, invalid files
EXIT_INPUT = 2  # bad input: a file, a flag or a value (and click's usage errors)
EXIT_ENVIRONMENT = 3  # no GPU, no driver, a missing optional extra
EXIT_INTERNAL = 4  # a bug in the twin: a one-line message, the traceback with --debug
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
