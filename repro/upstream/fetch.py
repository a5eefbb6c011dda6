"""The pinned upstream into place: a sparse partial git fetch, an archive, or a tree in place. A new tree is
built beside ``dest`` and renamed onto it (never a half checkout where training looks); nothing the harness
did not make is deleted or moved."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_UPSTREAM, ReproError
from repro.core.files import file_sha256
from repro.upstream.archive import extract_archive
from repro.core.paths import UPSTREAM_ENV
from repro.upstream.git import as_git_url, checked_commit, checked_ref, head_commit, is_checkout_root, last_error_line, run_git
from repro.upstream.patches import Patch, apply_series, read_series, reverse_series
from repro.upstream.pin import Pin, load_pin
from repro.upstream.fetch_record import UNKNOWN, FetchRecord, git_blob_id, read_record, write_record
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
    commit = checked_commit(request.commit)
    url = request.url or pin.url
    ref = checked_ref(request.ref or pin.ref, None if request.ref else (pin.path or Path("patches/UPSTREAM.yaml")))
    # The pinned commit belongs to the pinned ref: --ref elsewhere means "that ref's tip", unpinned.
    wanted = commit or (pin.commit if ref == pin.ref else None)
    dest = request.dest.expanduser().resolve()
    if dest.exists() and not dest.is_dir():
        raise ReproError(f"{dest} exists and is not a directory: pass another --dest", EXIT_CONFLICT)

    if request.archive is None:
        as_git_url(url)  # refuse a bad URL before anything is made or moved
    if request.archive is not None:
        _from_archive(request.archive, dest, commit, pin, url, ref, say)
    elif _has_content(dest):
        if is_checkout_root(dest):
            _existing_checkout(dest, url, ref, wanted, request.in_place, pin, patches, say)
        elif request.in_place or (read_record(dest) is not None):
            say(f"using the tree at {dest} in place")
        else:
            raise ReproError(f"{dest} exists and is not a git checkout of PaddleClas: fetch into another --dest, or"
                             " pass it as --upstream DIR to use that tree in place (it is never deleted)",
                             EXIT_CONFLICT)
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


def _has_content(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


@contextmanager
def _staged(dest: Path) -> Iterator[Path]:
    """A sibling of ``dest`` to build in, renamed onto ``dest`` once complete (kept if it cannot be). A
    failure removes it, and the parent directories made for it while still empty: incomplete, ours."""
    made = [parent for parent in dest.parents if not parent.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.fetching-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)  # our own leftover from an earlier process with this pid
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for parent in made:  # deepest first; rmdir refuses a directory someone else has put files in
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    try:  # if dest gained content meanwhile, keep both
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
        raise ReproError(f"{dest} has local changes that are not our patches, refusing to touch it:"
                         f" {', '.join(state.local_changes)}; revert them (git -C {dest} checkout -- FILE) or fetch"
                         " into a fresh --dest", EXIT_UPSTREAM)


def _fetch(repo: Path, what: str, say: Say) -> tuple[bool, str]:
    """Fetch ``what`` shallow and blob-less, or without the filter when the server refuses it."""
    base = ["fetch", "-q", "--depth", "1"]
    done = run_git([*base, "--filter=blob:none", "--end-of-options", "origin", what], cwd=repo, check=False)
    if "filtering not recognized by server" in done.stderr:
        say("note: the server does not support partial clone (--filter): fetched every file of the commit")
    if done.returncode != 0 and "filter" in done.stderr.lower():
        say(f"note: the server refused the blob filter ({last_error_line(done.stderr)}): fetching without it")
        for key in ("remote.origin.promisor", "remote.origin.partialclonefilter"):  # the refused fetch set them
            run_git(["config", "--unset", key], cwd=repo, check=False)
        done = run_git([*base, "--end-of-options", "origin", what], cwd=repo, check=False)
    return done.returncode == 0, last_error_line(done.stderr)


def _fetch_commit(repo: Path, ref: str, wanted: str | None, url: str, say: Say) -> tuple[str, str | None]:
    """Fetch ``wanted`` (or the tip of ``ref``); return the commit and the ref it is known to be the tip of."""
    sha_reason = ""
    if wanted:
        fetched, sha_reason = _fetch(repo, wanted, say)
        if fetched:
            return wanted, None
    fetched, ref_reason = _fetch(repo, ref, say)
    if not fetched:
        if "couldn't find remote ref" in ref_reason:
            ref_reason = f"{url} has no branch or tag {ref}"
        why = f"the pinned commit {wanted[:8]}: {sha_reason}; nor {ref}: {ref_reason}" if wanted else f"{ref}: {ref_reason}"
        raise ReproError(f"cannot fetch {why}; check the URL and network, or use a mirror (--url URL; make smoke"
                         " UPSTREAM_URL=URL, e.g. https://gitee.com/paddlepaddle/PaddleClas.git), an archive (--archive"
                         f" FILE; make smoke UPSTREAM_ARCHIVE=FILE), or a checkout you already have"
                         f" ({UPSTREAM_ENV}=/path/to/PaddleClas)", EXIT_UPSTREAM)
    tip = run_git(["rev-parse", "FETCH_HEAD^{commit}"], cwd=repo).stdout.strip()
    if wanted and tip != wanted:
        raise ReproError(f"{url} does not serve the pinned commit {wanted[:8]} ({ref} is now at {tip[:8]};"
                         f" {sha_reason}): use a mirror that has it, or pin the new tip with `repro upstream lock` and"
                         " re-verify the patches", EXIT_UPSTREAM)
    return tip, ref


def _clone(dest: Path, url: str, ref: str, wanted: str | None, pin: Pin, say: Say) -> None:
    git_url = as_git_url(url)
    with _staged(dest) as staging:
        run_git(["init", "-q", "--end-of-options", str(staging)], what="git init")
        run_git(["remote", "add", "--end-of-options", "origin", git_url], cwd=staging)
        commit, tip_of = _fetch_commit(staging, ref, wanted, url, say)
        run_git(["sparse-checkout", "set", "--no-cone", "--end-of-options", *pin.sparse], cwd=staging, what="git sparse-checkout")
        run_git(["checkout", "-q", "--detach", commit, "--"], cwd=staging, what=f"checking out {commit[:8]}")
        if head_commit(staging) != commit:
            raise ReproError(f"checkout of {commit[:8]} did not take in {staging}: report this", EXIT_UPSTREAM)
        write_record(staging, FetchRecord(source="git", url=url, ref=tip_of, commit=commit))
    fetched = f"{ref} at {commit[:8]}" if tip_of else f"commit {commit[:8]} (the pin)"
    say(f"fetched {fetched} from {url} into {dest}")
    if not wanted:
        say(f"WARNING: no commit pinned for {ref}: checked out its tip {commit[:8]}; run `repro upstream lock` to pin it")


def _existing_checkout(dest: Path, url: str, ref: str, wanted: str | None, in_place: bool, pin: Pin, patches: list[Patch], say: Say) -> None:
    current = head_commit(dest)
    short = (current or UNKNOWN)[:8]
    if wanted is None or current == wanted:
        say(f"{dest} is already at {short}: verifying")
        return
    _refuse_local_changes(dest, pin, patches)
    if in_place or read_record(dest) is None:
        raise ReproError(f"{dest} is at {short}, the pin says {wanted[:8]}, and the harness did not make this checkout"
                         f" so it will not move it: run git -C {dest} fetch origin {wanted} && git -C {dest} checkout"
                         f" {wanted}, or fetch into a fresh --dest", EXIT_UPSTREAM)
    say(f"moving {dest} from {short} to {wanted[:8]}")
    reverse_series(dest, patches)
    run_git(["remote", "set-url", "--end-of-options", "origin", as_git_url(url)], cwd=dest)
    commit, tip_of = _fetch_commit(dest, ref, wanted, url, say)
    run_git(["checkout", "-q", "--detach", commit, "--"], cwd=dest, what=f"checking out {commit[:8]}")
    write_record(dest, FetchRecord(source="git", url=url, ref=tip_of, commit=commit))


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
        raise ReproError(f"{dest} already exists and does not hold {archive.name}: extract into another --dest"
                         " (it is never deleted)", EXIT_CONFLICT)
    with _staged(dest) as staging:
        embedded = extract_archive(archive, staging, pin.sparse)
        if commit and embedded and commit != embedded:
            raise ReproError(f"{archive.name} was made from {embedded[:8]}, not --commit {commit[:8]}: check the archive", EXIT_BAD_INPUT)
        known = pin.archive_sha256 is not None and digest == pin.archive_sha256 and pin.commit is not None
        if known and (commit or embedded or pin.commit) != pin.commit:
            raise ReproError(f"{archive.name} is the pin's known archive of {pin.commit[:8]}, not"
                             f" {(commit or embedded)[:8]}: drop --commit", EXIT_BAD_INPUT)
        final = pin.commit if known else (commit or embedded or UNKNOWN)
        if final != UNKNOWN and pin.commit and final != pin.commit and ref == pin.ref:
            raise ReproError(f"{archive.name} is commit {final[:8]}, the pin says {pin.commit[:8]}: use an archive of"
                             " the pinned commit", EXIT_UPSTREAM)
        verified_by = ("sha256 of the pin's known archive" if known
                       else "the archive's embedded commit id" if embedded and embedded == final else None)
        files = {path.relative_to(staging).as_posix(): git_blob_id(path.read_bytes())
                 for path in sorted(staging.rglob("*")) if path.is_file() and not path.is_symlink()}
        write_record(staging, FetchRecord(source="archive", url=None, ref=None, commit=final, archive=archive.name,
                                          archive_sha256=digest, files=files, commit_verified_by=verified_by))
    say(f"extracted {len(files)} files of {archive.name} (sha256 {digest[:12]}) into {dest}")
    if final == UNKNOWN:
        say("WARNING: the upstream COMMIT IS UNKNOWN for this archive (none given with --commit, none embedded): "
            "the run manifest will say 'unknown'; pass --commit SHA if you know which commit it is")
    elif verified_by is None:
        say(f"WARNING: commit {final[:8]} claimed, not verified: {archive.name} embeds no commit id and is not the pin's known archive")
    else:
        say(f"commit {final[:8]}, verified by {verified_by}")
