"""What ``--dry-run`` prints: the exact command, directory and environment, side by side with the reference.

An engineer about to spend days of GPU time wants to see, before anything starts, how the launch
differs from the reference command; the ``[harness: ...]``/``[user: ...]`` marks make every
addition visible. Shared by a new run and by ``--resume``, which show the same things.
"""

from __future__ import annotations

from pathlib import Path

import click

from repro.train.command import LaunchCommand
from repro.train.environment import EnvChanges
from repro.train.scaling import ScalingPlan


def print_dry_run(command: LaunchCommand, env: EnvChanges, planned: Path, scaling: ScalingPlan | None) -> None:
    click.echo("reference command:")
    click.echo(f"  {command.reference_line()}")
    click.echo("command to run ([harness: ...] and [user: ...] mark additions to the reference):")
    click.echo(f"  {command.marked_line()}")
    click.echo(f"python: {command.python}")
    click.echo(f"working directory: {command.cwd}")
    click.echo(f"run directory: {planned} (not created: dry run)")
    click.echo("environment additions:")
    for line in env.lines() or ["(none)"]:
        click.echo(f"  {line}")
    for note in (scaling.notes if scaling else []):
        click.echo(f"note: {note}")
