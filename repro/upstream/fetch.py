"""Getting the pinned upstream into place: a sparse partial git fetch, an archive, or a tree in place.

Every path ends the same way: refuse local changes that are not our patches, apply the series,
then ``inspect_checkout`` must report no problem. New trees are built in a sibling directory and
renamed into place, so an interrupted fetch never leaves a half checkout where training looks.
Nothing the harness did not make is ever deleted or moved.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from repro.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_UPSTREAM, ReproError
from repro.upstream.archive import extract_archive, file_sha256
from repro.upstream.git import as_git_url, head_commit, is_checkout_root, is_full_sha, last_error_line, run_git
from repro.upstream.patches import Patch, apply_series, read_series, reverse_series
from repro.upstream.pin import Pin, load_pin
from repro.upstream.record import UNKNOWN, FetchRecord, git_blob_id, read_record, write_record
from repro.upstream.state import UpstreamState, inspect_checkout

Say = Callable[[str], None]


@dataclass(frozen=True)
class FetchRequest:
    dest: Path
    url: str | None = None
    ref: str | None = None
    commit: str | None = None
    archive: Path | None = None
    in_place: bool = False  # --upstream DIR: use that tree as it is, never clone or move it


def fetch_upstream(request: FetchRequest, pin: Pin | None = None, patches: list[Patch] | None = None, say: Say = print) -> UpstreamState:
    pin = pin or load_pin()
    patches = read_series() if patches is None else patches
    commit = _checked_sha(request.commit)
    url = request.url or pin.url
    ref = request.ref or pin.ref
    # The pinned commit belongs to the pinned ref: --ref elsewhere means "that ref's tip", unpinned.
    wanted = commit or (pin.commit if ref == pin.ref else None)
    dest = request.dest.expanduser().resolve()
    if dest.exists() and not dest.is_dir():
        raise ReproError(f"{dest} exists and is not a directory: pass another --dest", EXIT_CONFLICT)

    if request.archive is not None:
        _from_archive(request.archive, dest, commit, pin, url, ref, say)
    elif _has_content(dest):
        if is_checkout_root(dest):
            _existing_checkout(dest, url, ref, wanted, request.in_place, pin, patches, say)
        elif request.in_place or (read_record(dest) is not None):
            say(f"using the tree at {dest} in place")
        else:
            raise ReproError(
                f"{dest} exists and is not a git checkout of PaddleClas: fetch into another --dest, "
                "or pass it as --upstream DIR to use that tree in place (it is never deleted)",
                EXIT_CONFLICT,
            )
    else:
        _clone(dest, url, ref, wanted, pin, say)

    _refuse_local_changes(dest, pin, patches)
    for patch, newly in apply_series(dest, patches):
        say(f"patch {patch.name}: {'applied' if newly else 'already applied'}")
    state = inspect_checkout(dest, pin, patches)
    problems = state.problems()
    if problems:
        raise ReproError("; ".join(problems), EXIT_UPSTREAM)
    return state


def _checked_sha(commit: str | None) -> str | None:
    if commit is None:
        return None
    if not is_full_sha(commit):
        raise ReproError(f"--commit must be a full 40-hex commit id, got {commit!r}", EXIT_BAD_INPUT)
    return commit.lower()


def _has_content(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _staging_dir(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.fetching-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)  # our own leftover from an earlier process with this pid
    return staging


def _move_into_place(staging: Path, dest: Path) -> None:
    """Rename the finished tree onto ``dest``; if ``dest`` gained content meanwhile, keep both."""
    try:
        if dest.is_dir():
            dest.rmdir()  # empty when the fetch began; rmdir refuses if it is not any more
        staging.rename(dest)
    except OSError as error:
        raise ReproError(
            f"{dest} appeared or changed during the fetch ({error.strerror or error}); the fetched tree is kept "
            f"at {staging}: check what is now in {dest} (it is not touched), move it away, then mv {staging} {dest} and rerun",
            EXIT_CONFLICT,
        ) from error


def _refuse_local_changes(dest: Path, pin: Pin, patches: list[Patch]) -> None:
    state = inspect_checkout(dest, pin, patches)
    if not state.is_paddleclas:
        raise ReproError(f"{dest} is not a PaddleClas tree (no tools/train.py, ppcls/): pass another --dest", EXIT_CONFLICT)
    if state.local_changes:
        raise ReproError(
            f"{dest} has local changes that are not our patches, refusing to touch it: "
            f"{', '.join(state.local_changes)}; revert them (git -C {dest} checkout -- FILE) or fetch into a fresh --dest",
            EXIT_UPSTREAM,
        )


def _fetch_commit(repo: Path, ref: str, wanted: str | None, url: str) -> str:
    """Fetch ``wanted`` (or the tip of ``ref``) shallow and blob-less; return the commit to check out."""
    base = ["fetch", "-q", "--depth", "1", "--filter=blob:none", "origin"]
    if wanted:
        by_sha = run_git([*base, wanted], cwd=repo, check=False)
        if by_sha.returncode == 0:
            return wanted
    by_ref = run_git([*base, ref], cwd=repo, check=False)
    if by_ref.returncode != 0:
        raise ReproError(
            f"cannot fetch {ref} from {url}: {last_error_line(by_ref.stderr)}; check the URL and network, "
            "or use --url https://gitee.com/paddlepaddle/PaddleClas.git, a local mirror, or --archive FILE",
            EXIT_UPSTREAM,
        )
    tip = run_git(["rev-parse", "FETCH_HEAD^{commit}"], cwd=repo).stdout.strip()
    if wanted and tip != wanted:
        raise ReproError(
            f"{url} does not serve the pinned commit {wanted[:8]} ({ref} is now at {tip[:8]}): "
            "use a mirror that has it, or pin the new tip with `repro upstream lock` and re-verify the patches",
            EXIT_UPSTREAM,
        )
    return tip


def _clone(dest: Path, url: str, ref: str, wanted: str | None, pin: Pin, say: Say) -> None:
    staging = _staging_dir(dest)
    try:
        run_git(["init", "-q", str(staging)], what="git init")
        run_git(["remote", "add", "origin", as_git_url(url)], cwd=staging)
        commit = _fetch_commit(staging, ref, wanted, url)
        run_git(["sparse-checkout", "set", "--no-cone", *pin.sparse], cwd=staging, what="git sparse-checkout")
        run_git(["checkout", "-q", "--detach", commit], cwd=staging, what=f"checking out {commit[:8]}")
        if head_commit(staging) != commit:
            raise ReproError(f"checkout of {commit[:8]} did not take in {staging}: report this", EXIT_UPSTREAM)
        write_record(staging, FetchRecord(source="git", url=url, ref=ref, commit=commit))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # made by this run, and incomplete
        raise
    _move_into_place(staging, dest)  # complete now: kept if it cannot be moved
    say(f"fetched {url} {ref} at {commit[:8]} into {dest}")
    if not wanted:
        say(f"WARNING: no commit pinned for {ref}: checked out its tip {commit[:8]}; run `repro upstream lock` to pin it")


def _existing_checkout(dest: Path, url: str, ref: str, wanted: str | None, in_place: bool, pin: Pin, patches: list[Patch], say: Say) -> None:
    current = head_commit(dest)
    if wanted is None or current == wanted:
        say(f"{dest} is already at {(current or UNKNOWN)[:8]}: verifying")
        return
    _refuse_local_changes(dest, pin, patches)
    record = read_record(dest)
    if in_place or record is None:
        raise ReproError(
            f"{dest} is at {(current or UNKNOWN)[:8]}, the pin says {wanted[:8]}, and the harness did not make this "
            f"checkout so it will not move it: run git -C {dest} fetch origin {wanted} && git -C {dest} checkout {wanted}, "
            "or fetch into a fresh --dest",
            EXIT_UPSTREAM,
        )
    say(f"moving {dest} from {(current or UNKNOWN)[:8]} to {wanted[:8]}")
    reverse_series(dest, patches)
    run_git(["remote", "set-url", "origin", as_git_url(url)], cwd=dest)
    commit = _fetch_commit(dest, ref, wanted, url)
    run_git(["checkout", "-q", "--detach", commit], cwd=dest, what=f"checking out {commit[:8]}")
    write_record(dest, FetchRecord(source="git", url=url, ref=ref, commit=commit))


def _from_archive(archive: Path, dest: Path, commit: str | None, pin: Pin, url: str, ref: str, say: Say) -> None:
    archive = archive.expanduser().resolve()
    if not archive.is_file():
        state = "is not a regular file" if archive.exists() else "does not exist"
        raise ReproError(f"archive {archive} {state}: download PaddleClas {ref} as .tar.gz or .zip", EXIT_BAD_INPUT)
    digest = file_sha256(archive)
    if _has_content(dest):
        record = read_record(dest)
        if record is not None and record.source == "archive" and record.archive_sha256 == digest:
            say(f"{dest} already holds {archive.name}: verifying")
            return
        raise ReproError(
            f"{dest} already exists and does not hold {archive.name}: extract into another --dest (it is never deleted)",
            EXIT_CONFLICT,
        )
    staging = _staging_dir(dest)
    try:
        embedded = extract_archive(archive, staging, pin.sparse)
        if commit and embedded and commit != embedded:
            raise ReproError(f"{archive.name} was made from {embedded[:8]}, not --commit {commit[:8]}: check the archive", EXIT_BAD_INPUT)
        final = commit or embedded or UNKNOWN
        if final != UNKNOWN and pin.commit and final != pin.commit and ref == pin.ref:
            raise ReproError(
                f"{archive.name} is commit {final[:8]}, the pin says {pin.commit[:8]}: use an archive of the pinned commit",
                EXIT_UPSTREAM,
            )
        files = {
            path.relative_to(staging).as_posix(): git_blob_id(path.read_bytes())
            for path in sorted(staging.rglob("*"))
            if path.is_file() and not path.is_symlink()
        }
        write_record(
            staging,
            FetchRecord(source="archive", url=url, ref=ref, commit=final, archive=archive.name, archive_sha256=digest, files=files),
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _move_into_place(staging, dest)
    say(f"extracted {len(files)} files of {archive.name} into {dest}")
    if final == UNKNOWN:
        say(
            "WARNING: the upstream COMMIT IS UNKNOWN for this archive (none given with --commit, none embedded): "
            "the run manifest will say 'unknown'; pass --commit SHA if you know which commit it is"
        )
    elif not commit:
        say(f"archive names its commit: {final[:8]}")
