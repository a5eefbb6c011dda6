"""The command group: every command is reachable, documented, and errors come out as one line."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from repro import __version__
from repro.cli import SUBCOMMANDS, cli
from repro.errors import EXIT_CONFLICT, ReproError


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    for name in ("doctor", "upstream", "dataset", "train", "check-accuracy", "report", "watch"):
        assert name in result.output


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_command_has_help(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_group_subcommands_have_help() -> None:
    for name in ("upstream", "dataset"):
        group = cli.get_command(click.Context(cli), name)
        assert isinstance(group, click.Group)
        for sub in group.list_commands(click.Context(group)):
            result = CliRunner().invoke(cli, [name, sub, "--help"])
            assert result.exit_code == 0, (name, sub, result.output)


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_repro_error_becomes_one_line_and_its_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    @click.command()
    def boom() -> None:
        raise ReproError("the thing is wrong; do the fix", EXIT_CONFLICT)

    monkeypatch.setitem(SUBCOMMANDS, "boom", "tests.test_cli:_BOOM")
    globals()["_BOOM"] = boom
    result = CliRunner().invoke(cli, ["boom"])
    assert result.exit_code == EXIT_CONFLICT
    assert result.output.strip() == "error: the thing is wrong; do the fix"
    assert "Traceback" not in result.output


def test_console_script_runs_without_traceback() -> None:
    done = subprocess.run([sys.executable, "-m", "repro", "train", "--platform", "no-such-platform", "--dry-run"],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "no-such-platform" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_refused_path_is_one_line_and_a_bug_is_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    @click.command()
    @click.argument("kind")
    def touchy(kind: str) -> None:
        if kind == "path":
            raise PermissionError(errno.EACCES, "Permission denied", "/data/ILSVRC2012")
        raise OSError("a broken pipe names no path")

    monkeypatch.setitem(SUBCOMMANDS, "touchy", "tests.test_cli:_TOUCHY")
    globals()["_TOUCHY"] = touchy
    result = CliRunner().invoke(cli, ["touchy", "path"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: cannot use /data/ILSVRC2012: Permission denied;")
    result = CliRunner().invoke(cli, ["touchy", "other"])
    assert result.exit_code == 70 and result.output.startswith("internal error: OSError")
