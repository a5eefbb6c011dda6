"""The facts the manifest records about where a run ran: devices, upstream, dataset (Paddle's build
comes from the one probe the start of a run makes, :func:`repro.machine.probe_paddle`).

Each collector returns a record and never raises: a manifest that says "unknown, because ..." is
honest; a run that refuses to start because a version string could not be read is not useful.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from repro import __version__
from repro.machine import query_device_tool
from repro.profiles import Profile
from repro.train.config import ResolvedConfig


def harness_record() -> dict[str, Any]:
    return {"name": "repro", "version": __version__}


def device_report(profile: Profile) -> dict[str, Any]:
    """The vendor tool's report (``ixsmi``, ``nvidia-smi``), verbatim, for the manifest."""
    report = query_device_tool(profile.device_query)
    if report is None:
        return {"tool": None, "note": "no device tool for this profile (CPU ranks)"}
    return report.to_manifest()


def upstream_record(upstream_dir: Path) -> dict[str, Any]:
    from repro.upstream.state import inspect_checkout

    try:
        return inspect_checkout(upstream_dir).to_manifest()
    except Exception as error:  # the record must not stop a run the pre-flight let through
        return {"path": str(upstream_dir), "note": f"could not inspect the checkout: {type(error).__name__}: {error}"}


def dataset_record(upstream_dir: Path, resolved: ResolvedConfig) -> dict[str, Any]:
    """The dataset the run's config reads (through the checkout's link, or wherever the config
    points, as the smoke does when real data holds the link), with its list-file fingerprint."""
    from repro.dataset.fingerprint import fingerprint
    from repro.train.preflight import dataset_paths

    root, _ = dataset_paths(resolved, upstream_dir)
    if root is None:
        return {"root": None, "note": "the config names no DataLoader.Train.dataset.image_root"}
    root = Path(os.path.realpath(root))
    if not root.is_dir():
        return {"root": str(root), "note": "not a directory"}
    try:
        return {"root": str(root), "fingerprint": fingerprint(root)}
    except Exception as error:  # the record must not stop a run the pre-flight let through
        return {"root": str(root), "note": f"fingerprint failed: {type(error).__name__}: {error}"}
