"""The one way repro runs a short child process: an argv list, its own session, a deadline.

``subprocess.run(timeout=)`` kills only the child and then waits for its output pipes, which a
grandchild (a driver daemon, git's ssh helper, a hook's ``sleep``) may hold open forever; so the child
gets its own process group, and the whole group is killed at the deadline, on Ctrl-C, and when the
call returns (nothing it started outlives it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Mapping


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the process group led by ``pid``; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def run_bounded(argv: list[str], timeout: float, *, input: str | None = None,
                env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                capture_stdout: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (never a shell) for at most ``timeout`` seconds; ``subprocess.TimeoutExpired`` past it,
    ``OSError`` (no such program, not executable) unchanged."""
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, errors="backslashreplace", env=env, cwd=cwd, start_new_session=True)
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except BaseException:  # the deadline, or Ctrl-C: the child's group is ours to end
        kill_group(process.pid)
        process.communicate()
        raise
    kill_group(process.pid)  # whatever the child left running in the background
    return subprocess.CompletedProcess(argv, process.returncode, stdout or "", stderr or "")
