"""Output folders that never mix two runs, and folder names that stay where they are meant to.

``twin run`` writes into a fresh hidden folder next to the target and renames it into place only
when every file is written: a kill mid-write leaves the previous result whole, and a ``--no-plots``
rerun cannot leave an older report.html next to a newer summary.json. An existing target is
replaced only when it looks like a twin output (it holds one of ``MARKERS``), so ``-o ~`` or a
typo never deletes someone's folder.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from twin.errors import TwinInputError

MARKERS = ("summary.json", "serving-report.json")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, fallback: str = "scenario") -> str:
    """A single path component from a user-written name: ``../../x`` -> ``x``, ``/abs/p`` -> ``abs_p``."""
    cleaned = _UNSAFE.sub("_", name).strip("._-")
    return cleaned[:100] or fallback


@contextmanager
def fresh_output_dir(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``target`` in one rename."""
    target = Path(target)
    if Path.cwd().resolve().is_relative_to(target.resolve()):
        # ".", "..", "/" or "~" from inside it: the folder would be renamed away under the user's feet.
        raise TwinInputError(
            "the output folder is the current folder or contains it; give a subfolder such as out/run",
            field="--out",
            value=str(target),
        )
    if target.exists() and not target.is_dir():
        raise TwinInputError("the output path exists and is not a folder", field="--out", value=str(target))
    if target.is_dir() and any(target.iterdir()) and not any((target / m).exists() for m in MARKERS):
        raise TwinInputError(
            "the output folder exists and does not hold a twin run (no summary.json); "
            "choose another -o or empty it first",
            field="--out",
            value=str(target),
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old: Path | None = None
    try:
        staging.chmod(0o777 & ~_umask())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            target.replace(old / target.name)
        staging.replace(target)
    except BaseException:
        # Put the previous run back, and leave no staging folder behind.
        if old is not None and (old / target.name).exists() and not target.exists():
            (old / target.name).replace(target)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    import os

    current = os.umask(0)
    os.umask(current)
    return current
