"""Dependencies point one way: spec/state -> policy -> sim | live -> cli.

The policy layer is pure: it imports no simpy, no pynvml, nothing from ``live``, ``twin.sim`` or
``twin.cli``, does no file or network I/O and never reads the wall clock.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_POLICY = ("simpy", "pynvml", "live", "twin.sim", "twin.cli", "twin.report", "twin.experiments")
FORBIDDEN_CALLS = {("time", "time"), ("time", "monotonic"), ("time", "perf_counter"), ("datetime", "now")}
FORBIDDEN_NAMES = {"open", "print", "input"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _is_under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_policy_layer_imports_nothing_impure() -> None:
    offenders = []
    for path in sorted((ROOT / "twin" / "policy").rglob("*.py")):
        for name in _imports(path):
            if any(_is_under(name, bad) for bad in FORBIDDEN_IN_POLICY) or name in {"socket", "urllib", "requests"}:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_policy_layer_reads_no_clock_and_does_no_io() -> None:
    offenders = []
    for path in sorted((ROOT / "twin" / "policy").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fn = node.func
                if isinstance(fn, ast.Name) and fn.id in FORBIDDEN_NAMES:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {fn.id}()")
                if (
                    isinstance(fn, ast.Attribute)
                    and isinstance(fn.value, ast.Name)
                    and (fn.value.id, fn.attr) in FORBIDDEN_CALLS
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {fn.value.id}.{fn.attr}()")
    assert offenders == []


def test_only_the_nvml_backend_imports_pynvml() -> None:
    offenders = []
    for pkg in ("twin", "live"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path.relative_to(ROOT).as_posix() == "live/backends/nvml.py":
                continue
            if any(_is_under(n, "pynvml") for n in _imports(path)):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_core_layers_do_not_import_adapters() -> None:
    """spec/state/resources must not reach up into policy users (sim, live, cli)."""
    offenders = []
    core = [ROOT / "twin" / "resources.py", ROOT / "twin" / "state.py", *sorted((ROOT / "twin" / "spec").rglob("*.py"))]
    for path in core:
        if not path.exists():
            continue
        for name in _imports(path):
            if any(_is_under(name, bad) for bad in ("twin.sim", "twin.cli", "live", "simpy", "pynvml")):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_the_two_adapters_do_not_import_each_other() -> None:
    """``twin.sim`` and ``live`` both sit on the policy layer; neither may reach into the other."""
    offenders = []
    pairs = ((ROOT / "live", "twin.sim"), (ROOT / "twin" / "sim", "live"))
    for folder, forbidden in pairs:
        for path in sorted(folder.rglob("*.py")):
            offenders += [f"{path.relative_to(ROOT)} imports {n}" for n in _imports(path) if _is_under(n, forbidden)]
    assert offenders == []
