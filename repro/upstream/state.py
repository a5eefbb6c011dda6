"""What the upstream checkout holds now. ``inspect_checkout`` never raises for a missing or odd directory
(doctor, pre-flight and the manifest need an answer); ``problems()`` stop a launch, ``warnings()`` do not."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.core.files import LIST_FILE_LIMIT, read_bytes_bounded
from repro.core.paths import DATASET_LINK, with_upstream
from repro.upstream.git import git_output, head_commit, is_checkout_root, run_git
from repro.upstream.patches import Patch, PatchCheck, check_patch, read_series, unpatched_contents
from repro.upstream.pin import Pin, load_pin
from repro.upstream.fetch_record import TREE_RECORD, UNKNOWN, git_blob_id, read_record

# Untracked files count as local changes only where Python would import them from; anything
# else (our dataset link, output/, logs) is the user's business, not a change to upstream code.
CODE_DIRS = ("ppcls/", "tools/")
NEVER_CHANGES = ("__pycache__/", ".pyc")


@dataclass
class UpstreamState:
    path: Path
    present: bool
    url: str | None = None
    ref: str | None = None
    pinned_commit: str | None = None
    commit: str | None = None
    matches_pin: bool = False
    patches: list[PatchCheck] = field(default_factory=list)
    local_changes: list[str] = field(default_factory=list)
    verified_against: str | None = None
    source: str | None = None  # "git", "archive" or "tree" (a plain tree the harness did not make)
    is_paddleclas: bool = False
    changes_known: bool = True  # False for a plain tree with no fetch record to compare with
    pinned_ref: str | None = None
    commit_is: str | None = None  # what the commit truly is: "develop d178931f, standing in for release/2.6"
    archive: str | None = None
    archive_sha256: str | None = None
    commit_verified_by: str | None = None  # archives: what proves the commit; None = only claimed

    @property
    def commit_claimed(self) -> bool:
        """An archive said to be the pinned commit, with nothing (embedded id, known sha256) to prove it."""
        return self.source == "archive" and self.commit == self.pinned_commit is not None and not self.commit_verified_by

    def problems(self) -> list[str]:
        """Why training must not start, one line each with its fix; empty when ready."""
        where = str(self.path)
        if not self.present:
            return [f"upstream checkout missing at {where}; run `{with_upstream('repro upstream fetch', where)}` "
                    "(or pass --upstream DIR)"]
        if not self.is_paddleclas:
            return [f"{where} is not a PaddleClas tree (no tools/train.py): run `repro upstream fetch --dest NEWDIR`, "
                    "then pass --upstream NEWDIR"]
        found: list[str] = []
        if self.pinned_commit is None:
            found.append("patches/UPSTREAM.yaml pins no commit: run `repro upstream lock`")
        elif self.commit not in (None, UNKNOWN) and not self.matches_pin and not self.commit_claimed:
            found.append(f"{where} is at {self.commit[:8]}, the pin says {self.pinned_commit[:8]}: "
                         f"run `{with_upstream('repro upstream fetch', where)}` (or fetch into a fresh --dest)")
        for check in self.patches:
            if check.failure:
                found.append(f"patch {check.patch.name} neither applies nor is applied: {check.failure};"
                             " revert that file")
            elif not check.applied:
                found.append(f"patch {check.patch.name} is not applied in {where}: "
                             f"run `{with_upstream('repro upstream apply-patches', where)}`")
        if self.local_changes:
            found.append(f"{len(self.local_changes)} local change(s) not from our patches in {where}: "
                         f"{', '.join(self.local_changes[:8])}{' ...' if len(self.local_changes) > 8 else ''}; "
                         "revert them (git checkout -- FILE) or fetch into a fresh --dest")
        return found

    def warnings(self) -> list[str]:
        found: list[str] = []
        if not self.present or not self.is_paddleclas:
            return found
        if self.commit in (None, UNKNOWN):
            found.append(f"the upstream commit of {self.path} is UNKNOWN (archive or plain tree fetched without "
                         "--commit): results cannot be tied to a commit; refetch with --commit SHA or from git")
        elif self.commit_claimed:
            found.append(f"commit {self.commit[:8]} of {self.path} is claimed, not verified: archive {self.archive} "
                         "embeds no commit id and its sha256 is not the pin's archive_sha256; fetch from git, or use"
                         " the pin's known archive")
        elif self.verified_against and self.commit != self.verified_against:
            found.append(f"upstream commit {self.commit[:8]} is not {self.verified_against[:8]}, the commit our patches"
                         " were verified against: re-verify the patches and update verified_against in"
                         " patches/UPSTREAM.yaml")
        if not self.changes_known:
            found.append(f"local changes in {self.path} cannot be checked (no git, no fetch record)")
        return found

    def summary_line(self) -> str:
        if not self.present:
            return f"upstream: missing at {self.path} (run `{with_upstream('repro upstream fetch', self.path)}`)"
        applied = sum(p.applied for p in self.patches)
        commit = (self.commit or UNKNOWN)[:8]
        if self.matches_pin:
            pin_word = "pinned"
        elif self.commit_claimed:
            pin_word = "pinned commit claimed, not verified"
        elif self.commit in (None, UNKNOWN):
            pin_word = "commit unknown"
        else:
            pin_word = f"NOT the pinned {(self.pinned_commit or 'nothing')[:8]}"
        parts = [pin_word, f"{applied}/{len(self.patches)} patches applied"]
        if self.local_changes:
            parts.append(f"{len(self.local_changes)} local changes")
        if not self.is_paddleclas:
            parts = ["not a PaddleClas tree"]
        truth = f": {self.commit_is}" if self.commit_is and self.is_paddleclas and self.commit not in (None, UNKNOWN) else ""
        return f"upstream: {self.path} at {commit} ({', '.join(parts)}){truth}"

    def to_manifest(self) -> dict[str, Any]:
        """JSON-serialisable: what the run manifest records about the code that ran."""
        record: dict[str, Any] = {"path": str(self.path)}
        for key in ("present", "source", "url", "ref", "commit_is", "pinned_ref", "pinned_commit", "commit",
                    "matches_pin", "archive", "archive_sha256", "commit_verified_by", "verified_against"):
            record[key] = getattr(self, key)  # ref: only when the commit is known to be that ref's tip
        record["patches"] = [{"name": c.patch.name, "sha256": c.patch.sha256, "applied": c.applied}
                             for c in self.patches]
        return {**record, "local_changes": list(self.local_changes), "problems": self.problems(),
                "warnings": self.warnings()}


def inspect_checkout(upstream_dir: Path, pin: Pin | None = None, patches: list[Patch] | None = None) -> UpstreamState:
    """Read-only look at ``upstream_dir``: commit, pin match, patches, local changes."""
    pin = pin or load_pin()
    patches = read_series() if patches is None else patches
    path = Path(upstream_dir).expanduser().resolve()
    state = UpstreamState(path=path, present=path.is_dir(), pinned_commit=pin.commit, verified_against=pin.verified_against,
                          pinned_ref=pin.ref)
    if not state.present:
        state.url = pin.url
        state.ref = pin.ref if pin.commit_from == pin.ref else None
        state.commit_is = pin.describe()
        return state
    state.is_paddleclas = (path / "tools" / "train.py").is_file() and (path / "ppcls").is_dir()
    record = read_record(path)
    state.url, state.ref = (record.url, record.ref) if record else (None, None)
    if is_checkout_root(path):
        state.source, state.commit = "git", head_commit(path)
        state.url = state.url or git_output(path, "config", "--get", "remote.origin.url")
    else:
        state.source = record.source if record else "tree"
        state.commit = record.commit if record else UNKNOWN
        if record is not None and record.source == "archive":
            state.archive, state.archive_sha256 = record.archive, record.archive_sha256
            state.commit_verified_by = record.commit_verified_by
    state.matches_pin = state.commit is not None and state.commit == pin.commit and not state.commit_claimed
    state.commit_is = _commit_is(state, pin)
    if state.commit == pin.commit:  # the pin, not a mirror's branch names, says what the pinned commit is
        state.ref = pin.ref if pin.commit_from == pin.ref else None
    if not state.is_paddleclas:
        return state
    state.patches = [check_patch(path, patch) for patch in patches]
    applied = [c.patch for c in state.patches if c.applied]
    if state.source == "git":
        state.local_changes = _git_local_changes(path, applied)
    elif record is not None and record.files:
        state.local_changes = _tree_local_changes(path, record.files, applied)
    else:
        state.changes_known = False
    return state


def _commit_is(state: UpstreamState, pin: Pin) -> str | None:
    """What the checked-out commit truly is, in words for status and the manifest."""
    if state.commit in (None, UNKNOWN):
        return None
    if state.commit == pin.commit:
        text = pin.describe()
        return f"{text} (claimed, not verified)" if state.commit_claimed else text
    if state.ref:
        return f"{state.ref} at {state.commit[:8]} when fetched"
    return f"{state.commit[:8]} (not the pinned commit)"


def _ignored(name: str) -> bool:
    return any(part in name for part in NEVER_CHANGES) or name == TREE_RECORD


def _git_local_changes(repo: Path, applied: list[Patch]) -> list[str]:
    """``git status`` minus what our applied patches explain (checked by un-applying them on a copy)."""
    out = run_git(["status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=normal"], cwd=repo,
                  what="git status").stdout
    tracked: list[str] = []
    changes: list[str] = []
    for entry in filter(None, out.split("\0")):
        code, name = entry[:2], entry[3:]
        if code == "??":
            if name.startswith(CODE_DIRS) and not _ignored(name) and name.rstrip("/") != DATASET_LINK.as_posix():
                changes.append(name)
        elif code != "!!":
            tracked.append(name)
    head_blob = lambda name: git_output(repo, "rev-parse", "-q", "--verify", f"HEAD:{name}")  # noqa: E731
    explained = _explained_by_patches(repo, applied, tracked, baseline=head_blob)
    changes.extend(name for name in tracked if name not in explained)
    return sorted(changes)


def _explained_by_patches(tree: Path, applied: list[Patch], changed: list[str], baseline) -> set[str]:
    """Changed files that equal their baseline once our applied patches are taken back out."""
    touched = {f for patch in applied for f in patch.files}
    candidates = [name for name in changed if name in touched]
    if not candidates:
        return set()
    unpatched = unpatched_contents(tree, applied)
    return {name for name in candidates
            if unpatched.get(name) is not None and git_blob_id(unpatched[name]) == baseline(name)}


def _tree_local_changes(tree: Path, recorded: dict[str, str], applied: list[Patch]) -> list[str]:
    """Compare a plain tree with the blob ids recorded when it was extracted."""
    changed = [name for name, blob in recorded.items() if not (tree / name).is_file()
               or git_blob_id(read_bytes_bounded(tree / name, LIST_FILE_LIMIT)) != blob]
    changed += [name for code_dir in CODE_DIRS for file in (tree / code_dir).rglob("*") if file.is_file()
                and (name := file.relative_to(tree).as_posix()) not in recorded and not _ignored(name)]
    explained = _explained_by_patches(tree, applied, changed, baseline=recorded.get)
    return sorted(name for name in changed if name not in explained)
