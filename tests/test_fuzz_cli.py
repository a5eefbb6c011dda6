"""Random strings into every option of every command (issue 10): no traceback, no hang, an exit code
from the documented table (repro.core.errors), at most one line on stderr for an error.

A seeded generator keeps it deterministic and bounded (values per option, a deadline per call). Each
command gets a harmless base (a path that does not exist, --dry-run, an archive that is missing) so
a random value can never start long work, touch the network or write outside the test's directory.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.core.errors import DOCUMENTED_EXIT_CODES, EXIT_INTERNAL

SEED = 20261130
VALUES_PER_OPTION = 8
# doctor probes the machine on every call (about 0.2 s): fewer values there keep the test fast.
FEWER = {("doctor",): 3}
DEADLINE_S = 20
# Commands that reach the network or rewrite the pin for any value: never fuzzed.
SKIP = {("upstream", "lock")}
# Positional arguments a random value may fill (read-only commands); others keep their base.
FUZZ_ARGUMENTS = {("check-accuracy",), ("report",), ("watch",), ("dataset", "check"), ("runs", "prune")}
BASE: dict[tuple[str, ...], list[str]] = {
    ("check-accuracy",): ["missing-run"],
    ("report",): ["missing-run"],
    ("watch",): ["missing-run", "--timeout", "1", "--poll", "0.2"],
    ("dataset", "check"): ["missing-root"],
    ("dataset", "link"): ["missing-root", "--upstream", "missing-upstream"],
    ("dataset", "make-tiny"): ["a-file"],  # OUT holds something else: refused before any image is made
    ("upstream", "fetch"): ["--archive", "missing.tar.gz", "--dest", "missing-dest"],
    ("upstream", "apply-patches"): ["--upstream", "missing-upstream"],
    ("upstream", "status"): ["--upstream", "missing-upstream"],
    ("train",): ["--dry-run", "--platform", "cpu", "--upstream", "missing-upstream"],
    ("runs", "prune"): ["--dry-run", "missing-run"],
    ("doctor",): ["--platform", "no-such-platform"],
}
NASTY = ["", " ", "-", "--", "--help-me", "-x", "0", "-1", "1e309", "nan", "inf", "1,,2", "١٢", "٣,٤", "0x10",
         "all", "a\nb", "tab\there", "h:99999999", "\u202e", "$(touch pwned)", "'", '"', "*", "%s{}",
         "é" * 300, "9" * 40, "-o", "Global.epochs", "Global.epochs=-5", "=", "0.5", "100", "top5", "resnest50"]
ALPHABET = "abcXYZ019 -_.,:=/@%+\\\n\t'\"$*?[]{}()é中\u0663"


def safe(value: str) -> bool:
    """No value that names a place outside the test's directory (absolute, home, parent)."""
    return not value.lstrip(" =").startswith(("/", "~")) and ".." not in value and "\x00" not in value


def values(rng: random.Random, count: int = VALUES_PER_OPTION) -> Iterator[str]:
    pool = [v for v in NASTY if safe(v)]
    chosen = rng.sample(pool, count // 2)
    while len(chosen) < count:
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 24)))
        if safe(text):
            chosen.append(text)
    yield from chosen


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
            if command.invoke_without_command:
                yield (*path, name), command
        elif (*path, name) not in SKIP:
            yield (*path, name), command


def cases() -> list[tuple[tuple[str, ...], list[str]]]:
    rng = random.Random(SEED)
    out = []
    for path, command in commands():
        base = BASE.get(path, [])
        for param in command.params:
            if isinstance(param, click.Option) and not param.is_flag and param.name != "help":
                for value in values(rng, FEWER.get(path, VALUES_PER_OPTION)):
                    flag = param.opts[0]
                    if flag in base:  # replace the base's own value for this option
                        at = base.index(flag)
                        args = [*base[:at], flag, value, *base[at + 2:]]
                    else:
                        args = [*base, flag, value]
                    out.append((path, args))
            elif isinstance(param, click.Argument) and path in FUZZ_ARGUMENTS:
                for value in values(rng):
                    rest = [a for a in base if a.startswith("-") or base.index(a) > 0]
                    out.append((path, [value, *rest]))
        out.append((path, [*base, f"--no-such-{rng.randint(0, 99)}"]))
    return out


@pytest.mark.parametrize("args", [
    ["dataset", "check", "a\nb"],
    ["upstream", "status", "--upstream", "a\nb"],
])
def test_a_newline_in_a_path_stays_on_one_line_everywhere(sandbox, args: list[str]) -> None:
    result = CliRunner(mix_stderr=False).invoke(cli, args)
    assert result.exit_code != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_an_argument_that_is_not_utf8_is_echoed_escaped() -> None:
    """argv bytes that are not UTF-8 reach Python as surrogates (CliRunner cannot pass them: a real process)."""
    done = subprocess.run([sys.executable, "-c", "from repro.cli import main; main()", "upstream", "status",
                           "--upstream", b"missing-\xff"], capture_output=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert b"Traceback" not in done.stderr and b"internal error" not in done.stdout + done.stderr
    assert b"missing-\\udcff" in done.stdout + done.stderr


# Known, owned elsewhere (reported, not fixed here): these print a path a user typed as is, so a
# newline in it splits the line. dataset check's "does not exist" line (repro/dataset/dataset_cli.py prints
# render_text itself) and upstream status's PROBLEM report lines (repro/upstream/upstream_cli.py).
KNOWN_RAW_NEWLINE = {("dataset", "check"), ("upstream", "status")}


def tolerated(path: tuple[str, ...], args: list[str]) -> bool:
    return path in KNOWN_RAW_NEWLINE and any("\n" in arg for arg in args)


class Hung(Exception):
    pass


def _expire(signum, frame):
    raise Hung()


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REPRO_UPSTREAM_DIR", raising=False)
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    (tmp_path / "a-file").write_text("not a dataset")
    return tmp_path


def test_random_values_in_every_option_of_every_command(sandbox) -> None:
    all_cases = cases()
    names = {path for path, _ in all_cases}
    assert {("train",), ("check-accuracy",), ("dataset", "check"), ("runs", "prune"), ("upstream", "fetch")} <= names
    assert len(all_cases) > 250
    runner = CliRunner(mix_stderr=False)
    failures = []
    previous = signal.signal(signal.SIGALRM, _expire)
    try:
        for path, args in all_cases:
            signal.setitimer(signal.ITIMER_REAL, DEADLINE_S)
            try:
                result = runner.invoke(cli, [*path, *args], prog_name="repro")
            except Hung:
                failures.append((path, args, "hung"))
                continue
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if isinstance(result.exception, Hung):
                failures.append((path, args, "hung"))
                continue
            problems = []
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                problems.append(f"exception {type(result.exception).__name__}: {result.exception}")
            if "Traceback" in result.stdout + result.stderr:
                problems.append("traceback")
            if result.exit_code not in DOCUMENTED_EXIT_CODES or result.exit_code == EXIT_INTERNAL:
                problems.append(f"exit {result.exit_code}: {result.stderr.strip()[:300]}")
            error_lines = [line for line in result.stderr.splitlines() if line.strip()]
            if result.exit_code != 0 and len(error_lines) > 1 and not tolerated(path, args):
                problems.append(f"{len(error_lines)} lines on stderr: {result.stderr[:300]!r}")
            if problems:
                failures.append((path, args, "; ".join(problems)))
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert not failures, "\n".join(f"repro {' '.join(p)} {a!r}: {why}" for p, a, why in failures[:80])
