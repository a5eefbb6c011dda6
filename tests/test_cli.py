"""The command group: every command is reachable, documented, and errors come out as one line."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from repro import __version__
from repro.cli import SUBCOMMANDS, cli
from repro.core import cli_wiring
from repro.core.cli_wiring import ReproCommand, ReproGroup
from repro.core.errors import (DOCUMENTED_EXIT_CODES, EVERY_COMMAND_EXITS, EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_DISK,
                               EXIT_MEANINGS, ReproError)
from repro.dataset import dataset_cli
from repro.launch.command import parse_gpus
from repro.launch.train_cli import check_master
from repro.upstream import upstream_cli
from tests.doubles import make_fake_checkout


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


# --------------------------------------------------------------------------- issue 10: one line, one code

USAGE_ERRORS = [
    (["dataset", "check", "--decode", "abc", "."], "repro dataset check", "'--decode'"),
    (["check-accuracy", "--target", "abc", "x"], "repro check-accuracy", "'--target'"),
    (["check-accuracy"], "repro check-accuracy", "missing argument"),
    (["train", "--no-such-option"], "repro train", "no such option: --no-such-option"),
    (["train", "--cpu-ranks", "0"], "repro train", "'--cpu-ranks'"),
    (["--bogus"], "repro", "no such option: --bogus"),
    (["bogus"], "repro", "no such command 'bogus'"),
    (["dataset", "bogus"], "repro dataset", "no such command 'bogus'"),
    (["dataset", "check"], "repro dataset check", "missing argument 'ROOT'"),
    (["upstream", "fetch", "--bogus"], "repro upstream fetch", "no such option: --bogus"),
    (["report"], "repro report", "missing argument 'RUN'"),
    (["watch", "x", "--poll", "fast"], "repro watch", "'--poll'"),
]


@pytest.mark.parametrize(("args", "command", "problem"), USAGE_ERRORS, ids=[" ".join(a) for a, _, _ in USAGE_ERRORS])
def test_click_usage_errors_are_one_line_with_the_fix_and_exit_2(args: list[str], command: str, problem: str) -> None:
    result = CliRunner(mix_stderr=False).invoke(cli, args, prog_name="repro")
    assert result.exit_code == EXIT_BAD_INPUT, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and problem in lines[0]
    assert lines[0].endswith(f"; see `{command} --help`")
    assert "Usage:" not in result.stderr and "Traceback" not in result.stderr


def test_usage_error_of_the_installed_script_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "repro", "dataset", "check", "--decode", "abc", "."],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_BAD_INPUT
    assert done.stderr.strip().splitlines() == [
        "error: invalid value for '--decode': 'abc' is not a number or 'all'; see `repro dataset check --help`"]


def test_a_newline_in_a_value_stays_one_line() -> None:
    result = CliRunner(mix_stderr=False).invoke(cli, ["check-accuracy", "--target", "0.5\nPASS", "x"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert len(result.stderr.strip().splitlines()) == 1 and "\\n" in result.stderr
    result = CliRunner(mix_stderr=False).invoke(cli, ["report", "no\nsuch"])
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_closed_pipe_is_exit_141_without_a_word() -> None:
    """`repro recipes --json | head -1`: the reader is gone before repro writes; no "internal error"."""
    for args in (["recipes", "--json"], ["train", "--help"], ["--help"]):
        process = subprocess.Popen([sys.executable, "-m", "repro", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        process.stdout.close()  # before the interpreter has even imported repro
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 141, (args, process.returncode, stderr)
        assert stderr == b"", (args, stderr)


def test_help_and_version_still_exit_0() -> None:
    for args in (["--help"], ["--version"], ["dataset", "--help"], ["dataset", "check", "--help"], ["upstream"]):
        result = CliRunner(mix_stderr=False).invoke(cli, args)
        assert result.exit_code == 0, (args, result.stderr)
        assert result.stdout and not result.stderr


def test_exit_code_table_is_documented_once_in_errors_and_in_docs() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "exit-codes.md").read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert rows == [f"| {code} | {meaning} |" for code, meaning in EXIT_MEANINGS.items()]
    assert set(EXIT_MEANINGS) == DOCUMENTED_EXIT_CODES


# --------------------------------------------------------------------------- one wiring pattern

def every_command(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(group)
    found = []
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        assert sub is not None, name
        found.append(((*path, name), sub))
        if isinstance(sub, click.Group):
            found += every_command(sub, (*path, name))
    return found


def exit_code_section(help_text: str) -> list[tuple[int, str]]:
    """The rows under "Exit codes:" at the end of a --help: (code, first line of its meaning)."""
    assert "\nExit codes:\n" in help_text, help_text
    rows = []
    for line in help_text.split("\nExit codes:\n", 1)[1].splitlines():
        words = line.split(maxsplit=1)
        if words and words[0].isdigit():
            rows.append((int(words[0]), words[1] if len(words) > 1 else ""))
    return rows


def test_every_command_and_subcommand_is_declared_one_way_and_its_help_lists_its_exit_codes() -> None:
    commands = every_command()
    assert len(commands) >= 23
    for path, command in [((), cli), *commands]:
        assert isinstance(command, (ReproCommand, ReproGroup)), f"repro {' '.join(path)} is not declared with cli_wiring"
        result = CliRunner(mix_stderr=False).invoke(cli, [*path, "--help"], prog_name="repro")
        assert result.exit_code == 0, (path, result.stderr)
        rows = exit_code_section(result.stdout)
        codes = [code for code, _ in rows]
        assert codes == sorted(set(codes)) and set(codes) <= DOCUMENTED_EXIT_CODES, (path, codes)
        assert set(EVERY_COMMAND_EXITS) <= set(codes), (path, codes)
        assert all(meaning for _, meaning in rows), (path, rows)
        if isinstance(command, ReproCommand):
            assert set(codes) == set(EVERY_COMMAND_EXITS) | set(command.exits), path


def test_a_commands_own_words_for_a_code_replace_the_tables() -> None:
    rows = dict(exit_code_section(CliRunner().invoke(cli, ["check-accuracy", "--help"]).output))
    assert rows[0] == "PASS" and rows[1] == "FAIL" and rows[2].startswith("INCOMPLETE or UNREADABLE")
    assert rows[130] == "interrupted (Ctrl-C, SIGTERM)"
    group_rows = dict(exit_code_section(CliRunner().invoke(cli, ["upstream", "--help"]).output))
    assert {3, 5, 7} <= set(group_rows)  # a group lists its commands' codes


def test_an_exit_code_outside_the_table_is_refused_where_it_is_declared() -> None:
    with pytest.raises(ValueError, match="42"):
        @cli_wiring.command("odd", exits={42: "no such code"})
        def odd() -> None:
            pass


def test_no_package_declares_a_command_another_way() -> None:
    """click's own decorators appear only in the one wiring module and the top-level group."""
    root = Path(__file__).resolve().parents[1] / "repro"
    pattern = re.compile(r"@click\.(command|group)\b|@\w+\.(command|group)\(|click\.Group\)|argparse\.ArgumentParser")
    offenders = {str(path.relative_to(root)) for path in root.rglob("*.py")
                 if path.name not in ("cli_wiring.py", "cli.py") and pattern.search(path.read_text(encoding="utf-8"))}
    assert offenders == set()


