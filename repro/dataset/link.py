"""Point upstream's ``dataset/ILSVRC2012`` at the real data with a symlink, never risking the data.

Upstream's configs read ``./dataset/ILSVRC2012/``. A symlink keeps the 150 GB tree where it is;
the only thing this module ever replaces is a symlink (with ``force``, or when it points at a tiny
set the harness generated). A real directory or
file at that path may be somebody's only copy of ImageNet: it is reported, never touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from repro.dataset.check import check_dataset
from repro.dataset.check_report import DatasetReport
from repro.dataset.tiny import is_tiny_dataset
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_UPSTREAM, ReproError
from repro.core.paths import DATASET_LINK, with_upstream
import psutil

CREATED = "created"
ALREADY = "already"
REPLACED = "replaced"


@dataclass
class LinkResult:
    """What ``link_dataset`` did: ``action`` is created / already / replaced (``old_target`` set)."""

    action: str
    link: Path
    target: Path
    old_target: Path | None = None
    report: DatasetReport | None = None

    def describe(self) -> str:
        if self.action == CREATED:
            return f"linked {self.link} -> {self.target}"
        if self.action == ALREADY:
            return f"{self.link} already points to {self.target}; nothing changed"
        return f"relinked {self.link} -> {self.target} (was -> {self.old_target})"


def _link_target(link: Path) -> Path:
    """The absolute path a symlink names (relative targets are relative to its directory)."""
    target = Path(os.readlink(link))
    return target if target.is_absolute() else link.parent / target


def linked_root(upstream_dir: Path) -> Path | None:
    """Where upstream will read the dataset from (a link's target, even dangling; a real directory
    itself), or None if ``dataset/ILSVRC2012`` is absent."""
    link = Path(upstream_dir) / DATASET_LINK
    if link.is_symlink():
        return _link_target(link)
    if link.exists():
        return link
    return None


def _describe_existing(path: Path) -> str:
    # A symlink first: stat() of a dangling one raises, and "a real file" would be a lie.
    if os.path.islink(path):
        target = _link_target(path)
        return f"a symlink to {target}" if os.path.exists(path) else f"a symlink to missing {target}"
    if path.is_dir():
        try:
            held = f"holding {len(os.listdir(path))} entries"
        except OSError:
            held = "unreadable"
        return f"a real directory ({held})"
    return f"a real file ({path.stat().st_size} bytes)"


def link_dataset(root: Path, upstream_dir: Path, force: bool = False, check: bool = True) -> LinkResult:
    """Make ``upstream_dir/dataset/ILSVRC2012`` a symlink to ``root`` (absolute); idempotent. A real directory
    or file there is never replaced (not even with ``force``), a link elsewhere only with ``force``."""
    target = Path(os.path.abspath(Path(root).expanduser()))
    upstream_dir = Path(upstream_dir)
    if not upstream_dir.is_dir():
        raise ReproError(f"upstream checkout {upstream_dir} not found; run "
                         f"`{with_upstream('repro upstream fetch', upstream_dir)}` or pass --upstream DIR", EXIT_UPSTREAM)
    if not target.is_dir():
        raise ReproError(f"{target} is not a directory; pass the ImageNet root (holding train/ and val/)",
                         EXIT_BAD_INPUT)
    link = upstream_dir / DATASET_LINK
    if os.path.lexists(link.parent) and not link.parent.is_dir():
        raise ReproError(f"{link.parent} is {_describe_existing(link.parent)}, not a directory; it is never"
                         " replaced: fix or move it away yourself", EXIT_CONFLICT)
    if link.exists() and not link.is_symlink():
        raise ReproError(f"{link} is {_describe_existing(link)}; it is never removed or replaced (not even with"
                         " --force): move it away yourself, or link its contents' location with --upstream",
                         EXIT_CONFLICT)

    report = check_dataset(target) if check else None
    if report is not None and not report.ok:
        raise ReproError(f"dataset check failed for {target}: {report.first_error() or 'see the report'}; run"
                         f" `repro dataset check {target}` for all problems, or pass --no-check", report.exit_code)

    if link.is_symlink():
        old = _link_target(link)
        if os.path.realpath(old) == os.path.realpath(target):
            return LinkResult(ALREADY, link, target, report=report)
        # A link to a tiny set (`repro dataset make-tiny`, an older `make smoke`) holds no one's data:
        # the real data replaces it without --force, as the README's real run expects.
        if not force and not is_tiny_dataset(old):
            now = f"already links to {old}" if os.path.exists(link) else f"is a symlink to missing {old}"
            raise ReproError(f"{link} {now}; pass --force to point it to {target} instead", EXIT_CONFLICT)
        readers = training_in(upstream_dir)
        if readers:
            pids = " ".join(map(str, readers))
            raise ReproError(f"{link} is read by training running in {upstream_dir} (PIDs {pids}); relinking now would"
                             " change its data mid-run: wait for it to end (or stop it), then relink", EXIT_CONFLICT)
        # Swap atomically: a new link beside it, renamed over the old one (never a gap).
        temporary = link.with_name(f".{link.name}.repro-new")
        if temporary.is_symlink():
            temporary.unlink()  # our own leftover from an interrupted --force
        elif os.path.lexists(temporary):
            raise ReproError(f"{temporary} is in the way of replacing {link} and is {_describe_existing(temporary)},"
                             " not a leftover link of ours: check what it is, then move it away or remove it yourself",
                             EXIT_CONFLICT)
        with _writing(link.parent):
            os.symlink(target, temporary, target_is_directory=True)
            os.replace(temporary, link)
        return LinkResult(REPLACED, link, target, old_target=old, report=report)

    with _writing(link.parent):
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link, target_is_directory=True)
    return LinkResult(CREATED, link, target, report=report)


def training_in(upstream_dir: Path) -> list[int]:
    """PIDs of upstream training processes working in ``upstream_dir`` (they read its dataset link)."""
    here = os.path.realpath(upstream_dir)
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        info = process.info
        if info.get("cwd") and os.path.realpath(info["cwd"]) == here and any(
                part.endswith(("tools/train.py", "tools/eval.py")) for part in info.get("cmdline") or ()):
            found.append(info["pid"])
    return found


@contextmanager
def _writing(directory: Path) -> Iterator[None]:
    """Permission denied, a read-only or full disk while linking: one line naming the directory."""
    try:
        yield
    except OSError as error:
        raise ReproError(f"cannot create the dataset link in {directory}: {error.strerror or error}; make that"
                         " directory writable by you, or pass --upstream for a checkout you can write",
                         EXIT_UPSTREAM) from error
