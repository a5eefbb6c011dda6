"""List the image tree once, directory by directory, without a ``stat`` per file."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from repro.core.files import file_kind
from repro.dataset.problems import Problems

# A backstop against pathological trees; ImageNet is two levels deep below the root.
MAX_DEPTH = 16


@dataclass
class TreeScan:
    """Every file found below the scanned top-level names (and in the root), as root-relative POSIX paths."""

    files: set[str] = field(default_factory=set)
    root_files: set[str] = field(default_factory=set)  # the files in the root itself (lists, tarballs)
    directories: int = 0


def _loop_message(rel: str, target: str) -> str:
    return f"{rel}: symlink loop (points to {target}, which contains it); remove the link or point it elsewhere"


def _walk(abs_path: str, rel_prefix: str, real: str, depth: int, scan: TreeScan, problems: Problems) -> None:
    """Add the files below ``abs_path`` to ``scan.files``. ``real``, its resolved path, is carried down by
    string joins so that only symlinked directories need ``realpath``; a link whose target contains it loops."""
    if depth > MAX_DEPTH:
        problems.add("symlink_loop", f"{rel_prefix.rstrip('/')}: more than {MAX_DEPTH} directory levels deep; a"
                                     " symlink probably points back into the tree")
        return
    try:
        iterator = os.scandir(abs_path)
    except OSError as error:
        kind = "symlink_loop" if error.errno == errno.ELOOP else "unreadable_dir"
        problems.add(kind, f"{rel_prefix.rstrip('/')}: cannot list directory ({error.strerror})")
        return
    scan.directories += 1
    with iterator:
        entries = list(iterator)
    files = scan.files
    subdirs: list[tuple[str, str, str]] = []
    for entry in entries:
        name = entry.name
        rel = rel_prefix + name
        try:
            if entry.is_file(follow_symlinks=False):  # answered by d_type, no stat
                files.add(rel)
                continue
            if entry.is_dir(follow_symlinks=False):
                subdirs.append((entry.path, rel, real + "/" + name))
                continue
            if not entry.is_symlink():  # a FIFO, a device, a socket: present, but never an image
                files.add(rel)
                kind = file_kind(entry.stat(follow_symlinks=False).st_mode)
                problems.add("not_a_file", f"{rel}: is {kind}, not a regular file; replace it with the image")
                continue
        except OSError as error:  # only on file systems without d_type
            problems.add("unreadable_dir", f"{rel}: {error.strerror}")
            continue
        try:
            mode = os.stat(entry.path).st_mode
        except OSError as error:
            if error.errno == errno.ELOOP:
                problems.add("symlink_loop", f"{rel}: symlink loop ({error.strerror})")
            else:
                try:
                    target = os.readlink(entry.path)
                except OSError:
                    target = "?"
                problems.add("broken_symlink", f"{rel}: broken symlink to {target}")
            continue
        if not stat.S_ISDIR(mode):
            files.add(rel)
            if not stat.S_ISREG(mode):
                problems.add("not_a_file", f"{rel}: links to {file_kind(mode)} ({os.path.realpath(entry.path)}), "
                             "not a regular file; point it at the image")
            continue
        target_real = os.path.realpath(entry.path)
        if real == target_real or real.startswith(target_real.rstrip("/") + "/"):
            problems.add("symlink_loop", _loop_message(rel, target_real))
            continue
        subdirs.append((entry.path, rel, target_real))
    for sub_abs, sub_rel, sub_real in subdirs:
        _walk(sub_abs, sub_rel + "/", sub_real, depth + 1, scan, problems)


def scan_tree(root: Path, tops: set[str], problems: Problems) -> TreeScan:
    """Scan ``root`` itself (one level) and, recursively, the top-level directories in ``tops`` (those the
    lists point into: a ``test/`` folder or tarballs beside them cost nothing)."""
    scan = TreeScan()
    top_dirs: set[str] = set()
    root_real = os.path.realpath(root)
    with os.scandir(root) as iterator:
        entries = list(iterator)
    for entry in entries:
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            top_dirs.add(entry.name)
        elif entry.is_symlink():
            try:
                os.stat(entry.path)
            except OSError as error:
                kind = "symlink_loop" if error.errno == errno.ELOOP else "broken_symlink"
                problems.add(kind, f"{entry.name}: {error.strerror}")
                continue
            scan.root_files.add(entry.name)
        else:
            scan.root_files.add(entry.name)
    scan.files |= scan.root_files
    for top in sorted(tops & top_dirs):
        top_path = os.path.join(root, top)
        real = os.path.realpath(top_path) if os.path.islink(top_path) else root_real + "/" + top
        if os.path.islink(top_path) and (root_real == real or root_real.startswith(real.rstrip("/") + "/")):
            problems.add("symlink_loop", _loop_message(top, real))
            continue
        _walk(top_path, top + "/", real, 1, scan, problems)
    return scan
