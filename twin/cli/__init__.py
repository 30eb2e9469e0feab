"""The ``twin`` command line. Subcommands live in their own modules and load lazily.

Adding a command: write ``twin/cli/<name>_cmd.py`` with a click command or group, and add one line
to ``_COMMANDS``. Lazy loading keeps ``twin --help`` fast (no numpy/simpy/matplotlib import).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

import click

from twin import __version__
from twin.errors import TwinInputError

# name -> "module:attribute"
_COMMANDS: dict[str, str] = {
    "validate": "twin.cli.spec_cmd:validate",
    "spec": "twin.cli.spec_cmd:spec",
    "place": "twin.cli.place_cmd:place",
    "hw": "twin.cli.hw_cmd:hw",
    "trace": "twin.cli.trace_cmd:trace",
    "serving": "twin.cli.serving_cmd:serving",
    "run": "twin.cli.run_cmd:run",
    "demo": "twin.cli.run_cmd:demo",
    "live": "twin.cli.live_cmd:live",
    "sweep": "twin.cli.experiments_cmd:sweep",
    "plan": "twin.cli.experiments_cmd:plan",
    "check": "twin.cli.experiments_cmd:check",
    "wva": "twin.cli.wva_cmd:wva",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        # Only commands whose module is installed: optional parts may be absent from a build.
        return sorted(n for n, t in _COMMANDS.items() if importlib.util.find_spec(t.split(":")[0]))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(module_name)
        command = getattr(module, attr)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TwinInputError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="twin")
def main() -> None:
    """Digital twin for GPU pooling: place, simulate, size and run vGPU workloads."""
    # Piped or in CI, rich would wrap tables at 80 columns; logs read better wide. Rich honours COLUMNS.
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", "160")
