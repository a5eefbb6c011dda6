"""Filesystem refusals (permission denied, read-only or full disk, a file where a directory belongs)
described on one line with the fix."""

from __future__ import annotations

import errno

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
    errno.EIO: "the disk reported an input/output error: check it (dmesg) or use another disk",
}


# A full or failing disk, whether or not the error names a path (a library writing through a handle).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


def describe_os_error(error: OSError) -> str:
    """``cannot use PATH: <reason>; <fix>`` on one line (``PATH -> PATH2`` for rename/symlink)."""
    reason = error.strerror or str(error)
    if error.filename is None:
        return f"a write failed: {reason}; {_FIXES.get(error.errno or 0, 'check the disk')}"
    where = str(error.filename) + (f" -> {error.filename2}" if error.filename2 is not None else "")
    fix = _FIXES.get(error.errno or 0, "check that path and that you may use it")
    return " ".join(f"cannot use {where}: {reason}; {fix}".split())
