"""How every ``repro`` command and group is declared (docs/ARCHITECTURE.md, "A command"): one pattern,
so every ``--help`` looks alike and lists its exit codes from ``repro.core.errors.EXIT_MEANINGS``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from repro.core.errors import EXIT_BAD_INPUT, exit_code_rows

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


def _settings(attrs: dict[str, Any]) -> dict[str, Any]:
    return {**HELP_OPTIONS, **(attrs.pop("context_settings", None) or {})}


class ReproCommand(click.Command):
    """A command whose ``--help`` ends with its exit codes."""

    def __init__(self, *args: Any, exits: Mapping[int, str | None], **attrs: Any) -> None:
        super().__init__(*args, context_settings=_settings(attrs), **attrs)
        self.exits = dict(exits)
        exit_code_rows(self.exits)  # an undocumented code fails at import, not in front of a user

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        write_exit_codes(formatter, self.exits)


class ReproGroup(click.Group):
    """A group whose ``--help`` lists its own exit codes and its commands' (with the table's words).

    ``os_error_exit_code``: the code ``repro.cli`` exits with when the kernel refuses a path the user
    chose under this group (upstream: 3; otherwise bad input, 2)."""

    def __init__(self, *args: Any, exits: Mapping[int, str | None], os_error_exit_code: int = EXIT_BAD_INPUT,
                 **attrs: Any) -> None:
        super().__init__(*args, context_settings=_settings(attrs), **attrs)
        self.exits = dict(exits)
        self.os_error_exit_code = os_error_exit_code
        exit_code_rows(self.exits)

    def all_exits(self, ctx: click.Context) -> dict[int, str | None]:
        codes: dict[int, str | None] = {}
        for name in self.list_commands(ctx):
            sub = self.get_command(ctx, name)
            if isinstance(sub, ReproGroup):
                codes.update(dict.fromkeys(sub.all_exits(ctx)))
            elif sub is not None:
                codes.update(dict.fromkeys(getattr(sub, "exits", {})))
        codes.update(self.exits)
        return codes

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        write_exit_codes(formatter, self.all_exits(ctx))


def write_exit_codes(formatter: click.HelpFormatter, exits: Mapping[int, str | None]) -> None:
    """The one rendering of a command's exit codes in ``--help``."""
    with formatter.section("Exit codes"):
        formatter.write_dl(exit_code_rows(exits), col_max=5)


def command(name: str, *, exits: Mapping[int, str | None], parent: click.Group | None = None,
            **attrs: Any) -> Callable[[Callable[..., Any]], ReproCommand]:
    """Declare a command (a subcommand of ``parent`` when given)."""
    def decorate(function: Callable[..., Any]) -> ReproCommand:
        made = click.command(name, cls=ReproCommand, exits=exits, **attrs)(function)
        if parent is not None:
            parent.add_command(made)
        return made
    return decorate


def group(name: str, *, exits: Mapping[int, str | None], parent: click.Group | None = None,
          **attrs: Any) -> Callable[[Callable[..., Any]], ReproGroup]:
    """Declare a group of commands; ``invoke_without_command=True`` when it reports alone too."""
    def decorate(function: Callable[..., Any]) -> ReproGroup:
        made = click.group(name, cls=ReproGroup, exits=exits, **attrs)(function)
        if parent is not None:
            parent.add_command(made)
        return made
    return decorate


def json_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--json``, passed as ``as_json``: ``what`` names the one object printed (docs/commands.md)."""
    return click.option("--json", "as_json", is_flag=True, help=f"JSON: {what} (docs/commands.md).")


def aligned_columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines, each column padded to its widest cell (the last left as it is): the one
    layout of every table a command prints."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]).rstrip() for row in rows]
