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


def test_the_adapters_do_not_import_the_layers_above_them() -> None:
    """``twin.sim`` and ``live`` sit below experiments, reports and the CLI (spec -> policy -> sim | live -> cli)."""
    above = ("twin.experiments", "twin.report", "twin.cli")
    offenders = []
    for folder in (ROOT / "twin" / "sim", ROOT / "live"):
        for path in sorted(folder.rglob("*.py")):
            offenders += [
                f"{path.relative_to(ROOT)} imports {n}" for n in _imports(path) if any(_is_under(n, a) for a in above)
            ]
    assert offenders == []


# The simulator, the trace replay and the live agent schedule through twin.policy.cycle only.
CYCLE_USERS = (
    *sorted((ROOT / "twin" / "sim").rglob("*.py")),
    ROOT / "twin" / "experiments" / "trace_replay.py",
    ROOT / "live" / "agent.py",
    ROOT / "twin" / "cli" / "place_cmd.py",  # twin place --preempt: one attempt per pod through the cycle
)
# Nothing in the simulator places outside the cycle: serving replicas are pods of the pool (issue 14).
CYCLE_EXEMPT: set[str] = set()
PLACEMENT_ENTRY_POINTS = {"schedule", "plan_preemption", "plan_preemption_exhaustive", "run_filters", "filter_stage"}


def _placement_reaches(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    # A strategy wrapper's own ``place`` delegates to the strategy it wraps: that is a strategy.
    inside_place = {
        id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "place" for n in ast.walk(f)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("twin.policy"):
            found += [f"imports {a.name}" for a in node.names if a.name in PLACEMENT_ENTRY_POINTS]
            if node.module in ("twin.policy.qos", "twin.policy.placement.schedule"):
                found.append(f"imports from {node.module}")
        if isinstance(node, ast.Call) and id(node) not in inside_place:
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if ast.unparse(fn) == "self.placer.place":  # the serving placer (CYCLE_EXEMPT's module)
                continue
            if name in PLACEMENT_ENTRY_POINTS or (name == "place" and isinstance(fn, ast.Attribute)):
                found.append(f"line {node.lineno} calls {name}()")
    return found


def test_simulator_replay_and_live_agent_reach_placement_only_through_the_cycle() -> None:
    offenders = []
    for path in CYCLE_USERS:
        rel = path.relative_to(ROOT).as_posix()
        if rel in CYCLE_EXEMPT:
            continue
        offenders += [f"{rel} {what}" for what in _placement_reaches(path)]
    assert offenders == []


def test_the_placement_scan_catches_a_direct_call(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from twin.policy.placement import schedule\nschedule(1, 2, 3)\nstrategy.place(s, r)\n")
    assert _placement_reaches(bad) == ["imports schedule", "line 2 calls schedule()", "line 3 calls place()"]


def test_the_cycle_users_build_a_scheduling_cycle() -> None:
    for path in (ROOT / "twin/sim/engine.py", ROOT / "live/agent.py"):
        assert "SchedulingCycle" in path.read_text(), path
    # The trace replay is a run of the engine: no loop, queue or pass of its own.
    replay = (ROOT / "twin/experiments/trace_replay.py").read_text()
    assert "Simulation(" in replay
    assert not any(word in replay for word in ("heapq", "pass_order", "SchedulingQueue", "SchedulingCycle("))


def test_only_the_kernel_builds_a_simpy_environment() -> None:
    offenders = []
    for pkg in ("twin", "live"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path.relative_to(ROOT).as_posix() == "twin/sim/kernel.py":
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                fn = node.func if isinstance(node, ast.Call) else None
                if isinstance(fn, ast.Attribute) and fn.attr == "Environment" and ast.unparse(fn.value) == "simpy":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_only_the_one_builder_constructs_a_cluster_state() -> None:
    """Scenarios, cluster files, node lists, serving pools and the live inventory describe their
    cluster (``twin.cluster_desc.ClusterDescription``); only ``build_state`` makes the state."""
    allowed = {"twin/cluster_desc.py"}
    offenders = []
    for pkg in ("twin", "live", "benchmarks"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in allowed:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] == "ClusterState":
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_edges(path: Path, known: set[str], root: Path = ROOT) -> set[str]:
    """Every module of ``known`` that ``path`` imports: anywhere in the file (TYPE_CHECKING blocks,
    function bodies), relative imports resolved, ``from pkg import module`` counted as the module,
    and the names ``importlib.import_module`` or a registry's ``plugin_modules`` would load."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call):
            fn = ast.unparse(node.func)
            if fn.endswith("import_module") or fn == "__import__":
                names.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
            for kw in node.keywords:
                if kw.arg == "plugin_modules":
                    names.update(
                        c.value for c in ast.walk(kw.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)
                    )
    return {n for n in names if n in known}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _twin_import_graph(root: Path) -> dict[str, set[str]]:
    paths = {_module_name(p, root): p for p in sorted((root / "twin").rglob("*.py"))}
    known = set(paths)
    return {name: _import_edges(path, known, root) - {name} for name, path in paths.items()}


def test_no_import_cycle_through_the_simulator() -> None:
    """No module of ``twin/sim`` imports itself back, directly or through others (``twin.experiments``
    included), even for types only: workload kinds, controllers and observers are typed against
    the Protocols of ``twin/sim/host.py``, which the engine imports too."""
    cycles = [c for c in _cycles(_twin_import_graph(ROOT)) if any(_is_under(m, "twin.sim") for m in c)]
    assert cycles == []


def _by_name_imports(path: Path) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(_is_under(n, "importlib") for n in modules):
                found.append(f"{node.lineno} imports importlib")
        if isinstance(node, ast.Call):
            fn = ast.unparse(node.func)
            if fn.endswith("import_module") or fn == "__import__":
                found.append(f"{node.lineno} calls {fn}()")
            found += [f"{node.lineno} passes plugin_modules" for k in node.keywords if k.arg == "plugin_modules"]
    return found


def test_the_simulator_imports_nothing_by_name_at_run_time() -> None:
    """No ``importlib``, ``import_module``, ``__import__`` or registry ``plugin_modules`` in
    ``twin/sim``: every plugin (workload kind, controller) is a plain import where it registers."""
    offenders = []
    for path in sorted((ROOT / "twin" / "sim").rglob("*.py")):
        offenders += [f"{path.relative_to(ROOT).as_posix()}:{what}" for what in _by_name_imports(path)]
    assert offenders == []


def test_the_by_name_scan_catches_each_trick(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import importlib\nfrom importlib import import_module\nimportlib.import_module('twin.sim.x')\n"
        "__import__('twin.sim.y')\nR = Registry('k', plugin_modules=('twin.sim.z',))\n"
    )
    assert sorted(_by_name_imports(bad)) == [
        "1 imports importlib",
        "2 imports importlib",
        "3 calls importlib.import_module()",
        "4 calls __import__()",
        "5 passes plugin_modules",
    ]


def test_the_cycle_scan_sees_type_checking_and_plugin_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "twin" / "sim"
    pkg.mkdir(parents=True)
    (tmp_path / "twin" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "engine.py").write_text("from twin.sim import metrics\nfrom twin.sim.registry import R\n")
    (pkg / "metrics.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from twin.sim.engine import Simulation\n"
    )
    (pkg / "registry.py").write_text("R = Registry('x', plugin_modules=('twin.sim.plugin',))\n")
    (pkg / "plugin.py").write_text("from .registry import R\n")
    assert sorted(_cycles(_twin_import_graph(tmp_path))) == [
        ["twin.sim.engine", "twin.sim.metrics"],
        ["twin.sim.plugin", "twin.sim.registry"],
    ]
