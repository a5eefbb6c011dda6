"""The ``repro`` command group.

Subcommands live beside the code they drive and are imported only when used, so ``repro --help``
stays instant and a missing optional dependency of one command cannot break the others.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from repro import __version__
from repro.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, ReproError
from repro.filesystem_errors import describe_os_error

DEBUG_ENV = "REPRO_DEBUG"

# name -> "module:attribute" of a click command or group.
SUBCOMMANDS: dict[str, str] = {
    "doctor": "repro.doctor:doctor",
    "upstream": "repro.upstream.cli:upstream",
    "dataset": "repro.dataset.cli:dataset",
    "train": "repro.train.cli:train",
    "check-accuracy": "repro.logs.cli:check_accuracy",
    "report": "repro.logs.cli:report",
    "watch": "repro.logs.cli:watch",
    "recipes": "repro.recipes_cli:recipes",
}


class LazyGroup(click.Group):
    """Loads subcommands on demand and turns ``ReproError`` into one line and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ReproError as error:
            click.echo(f"error: {error.message}", err=True)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as error:
            if isinstance(error, OSError) and error.filename is not None:
                # The kernel refused a path the user chose (permissions, full disk): theirs to fix.
                click.echo(f"error: {describe_os_error(error)}", err=True)
                ctx.exit(EXIT_BAD_INPUT)
            # Anything else is a bug in repro: still one line, the traceback on request.
            if os.environ.get(DEBUG_ENV):
                raise
            where = traceback.extract_tb(error.__traceback__)[-1]
            click.echo(
                f"internal error: {type(error).__name__}: {error} (at {Path(where.filename).name}:{where.lineno}); "
                f"rerun with {DEBUG_ENV}=1 for the traceback and report it",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="repro")
def cli() -> None:
    """Reproduce PaddleClas ResNeSt50 on ImageNet and prove the accuracy.

    Typical flow: repro doctor; repro upstream fetch; repro dataset link ROOT;
    repro train --gpus 0,1,2,3; repro check-accuracy logs/.
    """


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(prog_name="repro", auto_envvar_prefix="REPRO"))


if __name__ == "__main__":
    main()
