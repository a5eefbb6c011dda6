"""Filesystem refusals (permission denied, read-only or full disk, a file where a directory belongs)
as one-line ``ReproError``s.

Every command touches paths the user chose; the kernel can refuse any of them at any call.
Catching that at each call would miss some, and an unreported one ends as "internal error" although
the fix is the user's (chmod, another path). So ``repro upstream`` and ``repro dataset`` convert any
``OSError`` that names a path with their own exit code, and the top-level group (``repro.cli``) does
the same for every other command; one without a path (a broken pipe, a bug) is not a user's input
and still surfaces as an internal error.
"""

from __future__ import annotations

import errno
from typing import Any

import click

from repro.errors import ReproError

_ACCESS = "make it and the directories above it accessible to you (ls -ld; chmod/chown) or use another path"
_FIXES: dict[int, str] = {
    errno.EACCES: _ACCESS,
    errno.EPERM: _ACCESS,
    errno.EROFS: "that filesystem is read-only: use a path on a writable disk",
    errno.ENOSPC: "that disk is full: free space there or use another disk",
    errno.EDQUOT: "your disk quota is used up: free space or use another disk",
    errno.ENOTDIR: "a part of that path is a file, not a directory: fix the path",
    errno.EEXIST: "something that is not a directory is in the way: move it away or use another path",
    errno.ELOOP: "a symlink on that path points to itself: fix the symlinks",
    errno.ENAMETOOLONG: "use a shorter path",
}


def describe_os_error(error: OSError) -> str:
    """``cannot use PATH: <reason>; <fix>`` on one line (``PATH -> PATH2`` for rename/symlink)."""
    where = str(error.filename)
    if error.filename2 is not None:
        where += f" -> {error.filename2}"
    reason = error.strerror or str(error)
    fix = _FIXES.get(error.errno or 0, "check that path and that you may use it")
    return " ".join(f"cannot use {where}: {reason}; {fix}".split())


class FilesystemErrorsGroup(click.Group):
    """A command group whose subcommands report path-naming ``OSError``s as ``ReproError(exit_code)``."""

    exit_code: int = 2

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OSError as error:
            if error.filename is None:
                raise
            raise ReproError(describe_os_error(error), self.exit_code) from error


def filesystem_errors_group(exit_code: int) -> type[FilesystemErrorsGroup]:
    """The group class for ``@click.group(cls=...)`` with the exit code the group's failures use."""
    return type(f"FilesystemErrorsGroup{exit_code}", (FilesystemErrorsGroup,), {"exit_code": exit_code})
