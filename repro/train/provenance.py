"""The facts the manifest records about where a run ran: Paddle, devices, upstream, dataset.

Each collector returns a record and never raises: a manifest that says "unknown, because ..." is
honest; a run that refuses to start because a version string could not be read is not useful.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from repro import __version__
from repro.profiles import Profile

VERSION_LINE = re.compile(r"^(\w+)\s*=\s*'([^']*)'", re.M)


def harness_record() -> dict[str, Any]:
    return {"name": "repro", "version": __version__}


def paddle_record() -> dict[str, Any]:
    """Paddle's version and build from its generated ``paddle/version/__init__.py``, read as text.

    Importing paddle costs seconds and memory in the harness process; the ranks import it anyway.
    """
    spec = importlib.util.find_spec("paddle")
    if spec is None or not spec.submodule_search_locations:
        return {"installed": False, "note": "paddle is not importable in this environment"}
    version_file = Path(list(spec.submodule_search_locations)[0]) / "version" / "__init__.py"
    try:
        values = dict(VERSION_LINE.findall(version_file.read_text(encoding="utf-8")))
    except OSError as error:
        return {"installed": True, "note": f"cannot read {version_file}: {error}"}
    cuda = values.get("cuda_version", "False")
    return {
        "installed": True,
        "version": values.get("full_version"),
        "commit": values.get("commit"),
        "build": "cpu" if cuda in ("False", "", None) else "cuda",
        "cuda_version": cuda,
        "cudnn_version": values.get("cudnn_version"),
        "with_mkl": values.get("with_mkl"),
        "location": str(version_file.parent.parent),
    }


def device_report(profile: Profile, timeout: float = 20.0) -> dict[str, Any]:
    """The vendor tool's report (``ixsmi``, ``nvidia-smi``), verbatim, for the manifest."""
    if profile.device_query is None:
        return {"tool": None, "note": "no device tool for this profile (CPU ranks)"}
    argv = profile.device_query.argv()
    if shutil.which(argv[0]) is None:
        return {"tool": argv[0], "note": f"{argv[0]} not found on PATH"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"tool": argv[0], "note": f"{' '.join(argv)} failed: {error}"}
    return {"tool": argv[0], "argv": argv, "returncode": done.returncode, "output": done.stdout[-8000:]}


def upstream_record(upstream_dir: Path) -> dict[str, Any]:
    from repro.upstream.state import inspect_checkout

    try:
        return inspect_checkout(upstream_dir).to_manifest()
    except Exception as error:  # the record must not stop a run the pre-flight let through
        return {"path": str(upstream_dir), "note": f"could not inspect the checkout: {type(error).__name__}: {error}"}


def dataset_record(upstream_dir: Path) -> dict[str, Any]:
    """The dataset the upstream checkout's link points at, with its list-file fingerprint."""
    try:
        from repro.dataset.fingerprint import fingerprint
        from repro.dataset.link import linked_root
    except ImportError as error:
        return {"note": f"dataset record unavailable: {error}"}
    try:
        root = linked_root(upstream_dir)
    except Exception as error:
        return {"note": f"could not read the dataset link: {type(error).__name__}: {error}"}
    if root is None:
        return {"root": None, "note": f"no dataset linked in {upstream_dir} (`repro dataset link ROOT`)"}
    try:
        return {"root": str(root), "fingerprint": fingerprint(root)}
    except Exception as error:
        return {"root": str(root), "note": f"fingerprint failed: {type(error).__name__}: {error}"}
