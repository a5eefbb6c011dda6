"""Every git call, so git never prompts for a password (fail fast, not hang a launch script), never stalls
on a dead network (a low-speed limit, a timeout), and never finds a parent repository by accident."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

from repro.core.errors import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_UPSTREAM, ReproError
from repro.core.deadline import run_bounded

TIMEOUT_ENV = "REPRO_GIT_TIMEOUT"
DEFAULT_TIMEOUT = 900.0  # seconds for one git command; a sparse fetch takes seconds on a working link
# Abort a transfer slower than 1000 bytes/s for 60 s (git's own stall detector, HTTP(S) only), and
# never run the ext:: transport (it executes a command named in the URL).
SAFETY_CONFIG = (
    "-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=60",
    "-c", "protocol.ext.allow=never", "-c", "advice.detachedHead=false",
)
URL_SCHEMES = ("https", "http", "ssh", "git", "file")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9][A-Za-z0-9.-]*:[^\s]+$")
_HOST = re.compile(r"^[A-Za-z0-9\[][A-Za-z0-9.:\]-]*$")


def require_git() -> str:
    found = shutil.which("git")
    if found is None:
        raise ReproError("git is not installed: install git (apt-get install git), or fetch with --archive FILE",
                         EXIT_ENVIRONMENT)
    return found


def git_timeout() -> float:
    """Seconds one git command may take: ``REPRO_GIT_TIMEOUT`` or the default."""
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 1e7:
        raise ReproError(f"{TIMEOUT_ENV}={value!r} is not a positive number of seconds: set e.g. {TIMEOUT_ENV}=1800", EXIT_BAD_INPUT)
    return seconds


def run_git(args: Sequence[str], cwd: Path | None = None, *, check: bool = True, ceiling: Path | None = None,
            what: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS``; with ``check`` a failure becomes ``ReproError`` naming ``what`` and git's reason. Its own
    session lets a timeout kill its helpers too (ssh, remote-https hold the pipes); ``ceiling`` stops repository
    discovery above it; LC_ALL=C keeps the messages we parse (patch failed: FILE:LINE) in English."""
    command = [require_git(), *SAFETY_CONFIG, *args]
    timeout = git_timeout()
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    if ceiling is not None:
        env["GIT_CEILING_DIRECTORIES"] = str(ceiling)
    try:
        result = run_bounded(command, timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise ReproError(f"{what or 'git ' + (args[0] if args else '')} did not finish in {timeout:.0f} s (a stalled"
                         f" network or server?): check the network and rerun, set {TIMEOUT_ENV}=SECONDS for a slow"
                         " link, or use --archive FILE", EXIT_UPSTREAM) from None
    if check and result.returncode != 0:
        reason = last_error_line(result.stderr) or f"git exited with {result.returncode}"
        raise ReproError(f"{what or 'git ' + ' '.join(args)} failed: {reason}", EXIT_UPSTREAM)
    return result


def last_error_line(stderr: str) -> str:
    """The most telling line git printed (its last ``fatal:``/``error:`` line, else the last line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return next((line for line in reversed(lines) if line.startswith(("fatal:", "error:"))), lines[-1] if lines else "")


def git_output(repo: Path, *args: str) -> str | None:
    """What ``git ARGS`` prints in ``repo``, stripped; None when it fails or prints nothing."""
    result = run_git(args, cwd=repo, check=False)
    return result.stdout.strip() or None if result.returncode == 0 else None


def is_checkout_root(path: Path) -> bool:
    """True when ``path`` is itself the root of a git work tree (not a folder inside another repo)."""
    if not (path / ".git").exists():
        return False
    top = git_output(path, "rev-parse", "--show-toplevel")
    return top is not None and Path(top).resolve() == path.resolve()


def head_commit(repo: Path) -> str | None:
    return git_output(repo, "rev-parse", "--verify", "-q", "HEAD^{commit}")


def as_git_url(url: str) -> str:
    """The validated git URL for ``url``: a local path becomes a ``file://`` URL (only then does git
    honour --depth and --filter); anything else must be a URL of an allowed scheme or scp-like."""
    text = str(url)
    bad = ReproError(f"upstream URL {text!r} is not a URL ({', '.join(URL_SCHEMES)}), user@host:path or an existing"
                     " directory: pass e.g. --url https://gitee.com/paddlepaddle/PaddleClas.git or --url"
                     " /path/to/mirror.git", EXIT_BAD_INPUT)
    if not text or text.startswith("-") or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise bad
    if "://" in text:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        host_ok = scheme == "file" or (parts.hostname and _HOST.match(parts.netloc.rsplit("@", 1)[-1]))
        if scheme not in URL_SCHEMES or not host_ok:
            raise bad
        return text
    local = Path(text).expanduser()
    if local.is_dir():
        return local.resolve().as_uri()
    if _SCP_LIKE.match(text) and "/" not in text.split(":", 1)[0]:
        return text
    raise bad


def is_full_sha(text: str | None) -> bool:
    return bool(text) and len(text) == 40 and all(c in "0123456789abcdef" for c in text.lower())


def checked_commit(commit: str | None) -> str | None:
    """A full 40-hex commit id (lower case), or None; short ids are refused (they can be ambiguous)."""
    if commit is not None and not is_full_sha(commit):
        raise ReproError(f"--commit must be a full 40-hex commit id, got {commit!r}: pass the whole id"
                         " (git rev-parse SHORT)", EXIT_BAD_INPUT)
    return commit.lower() if commit else None


def checked_ref(ref: str, pin_file: Path | None = None) -> str:
    """A branch or tag name git accepts (``git check-ref-format``), never an option; ``pin_file`` names where
    the ref came from when it is not the ``--ref`` option."""
    text = str(ref)
    valid = bool(text) and not text.startswith("-") and text.isascii() and text.isprintable()
    if valid:  # "refs/heads/" in front: git reads the argument as a name, never as an option
        valid = run_git(["check-ref-format", f"refs/heads/{text}"], check=False).returncode == 0
    if not valid:
        where, fix = (f"{pin_file}: ref", "set e.g. ref: release/2.6 there") if pin_file else ("--ref", "pass e.g. --ref release/2.6")
        raise ReproError(f"{where} {text!r} is not a valid branch or tag name: {fix}", EXIT_BAD_INPUT)
    return text
