"""One error type for bad user input: it names the file, the object, the field and the value."""

from __future__ import annotations


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
            text += f" (got {self.value!r})"
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
