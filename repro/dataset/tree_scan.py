"""List the image tree once, directory by directory, without a ``stat`` per file."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from repro.core.files import file_kind
from repro.dataset.problems import Problems

# A backstop against pathological trees; ImageNet is two levels deep below the root.
MAX_DEPTH = 16


def _loop_message(rel: str, target: str) -> str:
    return f"{rel}: symlink loop (points to {target}, which contains it); remove the link or point it elsewhere"


def _walk(abs_path: str, rel_prefix: str, real: str, depth: int, problems: Problems
          ) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(rel_prefix, names of its files)`` for ``abs_path`` and each directory below it. ``real``, its
    resolved path, is carried down by string joins so that only symlinked directories need ``realpath``; a
    link whose target contains it loops."""
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
    with iterator:
        entries = list(iterator)
    files: list[str] = []
    subdirs: list[tuple[str, str, str]] = []
    for entry in entries:
        name = entry.name
        try:
            if entry.is_file(follow_symlinks=False):  # answered by d_type, no stat
                files.append(name)
                continue
            rel = rel_prefix + name
            if entry.is_dir(follow_symlinks=False):
                subdirs.append((entry.path, rel, real + "/" + name))
                continue
            if not entry.is_symlink():  # a FIFO, a device, a socket: present, but never an image
                files.append(name)
                kind = file_kind(entry.stat(follow_symlinks=False).st_mode)
                problems.add("not_a_file", f"{rel}: is {kind}, not a regular file; replace it with the image")
                continue
        except OSError as error:  # only on file systems without d_type
            problems.add("unreadable_dir", f"{rel_prefix}{name}: {error.strerror}")
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
            files.append(name)
            if not stat.S_ISREG(mode):
                problems.add("not_a_file", f"{rel}: links to {file_kind(mode)} ({os.path.realpath(entry.path)}), "
                             "not a regular file; point it at the image")
            continue
        target_real = os.path.realpath(entry.path)
        if real == target_real or real.startswith(target_real.rstrip("/") + "/"):
            problems.add("symlink_loop", _loop_message(rel, target_real))
            continue
        subdirs.append((entry.path, rel, target_real))
    yield rel_prefix, files
    for sub_abs, sub_rel, sub_real in subdirs:
        yield from _walk(sub_abs, sub_rel + "/", sub_real, depth + 1, problems)


def scan_tree(root: Path, tops: set[str], problems: Problems) -> Iterator[tuple[str, list[str]]]:
    """Yield ``("", files in the root itself)``, then ``("dir/", its files)`` for every directory below the
    top-level ones in ``tops`` (those the lists point into: a ``test/`` folder or tarballs beside them cost
    nothing). Problems found on the way are added as the walk gets there."""
    root_files: list[str] = []
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
            root_files.append(entry.name)
        else:
            root_files.append(entry.name)
    yield "", root_files
    for top in sorted(tops & top_dirs):
        top_path = os.path.join(root, top)
        real = os.path.realpath(top_path) if os.path.islink(top_path) else root_real + "/" + top
        if os.path.islink(top_path) and (root_real == real or root_real.startswith(real.rstrip("/") + "/")):
            problems.add("symlink_loop", _loop_message(top, real))
            continue
        yield from _walk(top_path, top + "/", real, 1, problems)
