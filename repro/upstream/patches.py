"""Our patch series, applied exactly once with ``git apply``, never committed (HEAD stays the pinned commit).
"Applied" means ``git apply --reverse --check`` passes, the same in a git checkout and an archive's tree."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from repro.core.files import read_bytes_bounded, read_text_bounded
from repro.core.errors import EXIT_BAD_INPUT, EXIT_UPSTREAM, ReproError
from repro.core.paths import patches_dir
from repro.upstream.git import is_checkout_root, last_error_line, run_git

SERIES_FILE = "series"
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")
_FAILED_AT = re.compile(r"patch failed: (.+):(\d+)\s*$")


@dataclass(frozen=True)
class Hunk:
    file: str
    old_start: int
    header: str


@dataclass(frozen=True)
class Patch:
    name: str
    path: Path
    sha256: str
    files: tuple[str, ...]
    hunks: tuple[Hunk, ...]

    def describe_hunk(self, file: str, line: int) -> str:
        """``FILE hunk #N (@@ ... @@)`` for the hunk git says failed at ``FILE:LINE``."""
        in_file = [hunk for hunk in self.hunks if hunk.file == file]
        return next((f"{file} hunk #{number} ({hunk.header})" for number, hunk in enumerate(in_file, start=1)
                     if hunk.old_start == line), f"{file} line {line}")


class PatchStatus(Enum):
    APPLIED = "applied"
    APPLICABLE = "not applied"
    CONFLICT = "neither applies nor is applied"


@dataclass(frozen=True)
class PatchCheck:
    patch: Patch
    status: PatchStatus
    failure: str | None = None  # for CONFLICT: which file and hunk failed, and git's reason

    @property
    def applied(self) -> bool:
        return self.status is PatchStatus.APPLIED


def read_series(directory: Path | None = None) -> list[Patch]:
    """The patches named in ``series``, in order; a name without its file is an error."""
    directory = directory or patches_dir()
    series = directory / SERIES_FILE
    if not series.is_file():
        return []
    patches = []
    for raw in read_text_bounded(series, what="patch series").splitlines():
        name = raw.split("#", 1)[0].strip()
        if not name:
            continue
        path = directory / name
        if not path.is_file():
            raise ReproError(f"patches/{SERIES_FILE} lists {name} but {path} does not exist: restore it or remove the"
                             " line", EXIT_BAD_INPUT)
        patches.append(parse_patch(path))
    return patches


def parse_patch(path: Path) -> Patch:
    """Files and hunks of a unified diff, so failures can name the hunk and state can hash it."""
    data = read_bytes_bounded(path, what="patch")
    files: list[str] = []
    hunks: list[Hunk] = []
    current: str | None = None
    for line in data.decode("utf-8", errors="replace").splitlines():
        if line.startswith("+++ "):
            target = line[4:].split("\t", 1)[0].strip()
            current = target[2:] if target.startswith(("a/", "b/")) else target
            if current not in files:
                files.append(current)
        elif current is not None:
            match = _HUNK.match(line)
            if match:
                header = line.split("@@")[1].strip()
                hunks.append(Hunk(current, int(match.group(1)), f"@@ {header} @@"))
    if not files:
        raise ReproError(f"{path} holds no unified diff: regenerate it with git diff", EXIT_BAD_INPUT)
    return Patch(path.name, path, hashlib.sha256(data).hexdigest(), tuple(files), tuple(hunks))


def _apply(tree: Path, patch: Patch, *extra: str) -> tuple[bool, str]:
    """``git apply EXTRA PATCH`` inside ``tree``; a plain tree never borrows a parent repository."""
    ceiling = None if is_checkout_root(tree) else tree.resolve().parent
    result = run_git(["apply", *extra, str(patch.path.resolve())], cwd=tree, check=False, ceiling=ceiling)
    return result.returncode == 0, result.stderr


def check_patch(tree: Path, patch: Patch) -> PatchCheck:
    if _apply(tree, patch, "--reverse", "--check")[0]:
        return PatchCheck(patch, PatchStatus.APPLIED)
    applicable, stderr = _apply(tree, patch, "--check")
    if applicable:
        return PatchCheck(patch, PatchStatus.APPLICABLE)
    return PatchCheck(patch, PatchStatus.CONFLICT, _failure(patch, stderr))


def _failure(patch: Patch, stderr: str) -> str:
    for line in stderr.splitlines():
        match = _FAILED_AT.search(line)
        if match:
            return f"{patch.describe_hunk(match.group(1), int(match.group(2)))} does not match"
    return f"{', '.join(patch.files)}: {last_error_line(stderr) or 'git apply --check failed'}"


def apply_series(tree: Path, patches: list[Patch]) -> list[tuple[Patch, bool]]:
    """Apply each patch not yet applied, in order; returns (patch, newly_applied). Stops at the first patch
    that neither applies nor is applied, leaving the earlier ones applied (independent fixes; status shows them)."""
    done = []
    for patch in patches:
        check = check_patch(tree, patch)
        if check.applied:
            done.append((patch, False))
            continue
        if check.status is PatchStatus.CONFLICT:
            raise ReproError(f"patch {patch.name} neither applies nor is applied in {tree}: {check.failure}; revert"
                             " local edits to that file, or fetch the pinned commit into a fresh --dest", EXIT_UPSTREAM)
        ok, stderr = _apply(tree, patch)
        if not ok:
            raise ReproError(f"git apply {patch.name} failed in {tree}: {last_error_line(stderr)}", EXIT_UPSTREAM)
        done.append((patch, True))
    return done


def reverse_series(tree: Path, patches: list[Patch]) -> None:
    """Un-apply the applied patches (last first), e.g. before moving a checkout to a new commit."""
    for patch in reversed(patches):
        if check_patch(tree, patch).applied:
            ok, stderr = _apply(tree, patch, "--reverse")
            if not ok:
                raise ReproError(f"un-applying {patch.name} in {tree} failed: {last_error_line(stderr)}", EXIT_UPSTREAM)


def unpatched_contents(tree: Path, applied: list[Patch]) -> dict[str, bytes | None]:
    """What each file touched by ``applied`` would hold with those patches reversed (None: it cannot be
    un-patched, so it holds more than our patch). Done on a scratch copy of just those files."""
    files = sorted({f for patch in applied for f in patch.files})
    with tempfile.TemporaryDirectory(prefix="repro-unpatch-") as scratch:
        root = Path(scratch) / "tree"
        for name in files:
            source = tree / name
            if source.is_file():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, root / name)
        root.mkdir(exist_ok=True)
        for patch in reversed(applied):
            ok, _ = _apply(root, patch, "--reverse")
            if not ok:
                return {name: None for name in files}
        return {name: (root / name).read_bytes() if (root / name).is_file() else None for name in files}