def test_unknown_override_key_is_bad_input_like_every_other_bad_override(tmp_path: Path) -> None:
    """An unknown -o key is a typo in the command line (2), not a machine that cannot train (4)."""
    upstream = make_fake_checkout(tmp_path / "upstream")
    runner = CliRunner(mix_stderr=False)
    base = ["train", "--platform", "cpu", "--upstream", str(upstream), "--dry-run", "--skip-preflight",
            "--run-dir", str(tmp_path / "run")]
    malformed = runner.invoke(cli, [*base, "-o", "Global.epochs"])
    assert malformed.exit_code == EXIT_BAD_INPUT, malformed.stderr
    unknown = runner.invoke(cli, [*base, "-o", "Global.epoch=5"])
    assert "Global.epochs" in unknown.stderr
    assert unknown.exit_code == EXIT_BAD_INPUT, unknown.stderr


def test_resume_of_a_directory_that_is_not_a_run_is_bad_input_like_a_missing_one(tmp_path: Path) -> None:
    runner = CliRunner(mix_stderr=False)
    missing = runner.invoke(cli, ["train", "--resume", str(tmp_path / "missing")])
    assert missing.exit_code == EXIT_BAD_INPUT, missing.stderr
    (tmp_path / "not-a-run").mkdir()
    not_run = runner.invoke(cli, ["train", "--resume", str(tmp_path / "not-a-run")])
    assert "not a repro run directory" in not_run.stderr
    assert not_run.exit_code == EXIT_BAD_INPUT, not_run.stderr


