"""The ``repro`` command group: the one place top-level commands are registered, each imported only
when used, so ``repro --help`` stays instant and one command's missing dependency cannot break the others."""

from __future__ import annotations

import os
import pkgutil
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from repro import __version__
from repro.core.cli_wiring import HELP_OPTIONS, ReproGroup
from repro.core.errors import (EXIT_BAD_INPUT, EXIT_CLOSED_PIPE, EXIT_DISK, EXIT_INTERNAL, EXIT_INTERRUPTED,
                               EXIT_MEANINGS, ReproError, one_line)
from repro.core.filesystem_errors import DISK_ERRNOS, describe_os_error

DEBUG_ENV = "REPRO_DEBUG"

# name -> "module:attribute" of a command or group declared with repro.core.cli_wiring.
SUBCOMMANDS: dict[str, str] = {
    "doctor": "repro.commands.doctor:doctor",
    "upstream": "repro.upstream.upstream_cli:upstream",
    "dataset": "repro.dataset.dataset_cli:dataset",
    "train": "repro.launch.train_cli:train",
    "check-accuracy": "repro.judge.judge_cli:check_accuracy",
    "report": "repro.judge.judge_cli:report",
    "watch": "repro.commands.watch:watch",
    "runs": "repro.commands.runs:runs",
    "band": "repro.judge.band_cli:band",
    "compare": "repro.judge.compare_cli:compare_command",
    "recipes": "repro.recipes.recipes_cli:recipes",
    "eval": "repro.commands.evaluate:eval_command_cli",
    "smoke": "repro.commands.smoke:smoke_command",
}


class UsageErrorLine(click.UsageError):
    """A click usage error shown as the harness shows bad input: one line with the fix, exit 2."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message(), error.ctx)

    def show(self, file: Any = None) -> None:
        problem = one_line(self.format_message()).rstrip(".")
        if problem[:1].isupper() and problem[1:2].islower():
            problem = problem[0].lower() + problem[1:]
        command = self.ctx.command_path if self.ctx is not None else "repro"
        click.echo(f"error: {problem}; see `{command} --help`", err=True, file=file)


def reader_gone() -> None:
    """Exit 141 without a word: stdout is a closed pipe, and Python's flush at exit must not fail on it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise SystemExit(EXIT_CLOSED_PIPE)


class LazyGroup(ReproGroup):
    """Loads subcommands on demand and turns ``ReproError`` and click's own usage errors (bad option
    values, unknown options, missing arguments, of every subcommand and nested group) into one line
    and an exit code."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as error:  # the group's own options: `repro --bogus`
            raise UsageErrorLine(error) from error
        except BrokenPipeError:  # `repro --help | head -1`
            reader_gone()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return pkgutil.resolve_name(SUBCOMMANDS[cmd_name]) if cmd_name in SUBCOMMANDS else None

    def all_exits(self, ctx: click.Context) -> dict[int, str | None]:
        return self.exits  # the whole table, without importing every command for `repro --help`

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageErrorLine:
            raise
        except click.UsageError as error:  # a subcommand's (or a nested group's) arguments
            raise UsageErrorLine(error) from error
        except ReproError as error:
            click.echo(f"error: {one_line(error.message)}", err=True)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # the output's reader went away (`| head`): nothing to report to anyone
            reader_gone()
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as error:
            if isinstance(error, OSError) and (error.filename is not None or error.errno in DISK_ERRNOS):
                # The kernel refused a path the user chose (permissions, full disk): theirs to fix.
                click.echo(f"error: {one_line(describe_os_error(error))}", err=True)
                command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
                # A full or failing disk is one code wherever it happens (repro.core.errors: EXIT_DISK).
                ctx.exit(EXIT_DISK if error.errno in DISK_ERRNOS else getattr(command, "os_error_exit_code", EXIT_BAD_INPUT))
            # Anything else is a bug in repro: still one line, the traceback on request.
            if os.environ.get(DEBUG_ENV):
                raise
            where = traceback.extract_tb(error.__traceback__)[-1]
            click.echo(one_line(
                f"internal error: {type(error).__name__}: {error} (at {Path(where.filename).name}:{where.lineno}); "
                f"rerun with {DEBUG_ENV}=1 for the traceback and report it"), err=True)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=LazyGroup, exits=dict.fromkeys(EXIT_MEANINGS), context_settings=HELP_OPTIONS)
@click.version_option(__version__, prog_name="repro")
def cli() -> None:
    """Reproduce PaddleClas ResNeSt50 on ImageNet and prove the accuracy.

    Typical flow: repro doctor; repro upstream fetch; repro dataset link ROOT;
    repro train --gpus 0,1,2,3; repro check-accuracy logs/.
    """


def main() -> None:
    """Console-script entry point. An argument that is not valid UTF-8 reaches Python as surrogates; echoing
    it back must not crash the error line, so it is printed escaped."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    sys.exit(cli.main(prog_name="repro", auto_envvar_prefix="REPRO"))


if __name__ == "__main__":
    main()
