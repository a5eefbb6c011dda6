"""A cheap identity of a dataset for the run manifest: which lists the run trained on.

Hashing 150 GB of images would take hours; the list files pin which files and labels were used, and
the counts make a silent swap (a 100-class subset, a different val split) visible in the manifest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from repro.core.files import open_regular_file
from repro.dataset import layout
from repro.dataset.tiny import is_tiny_dataset

_CHUNK = 1 << 20


def _list_fingerprint(path: Path) -> tuple[dict[str, object], set[str]]:
    """sha256, line count and label set of one list file, in one streaming read."""
    digest = hashlib.sha256()
    lines = 0
    labels: set[str] = set()
    tail = b""
    with open_regular_file(path) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            lines += chunk.count(b"\n")
            pieces = (tail + chunk).split(b"\n")
            tail = pieces.pop()
            labels.update(piece.strip().rpartition(b" ")[2] for piece in pieces if piece.strip())
    if tail:
        lines += 1
        if tail.strip():
            labels.add(tail.strip().rpartition(b" ")[2])
    decoded = {label.decode("utf-8", errors="replace") for label in labels}
    return {"sha256": digest.hexdigest(), "lines": lines, "size": path.stat().st_size}, decoded


def fingerprint(root: Path) -> dict:
    """sha256 and line count of both lists, class count (distinct train labels); no image reads. A missing
    list is ``None`` (the manifest records what was there; ``check_dataset`` judges it)."""
    root = Path(root)
    result: dict[str, object] = {"root": str(root), "tiny": is_tiny_dataset(root)}
    labels: dict[str, set[str] | None] = {}
    for split, list_name, _ in layout.SPLITS:
        path = root / list_name
        result[f"{split}_list"], labels[split] = _list_fingerprint(path) if path.is_file() else (None, None)
    result["classes"] = None if labels["train"] is None else len(labels["train"])
    return result