@pytest.mark.parametrize("gpus", ["0,,1", "١,٢", "0,1,", "+1", "1_0", "0,0", "-1"])
def test_gpus_that_are_not_plain_distinct_ids_are_refused(gpus: str) -> None:
    with pytest.raises(ReproError) as error:
        parse_gpus(gpus)
    assert error.value.exit_code == EXIT_BAD_INPUT and "--gpus" in error.value.message
    assert parse_gpus(" 0, 1 ,2") == [0, 1, 2]


@pytest.mark.parametrize("master", ["h:99999999", "h:0", "h:٨٠", ":80", "h:", "--upload-pack=x:80", "a b:80"])
def test_master_must_be_host_and_a_port_in_range(master: str) -> None:
    with pytest.raises(ReproError) as error:
        check_master(master, 2)
    assert error.value.exit_code == EXIT_BAD_INPUT and "port in 1-65535" in error.value.message
    check_master("10.0.0.1:8090", 2)
    result = CliRunner(mix_stderr=False).invoke(cli, ["train", "--master", master, "--nnodes", "2", "--dry-run"])
    assert result.exit_code == EXIT_BAD_INPUT and len(result.stderr.strip().splitlines()) == 1


def test_a_full_disk_is_one_code_everywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 20: a full or failing disk exited 2 ("bad input") in most commands, 3 under upstream and 4
    in prepare; it is one documented code (EXIT_DISK), whether or not the error names a path."""
    assert EXIT_DISK == 8 and "disk is full" in EXIT_MEANINGS[EXIT_DISK]
    cases = [  # (module, name the command calls, argv, errno, a path or not)
        (dataset_cli, "make_tiny", ["dataset", "make-tiny", str(tmp_path / "t")], errno.ENOSPC, None),
        (dataset_cli, "make_tiny", ["dataset", "make-tiny", str(tmp_path / "t")], errno.EDQUOT, str(tmp_path / "t")),
        (dataset_cli, "link_dataset", ["dataset", "link", str(tmp_path), "--upstream", str(tmp_path)], errno.EIO,
         str(tmp_path / "x")),
        (upstream_cli, "fetch_upstream", ["upstream", "fetch", "--dest", str(tmp_path / "up")], errno.ENOSPC,
         str(tmp_path / "up")),  # the upstream group's path refusals are 3: a full disk is still 8
    ]
    for module, name, argv, number, filename in cases:
        def full(*args, _number=number, _filename=filename, **kwargs):
            raise OSError(_number, os.strerror(_number), _filename)

        monkeypatch.setattr(module, name, full)
        result = CliRunner(mix_stderr=False).invoke(cli, argv)
        assert result.exit_code == EXIT_DISK, (argv, number, result.output, result.stderr)
        assert result.stderr.count("\n") == 1 and os.strerror(number) in result.stderr, result.stderr
        assert "internal error" not in result.stderr and ("free space" in result.stderr or "check it" in result.stderr)
        monkeypatch.undo()
