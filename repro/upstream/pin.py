"""The pin: which upstream repository, ref and commit the harness runs (``patches/UPSTREAM.yaml``), kept
beside the patches because they are valid only for the commit they were verified against."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from repro.core.files import read_text_bounded, write_text_atomic
from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.core.paths import patches_dir
from repro.upstream.git import is_full_sha

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

PIN_FILE = "UPSTREAM.yaml"
DEFAULT_URL = "https://github.com/PaddlePaddle/PaddleClas.git"
DEFAULT_REF = "release/2.6"
# What tools/train.py needs (no-cone sparse patterns); the docs and images stay on the server.
DEFAULT_SPARSE = ("/ppcls/", "/tools/", "/requirements.txt", "/setup.py", "/dataset/")


@dataclass(frozen=True)
class Pin:
    url: str
    ref: str
    commit: str | None
    verified_against: str | None
    verified_date: str | None = None
    sparse: tuple[str, ...] = DEFAULT_SPARSE
    path: Path | None = field(default=None, compare=False)
    # The branch or tag whose tip ``commit`` was when pinned; another name than ``ref`` means the
    # commit stands in for ``ref`` (``repro upstream lock`` resolves ``ref`` itself and sets both).
    commit_from: str | None = None
    # sha256 of a known archive of ``commit``: an archive with this digest is that commit.
    archive_sha256: str | None = None

    def describe(self) -> str:
        """What the pinned commit truly is, e.g. 'develop d178931f, standing in for release/2.6'."""
        if not self.commit:
            return f"{self.ref} (no commit pinned)"
        if self.commit_from == self.ref:
            return f"{self.ref} at {self.commit[:8]}"
        if self.commit_from:
            return f"{self.commit_from} {self.commit[:8]}, standing in for {self.ref}"
        return f"{self.commit[:8]}, pinned for {self.ref} (not known to be its tip)"


def pin_path() -> Path:
    return patches_dir() / PIN_FILE


def load_pin(path: Path | None = None) -> Pin:
    """Read the pin; a missing or malformed file is a ``ReproError`` that says how to repair it."""
    path = path or pin_path()
    try:
        data = yaml.safe_load(read_text_bounded(path, what="upstream pin", fix="restore it (git checkout -- patches/)")) or {}
    except FileNotFoundError:
        raise ReproError(f"no upstream pin at {path}: restore patches/{PIN_FILE} from the harness repository (git"
                         " checkout -- patches/) or set REPRO_ROOT to the harness checkout", EXIT_BAD_INPUT) from None
    except yaml.YAMLError as error:
        raise ReproError(f"{path} is not valid YAML ({error.__class__.__name__}): fix it or restore it", EXIT_BAD_INPUT)
    if not isinstance(data, dict):
        raise ReproError(f"{path} must be a mapping with url, ref and commit: restore it", EXIT_BAD_INPUT)
    commit = _optional_sha(data.get("commit"), "commit", path)
    verified = _optional_sha(data.get("verified_against"), "verified_against", path)
    sparse = data.get("sparse") or list(DEFAULT_SPARSE)
    if not isinstance(sparse, list) or not all(isinstance(p, str) and p.startswith("/") for p in sparse):
        raise ReproError(f"{path}: sparse must be a list of path patterns starting with /, like /ppcls/", EXIT_BAD_INPUT)
    digest = data.get("archive_sha256")
    if digest not in (None, "") and not _SHA256.match(str(digest).strip().lower()):
        raise ReproError(f"{path}: archive_sha256 must be 64 hex digits (sha256sum FILE), got {digest!r}", EXIT_BAD_INPUT)
    return Pin(
        url=str(data.get("url") or DEFAULT_URL),
        ref=str(data.get("ref") or DEFAULT_REF),
        commit=commit,
        verified_against=verified,
        verified_date=None if data.get("verified_date") is None else str(data["verified_date"]),
        sparse=tuple(sparse),
        path=path,
        commit_from=None if data.get("commit_from") in (None, "") else str(data["commit_from"]),
        archive_sha256=str(digest).strip().lower() if digest else None,
    )


def _optional_sha(value: object, key: str, path: Path) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip().lower()
    if not is_full_sha(text):
        raise ReproError(f"{path}: {key} must be a full 40-hex commit, got {value!r}: run `repro upstream lock`",
                         EXIT_BAD_INPUT)
    return text


def write_pinned(commit: str, ref: str | None = None, path: Path | None = None, commit_from: str | None = None) -> Path:
    """Rewrite the ``commit:`` (and ``ref:``, ``commit_from:``) lines as text: a YAML round trip would drop the
    comments that explain the pin. The result is parsed again to prove it still loads."""
    path = path or pin_path()
    text = read_text_bounded(path, what="upstream pin") if path.is_file() else f"url: {DEFAULT_URL}\nref: {DEFAULT_REF}\ncommit:\n"
    for key, value in (("commit", commit), ("ref", ref), ("commit_from", commit_from)):
        if value is not None:
            text = _set_line(text, key, value)
    write_text_atomic(path, text)
    loaded = load_pin(path)
    assert loaded.commit == commit.lower(), "pin rewrite did not take"  # a bug here must be loud
    return path


def _set_line(text: str, key: str, value: str) -> str:
    pattern = re.compile(rf"^{key}:.*$", re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(f"{key}: {value}", text, count=1)
    return text.rstrip("\n") + f"\n{key}: {value}\n"
