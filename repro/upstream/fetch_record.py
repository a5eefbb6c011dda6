"""What ``repro upstream fetch`` put in a checkout: an archive's tree knows no commit, and neither kind says
the harness made it (it moves only checkouts it made). In ``.git/`` for a checkout (invisible to ``git
status``), else ``.repro-upstream.json`` with every file's blob id, so local edits are found without git."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from repro.core.errors import ReproError
from repro.core.files import read_text_bounded, write_text_atomic
from repro.upstream.git import is_checkout_root, run_git

TREE_RECORD = ".repro-upstream.json"
GIT_RECORD = "repro-upstream.json"
UNKNOWN = "unknown"


@dataclass
class FetchRecord:
    source: str  # "git" or "archive"
    url: str | None  # None for an archive: where it was downloaded from is not known
    ref: str | None  # only when the commit was fetched as that ref's tip
    commit: str  # full sha, or "unknown" for an archive fetched without --commit
    fetched_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    archive: str | None = None
    archive_sha256: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # archive only: path -> git blob id
    # archive only: what proves ``commit`` ("the archive's embedded commit id", "sha256 of the pin's
    # known archive"); None means the commit is only claimed (--commit), not verified
    commit_verified_by: str | None = None


def git_blob_id(data: bytes) -> str:
    """The id git gives this content, so plain trees and git checkouts compare the same way."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def record_path(tree: Path) -> Path:
    if is_checkout_root(tree):
        return Path(run_git(["rev-parse", "--absolute-git-dir"], cwd=tree).stdout.strip()) / GIT_RECORD
    return tree / TREE_RECORD


def write_record(tree: Path, record: FetchRecord) -> Path:
    return write_text_atomic(record_path(tree), json.dumps(asdict(record), indent=1, sort_keys=True) + "\n")


def read_record(tree: Path) -> FetchRecord | None:
    """The record, or None when the harness did not make this tree (or the record is unreadable)."""
    try:
        data = json.loads(read_text_bounded(record_path(tree)))
        known = {f.name for f in fields(FetchRecord)}
        return FetchRecord(**{key: value for key, value in data.items() if key in known})
    except (OSError, ValueError, TypeError, ReproError):
        return None
