"""The one YAML reader every file loader uses: bounded size, nesting and alias expansion.

PyYAML's safe loader already refuses arbitrary objects, but not unbounded work: a 399-byte file of
nested aliases ("billion laughs") expands to billions of nodes once anything walks it, and deeply
nested flow collections overflow the stack. Each document is composed to a node graph first, the
graph is measured (depth and node count with aliases expanded, in time linear in its unique
nodes), and only then constructed. Files are read with a size cap and decoded as UTF-8 with an error
naming the file and the byte offset, so binary or Latin-1 files get a clear message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from twin import limits
from twin.errors import TwinInputError

# libyaml's loader when available (several times faster); both record line marks on the nodes.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_text(path: str | os.PathLike[str], *, what: str = "file", max_bytes: limits.Limit | None = None) -> str:
    """The file's text, refusing files over the size limit and anything that is not UTF-8 text."""
    p = Path(path)
    limit = max_bytes or limits.YAML_MAX_BYTES
    try:
        size = p.stat().st_size
        if size > limit.value:
            raise TwinInputError(f"the {what} is {size} bytes, above the {limit.hint()}", file=str(p))
        data = p.read_bytes()
    except OSError as err:
        raise TwinInputError(f"cannot read the {what}: {err.strerror or err}", file=str(p)) from None
    return decode(data, str(p), what=what)


def decode(data: bytes, source: str, *, what: str = "file") -> str:
    if b"\x00" in data[:8192]:
        raise TwinInputError(f"the {what} is binary, not UTF-8 text", file=source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TwinInputError(
            f"the {what} is not UTF-8 text (byte {err.start}: {data[err.start : err.start + 1]!r})", file=source
        ) from None


def _yaml_error(err: yaml.YAMLError, source: str) -> TwinInputError:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return TwinInputError(f"invalid YAML: {problem}", file=source, line=mark.line + 1 if mark is not None else None)


def measure(node: yaml.Node, source: str) -> None:
    """Refuse a node graph deeper than the depth limit or larger than the node limit once expanded."""
    max_depth, max_nodes = limits.YAML_MAX_DEPTH.value, limits.YAML_MAX_NODES.value
    expanded: dict[int, int] = {}  # id(node) -> nodes under it, aliases counted every time they appear
    # Iterative post-order walk: (node, depth, children_done)
    stack: list[tuple[yaml.Node, int, bool]] = [(node, 1, False)]
    on_path: set[int] = set()
    while stack:
        current, depth, done = stack.pop()
        key = id(current)
        if done:
            on_path.discard(key)
            total = 1 + sum(expanded[id(c)] for c in _children(current))
            if total > max_nodes:
                line = current.start_mark.line + 1
                raise TwinInputError(
                    "the YAML expands to too many nodes (aliases counted each time they are used); "
                    + limits.YAML_MAX_NODES.hint(),
                    file=source,
                    line=line,
                )
            expanded[key] = total
            continue
        if key in expanded:
            continue
        if depth > max_depth or key in on_path:
            raise TwinInputError(
                "the YAML is nested too deeply (or refers to itself); " + limits.YAML_MAX_DEPTH.hint(),
                file=source,
                line=current.start_mark.line + 1,
            )
        on_path.add(key)
        stack.append((current, depth, True))
        for child in _children(current):
            if id(child) not in expanded:
                stack.append((child, depth + 1, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def documents(text: str, source: str) -> Iterator[tuple[int, yaml.Node | None, Any]]:
    """``(index, node, data)`` for each document; the node carries line marks for error messages."""
    limit = limits.YAML_MAX_BYTES
    if len(text) > limit.value:
        raise TwinInputError(f"the YAML is {len(text)} characters, above the {limit.hint()}", file=source)
    loader = _LOADER(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                measure(node, source)
            yield index, node, loader.construct_document(node) if node is not None else None
            index += 1
    except yaml.YAMLError as err:
        raise _yaml_error(err, source) from None
    except RecursionError:
        raise TwinInputError(f"the YAML is nested too deeply; {limits.YAML_MAX_DEPTH.hint()}", file=source) from None
    finally:
        loader.dispose()


def load_all(text: str, source: str) -> list[Any]:
    return [data for _, _, data in documents(text, source)]


def load(text: str, source: str) -> Any:
    """One document (``None`` when empty); several documents are an error."""
    docs = load_all(text, source)
    if len(docs) > 1:
        raise TwinInputError(f"expected one YAML document, found {len(docs)}", file=source)
    return docs[0] if docs else None


def load_file(path: str | os.PathLike[str], *, what: str = "file") -> Any:
    return load(read_text(path, what=what), str(path))


def load_file_all(path: str | os.PathLike[str], *, what: str = "file") -> list[Any]:
    return load_all(read_text(path, what=what), str(path))
