"""The ``twin`` command line. Subcommands live in their own modules and load lazily.

Adding a command: write ``twin/cli/<name>_cmd.py`` with a click command or group, and add one line
to ``_COMMANDS``. Lazy loading keeps ``twin --help`` fast (no numpy/simpy/matplotlib import).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from typing import Any

import click

from twin import __version__
from twin.errors import (
    EXIT_ENVIRONMENT,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    TwinEnvironmentError,
    TwinInputError,
    short,
)

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
        # One exit-code convention for every command, new ones included (twin.errors.EXIT_*).
        debug = bool(ctx.params.get("debug")) or os.environ.get("TWIN_DEBUG", "") not in ("", "0")
        out_of_memory = False
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise  # click's own exits and usage errors (2), and commands' explicit verdicts
        except TwinInputError as err:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {err}", err=True)
            sys.exit(EXIT_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except MemoryError:
            if debug:
                traceback.print_exc()
            out_of_memory = True  # reported below, once the except block has released the frames
        except BrokenPipeError:
            # `twin ... | head`: the reader left; nothing more to say, and no traceback.
            sys.stderr.close()
            sys.exit(EXIT_OK)
        except Exception as err:
            if debug:
                traceback.print_exc()
            code, text = _classify(err)
            click.echo(f"error: {text}", err=True)
            if code == EXIT_INTERNAL and not debug:
                hint = "this is a bug in the twin; rerun as `twin --debug ...` (or TWIN_DEBUG=1) for the traceback"
                click.echo(hint, err=True)
            sys.exit(code)
        if out_of_memory:
            click.echo("error: out of memory; a limit in twin/limits.py may be set too high", err=True)
            sys.exit(EXIT_ENVIRONMENT)
        return None


def _classify(err: Exception) -> tuple[int, str]:
    if isinstance(err, TwinEnvironmentError):
        return EXIT_ENVIRONMENT, str(err)
    if isinstance(err, ModuleNotFoundError):
        return EXIT_ENVIRONMENT, f"a needed package is not installed: {err.name} (see README, optional extras)"
    if isinstance(err, OSError):  # permission denied, disk full, a path that is busy: the machine, not the input
        where = f" ({err.filename})" if err.filename else ""
        return EXIT_ENVIRONMENT, f"{err.strerror or err}{where}"
    if isinstance(err, RecursionError):
        return EXIT_INPUT, "the input is nested too deeply"
    return EXIT_INTERNAL, f"internal error: {type(err).__name__}: {short(str(err))}"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="twin")
@click.option("--debug", is_flag=True, help="Print the traceback of an error (also TWIN_DEBUG=1).")
def main(debug: bool) -> None:
    """Digital twin for GPU pooling: place, simulate, size and run vGPU workloads.

    \b
    Exit codes: 0 success, 1 a verdict (check regression, infeasible plan, invalid manifests),
    2 bad input, 3 environment (no GPU, missing extra), 4 internal error (rerun with --debug).
    """
    # Piped or in CI, rich would wrap tables at 80 columns; logs read better wide. Rich honours COLUMNS.
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", "160")
