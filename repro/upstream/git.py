"""Running git with argument lists, and turning its failures into one-line ``ReproError``s.

Every call goes through here so that git never prompts for a password (a fetch from GitHub on a
machine without credentials must fail fast, not hang a launch script) and never discovers a parent
repository by accident (an upstream tree inside the harness checkout is *not* the harness repo).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from repro.errors import EXIT_ENVIRONMENT, EXIT_UPSTREAM, ReproError


def git_env(ceiling: Path | None = None) -> dict[str, str]:
    """Environment for git: no prompts, no pager, and optionally no repo discovery above ``ceiling``."""
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_PAGER"] = "cat"
    env["LC_ALL"] = "C"  # error messages we parse (patch failed: FILE:LINE) must be in English
    if ceiling is not None:
        env["GIT_CEILING_DIRECTORIES"] = str(ceiling)
    return env


def require_git() -> str:
    found = shutil.which("git")
    if found is None:
        raise ReproError(
            "git is not installed: install git (apt-get install git), or fetch with --archive FILE",
            EXIT_ENVIRONMENT,
        )
    return found


def run_git(
    args: Sequence[str],
    cwd: Path | None = None,
    *,
    check: bool = True,
    ceiling: Path | None = None,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS``; with ``check`` a failure becomes ``ReproError`` naming ``what`` and git's reason."""
    command = [require_git(), "-c", "advice.detachedHead=false", *args]
    result = subprocess.run(
        command,
        cwd=cwd,
        env=git_env(ceiling),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if check and result.returncode != 0:
        reason = last_error_line(result.stderr) or f"git exited with {result.returncode}"
        raise ReproError(f"{what or 'git ' + ' '.join(args)} failed: {reason}", EXIT_UPSTREAM)
    return result


def last_error_line(stderr: str) -> str:
    """The most telling line git printed (its last ``fatal:``/``error:`` line, else the last line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else ""


def toplevel(path: Path) -> Path | None:
    """The work tree root of the git checkout ``path`` is in, or None when it is in none."""
    if not path.is_dir():
        return None
    result = run_git(["rev-parse", "--show-toplevel"], cwd=path, check=False)
    if result.returncode != 0:
        return None
    return Path(result.stdout.strip()).resolve()


def is_checkout_root(path: Path) -> bool:
    """True when ``path`` is itself the root of a git work tree (not a folder inside another repo)."""
    return (path / ".git").exists() and toplevel(path) == path.resolve()


def head_commit(repo: Path) -> str | None:
    result = run_git(["rev-parse", "--verify", "-q", "HEAD^{commit}"], cwd=repo, check=False)
    return result.stdout.strip() or None if result.returncode == 0 else None


def git_dir(repo: Path) -> Path:
    out = run_git(["rev-parse", "--absolute-git-dir"], cwd=repo).stdout.strip()
    return Path(out)


def config_get(repo: Path, key: str) -> str | None:
    result = run_git(["config", "--get", key], cwd=repo, check=False)
    return result.stdout.strip() or None if result.returncode == 0 else None


def as_git_url(url: str) -> str:
    """A local path becomes a ``file://`` URL: only then does git honour --depth and --filter."""
    if "://" in url or url.startswith("git@"):
        return url
    local = Path(url).expanduser()
    if local.exists():
        return local.resolve().as_uri()
    return url


def is_full_sha(text: str | None) -> bool:
    return bool(text) and len(text) == 40 and all(c in "0123456789abcdef" for c in text.lower())
