"""One error type for everything a user can get wrong (a message naming the problem and the fix, an exit
code from the table below), so ``repro.cli`` prints one ``error: <problem>; <fix>`` line and exits."""

from __future__ import annotations

from collections.abc import Mapping

# The table, as names. ``DOCUMENTED_EXIT_CODES`` is what any command may exit with (the fuzz test
# holds every command to it).
EXIT_OK = 0
EXIT_FAILED = 1  # a check ran and found problems (dataset problems, accuracy below target)
EXIT_BAD_INPUT = 2  # input missing or not what it claims to be (not a dataset, no log, incomplete run)
EXIT_UPSTREAM = 3  # upstream checkout missing, wrong commit, dirty, or a patch that does not apply
EXIT_PREFLIGHT = 4  # training cannot start on this machine: devices, disk, dataset link
EXIT_CONFLICT = 5  # doing it would overwrite or delete something the harness did not create
EXIT_TRAINING_FAILED = 6  # the training processes ran and failed
EXIT_ENVIRONMENT = 7  # this machine cannot run it: missing package, tool or profile
EXIT_DISK = 8  # a write failed on a full or failing disk (no space, quota, I/O error): free space, rerun
EXIT_INTERNAL = 70  # a bug in repro itself (EX_SOFTWARE); REPRO_DEBUG=1 shows the traceback
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C / SIGTERM, as shells report SIGINT
EXIT_CLOSED_PIPE = 141  # whoever read the output went away (`| head`), as shells report SIGPIPE

# code -> what it means, for every command.
EXIT_MEANINGS: dict[int, str] = {
    EXIT_OK: "done; PASS; EQUIVALENT; clean",
    EXIT_FAILED: "a check ran and found problems: accuracy below target (FAIL), NOT EQUIVALENT or outside a band, "
                 "dataset problems, doctor",
    EXIT_BAD_INPUT: "bad input: a bad option value or path, an unknown option or config key (-o), a path that is "
                    "not what it claims (not a dataset, not a run directory, no log); check-accuracy's "
                    "INCOMPLETE and UNREADABLE; compare's NOT SHOWN",
    EXIT_UPSTREAM: "upstream checkout missing, wrong commit, dirty, or a patch that does not apply",
    EXIT_PREFLIGHT: "pre-flight: training cannot start on this machine as it is (devices, disk, dataset link)",
    EXIT_CONFLICT: "conflict: doing it would overwrite or delete something the harness did not create, or a run "
                   "is in use by another process",
    EXIT_TRAINING_FAILED: "the training processes ran and failed",
    EXIT_ENVIRONMENT: "this machine lacks something: a profile, a package, a tool",
    EXIT_DISK: "a disk is full or failing: a write failed (no space, quota, I/O error); free space there or use "
               "another disk, then rerun (a training whose ranks failed on a full disk is 6, its cause named)",
    EXIT_INTERNAL: "a bug in repro (REPRO_DEBUG=1 shows the traceback), or processes that could not be stopped",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGTERM)",
    EXIT_CLOSED_PIPE: "the output's reader went away (a closed pipe, e.g. `| head`): the rest was not printed",
}
DOCUMENTED_EXIT_CODES = frozenset(EXIT_MEANINGS)
# Any command can meet these: a usage error, a full disk, a bug, Ctrl-C.
EVERY_COMMAND_EXITS = (EXIT_OK, EXIT_BAD_INPUT, EXIT_DISK, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_CLOSED_PIPE)


def exit_code_rows(specific: Mapping[int, str | None]) -> list[tuple[str, str]]:
    """The exit codes a command can return, as (code, meaning) rows for its ``--help``: what the
    command says about a code, else the table's meaning; the codes every command can meet are
    always there."""
    if unknown := set(specific) - set(EXIT_MEANINGS):
        raise ValueError(f"exit code {min(unknown)} is not in repro.core.errors.EXIT_MEANINGS")
    codes = sorted({*EVERY_COMMAND_EXITS, *specific})
    return [(str(code), specific.get(code) or EXIT_MEANINGS[code]) for code in codes]


class ReproError(Exception):
    """A foreseen failure: ``message`` is one line naming the problem and the fix."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def one_line(message: object) -> str:
    """``message`` on one line: control characters a user typed (a newline in a value) are escaped."""
    text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in str(message))
    return " ".join(text.split())
