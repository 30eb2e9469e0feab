"""The README's commands run as written (issue 16, "the first hour").

Every backticked ``twin ...`` command in the README's "What you can ask it" table is executed as a
subprocess from a folder laid out like a fresh clone (the README's relative paths resolve), and must
succeed. Two rows take a minute or more (a capacity plan, the FGD comparison on the full trace):
by default their arguments are parsed by the real command (flags, types, files), and the slow test
runs them in full. Every ``twin COMMAND`` the CLI reference names must exist.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from twin.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SLOW = ("twin plan ", "twin trace compare")
# Rows that read this machine's GPUs: without one they exit 3 with a hint (the convention).
NEEDS_GPU = ("twin live status",)
# Rows that talk to the user's own services (a Prometheus server): only their --help runs here;
# tests/live covers them against a real Prometheus.
NEEDS_SERVICE = ("twin live wva ",)
SHARED = ROOT.parent / "shared"


def table_commands() -> list[str]:
    section = README.split("## What you can ask it", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [cmd for row in rows for cmd in re.findall(r"`(twin [^`]+)`", row)]


def reference_commands() -> list[str]:
    section = README.split("## CLI reference", 1)[1].split("\n## ", 1)[0]
    return sorted(set(re.findall(r"^\* `twin ([a-z-]+)", section, flags=re.M)))


def _twin() -> list[str]:
    script = Path(sys.executable).parent / "twin"
    return [str(script)] if script.exists() else [sys.executable, "-m", "twin.cli"]


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A folder with the repository's inputs where the README expects them; outputs land here."""
    for name in ("examples", "scenarios", "tests", "hw_profiles"):
        (tmp_path / name).symlink_to(ROOT / name)
    shared = ROOT.parent / "shared"
    if shared.exists():
        (tmp_path.parent / "shared").mkdir(exist_ok=True)
        link = tmp_path.parent / "shared" / "data"
        if not link.exists():
            link.symlink_to(shared / "data")
    return tmp_path


def run_as_written(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command)
    assert argv[0] == "twin"
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [*_twin(), *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=600, env=env, check=False
    )


def test_the_table_lists_runnable_commands() -> None:
    commands = table_commands()
    assert len(commands) >= 8
    for command in commands:
        assert "..." not in command and "FILE" not in command, f"placeholder in a runnable row: {command}"


FAST = [c for c in table_commands() if not c.startswith(SLOW)]


@pytest.mark.parametrize("command", FAST)
def test_readme_command_runs_as_written(clone: Path, command: str) -> None:
    if "../shared/" in command and not SHARED.exists():
        pytest.skip("the shared data folder is not present")
    if command.startswith(NEEDS_SERVICE):
        sub = shlex.split(command)[:3]
        result = run_as_written(" ".join([*sub, "--help"]), clone)
        assert result.returncode == 0, result.stderr
        return
    result = run_as_written(command, clone)
    if command.strip() in NEEDS_GPU and result.returncode == 3:
        assert "no GPU" in result.stderr and "--backend fake" in result.stderr
        return
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [c for c in table_commands() if c.startswith(SLOW)])
def test_slow_readme_command_parses(clone: Path, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags, types and files are checked by the real click command without running it."""
    monkeypatch.chdir(clone)
    rest = shlex.split(command)[1:]
    cmd: click.Command = main
    ctx = click.Context(main, info_name="twin")
    while isinstance(cmd, click.Group):
        sub = cmd.get_command(ctx, rest[0])
        assert sub is not None, command
        ctx = click.Context(sub, info_name=rest[0], parent=ctx)
        cmd, rest = sub, rest[1:]
    parsed = cmd.make_context(ctx.info_name or "", list(rest), parent=ctx.parent)
    assert parsed.params


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in table_commands() if c.startswith(SLOW)])
def test_slow_readme_command_runs_as_written(clone: Path, command: str) -> None:
    if "trace" in command and not (ROOT.parent / "shared" / "data" / "openb").exists():
        pytest.skip("the shared openb trace is not present")
    result = run_as_written(command, clone)
    assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"


@pytest.mark.parametrize("name", reference_commands())
def test_every_command_in_the_reference_exists(name: str) -> None:
    assert main.get_command(click.Context(main), name) is not None, f"README names twin {name}"
