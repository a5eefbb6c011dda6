"""One error type for everything a user can get wrong, so the CLI can print one line and exit.

Every failure the harness can foresee is raised as a ``ReproError`` carrying a message that names the
problem *and* the fix, plus an exit code from the table below. ``repro.cli`` turns it into a single
``error: ...`` line on stderr with no traceback.
"""

from __future__ import annotations

# Exit codes shared by all commands. Commands whose issue defines its own codes (dataset check,
# check-accuracy) use 0/1/2 with the meanings given there; the rest are distinct so scripts can tell
# failures apart.
EXIT_OK = 0
EXIT_FAILED = 1  # a check ran and found problems (dataset problems, accuracy below target)
EXIT_BAD_INPUT = 2  # input missing or not what it claims to be (not a dataset, no log, incomplete run)
EXIT_UPSTREAM = 3  # upstream checkout missing, wrong commit, dirty, or a patch that does not apply
EXIT_PREFLIGHT = 4  # training cannot start: devices, disk, dataset link, overrides
EXIT_CONFLICT = 5  # doing it would overwrite or delete something the harness did not create
EXIT_TRAINING_FAILED = 6  # the training processes ran and failed
EXIT_ENVIRONMENT = 7  # this machine cannot run it: missing package, tool or profile
EXIT_INTERNAL = 70  # a bug in repro itself (EX_SOFTWARE); REPRO_DEBUG=1 shows the traceback
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C / SIGTERM, as shells report SIGINT


class ReproError(Exception):
    """A foreseen failure: ``message`` is one line naming the problem and the fix."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
