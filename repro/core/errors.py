"""One error type for everything a user can get wrong, so the CLI can print one line and exit.

Every failure the harness can foresee is raised as a ``ReproError`` carrying a message that names the
problem *and* the fix, plus an exit code from the table below. ``repro.cli`` turns it (and click's own
usage errors: a bad option value, an unknown option, a missing argument) into a single
``error: <problem>; <fix>`` line on stderr with no traceback.

The exit codes, the same for every command (README "Commands" repeats this table):

====  ===========================================================================================
code  meaning
====  ===========================================================================================
0     done; PASS; clean
1     a check ran and found problems: accuracy below target (FAIL), dataset problems, doctor
2     bad input: a bad option value or path, an unknown option or config key (``-o``), a path that
      is not what it claims (not a dataset, not a run directory, no log); check-accuracy's
      INCOMPLETE and UNREADABLE
3     upstream checkout missing, wrong commit, dirty, or a patch that does not apply
4     pre-flight: training cannot start on this machine as it is (devices, disk, dataset link)
5     conflict: doing it would overwrite or delete something the harness did not create, or a
      run is in use by another process
6     the training processes ran and failed
7     this machine lacks something: a profile, a package, a tool
70    a bug in repro (``REPRO_DEBUG=1`` shows the traceback), or processes that could not be stopped
130   interrupted (Ctrl-C, SIGTERM)
====  ===========================================================================================
"""

from __future__ import annotations

# The table above, as names. ``DOCUMENTED_EXIT_CODES`` is what any command may exit with (the fuzz
# test holds every command to it).
EXIT_OK = 0
EXIT_FAILED = 1  # a check ran and found problems (dataset problems, accuracy below target)
EXIT_BAD_INPUT = 2  # input missing or not what it claims to be (not a dataset, no log, incomplete run)
EXIT_UPSTREAM = 3  # upstream checkout missing, wrong commit, dirty, or a patch that does not apply
EXIT_PREFLIGHT = 4  # training cannot start on this machine: devices, disk, dataset link
EXIT_CONFLICT = 5  # doing it would overwrite or delete something the harness did not create
EXIT_TRAINING_FAILED = 6  # the training processes ran and failed
EXIT_ENVIRONMENT = 7  # this machine cannot run it: missing package, tool or profile
EXIT_INTERNAL = 70  # a bug in repro itself (EX_SOFTWARE); REPRO_DEBUG=1 shows the traceback
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C / SIGTERM, as shells report SIGINT
DOCUMENTED_EXIT_CODES = frozenset({EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UPSTREAM, EXIT_PREFLIGHT, EXIT_CONFLICT,
                                   EXIT_TRAINING_FAILED, EXIT_ENVIRONMENT, EXIT_INTERNAL, EXIT_INTERRUPTED})


class ReproError(Exception):
    """A foreseen failure: ``message`` is one line naming the problem and the fix."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


def one_line(message: object) -> str:
    """``message`` on one line: control characters a user typed (a newline in a value) are escaped."""
    text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in str(message))
    return " ".join(text.split())
