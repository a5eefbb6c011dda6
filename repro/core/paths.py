"""Where things live (the project root, the upstream checkout), decided in one place so that ``--upstream
DIR``, ``REPRO_UPSTREAM_DIR`` and the default ``.upstream/PaddleClas`` mean the same to every command."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

UPSTREAM_ENV = "REPRO_UPSTREAM_DIR"
DEFAULT_UPSTREAM = Path(".upstream") / "PaddleClas"
# Where upstream's ImageNetDataset configs expect the data, relative to the upstream checkout.
DATASET_LINK = Path("dataset") / "ILSVRC2012"
# Where runs go by default, relative to the current directory like the checkout.
DEFAULT_LOGS = Path("logs")


def package_dir() -> Path:
    """The installed ``repro`` package: recipes and targets ship inside it as data."""
    return Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The harness checkout (holds ``patches/`` and ``environments/``), found from the package so commands
    work from any directory; ``REPRO_ROOT`` overrides it for an installed (non-editable) package."""
    override = os.environ.get("REPRO_ROOT")
    return Path(override).resolve() if override else package_dir().parent


def patches_dir() -> Path:
    return project_root() / "patches"


def environments_dir() -> Path:
    return project_root() / "environments"


def resolve_upstream_dir(option: str | os.PathLike[str] | None = None) -> Path:
    """The upstream checkout: ``--upstream`` beats ``REPRO_UPSTREAM_DIR`` beats the default, which is
    relative to the current directory like ``logs/`` (the README runs commands from the project root)."""
    chosen = option or os.environ.get(UPSTREAM_ENV)
    return Path(chosen).expanduser().resolve() if chosen else (Path.cwd() / DEFAULT_UPSTREAM).resolve()


def with_upstream(command: str, checkout: str | os.PathLike[str]) -> str:
    """``command`` (one taking ``--upstream``) acting on ``checkout`` when typed here: ``--upstream DIR`` is
    added unless ``checkout`` is where commands look by default (``REPRO_UPSTREAM_DIR``, else
    ./.upstream/PaddleClas of the current directory)."""
    path = Path(checkout).expanduser().resolve()
    where = "" if path == resolve_upstream_dir(None) else f" --upstream {shlex.quote(str(path))}"
    return f"{command}{where}"


def fix_for_not_a_run(path: str | os.PathLike[str]) -> str:
    """The fix for a path that is not a run, as a command that works here: list the runs beside it
    (the right one is usually a neighbour, and runs need not live under ./logs)."""
    parent = Path(path).expanduser().parent
    if parent.is_dir() and parent.resolve() != DEFAULT_LOGS.resolve():
        listing = f"repro runs --logs-dir {shlex.quote(('./' if str(parent).startswith('-') else '') + str(parent))}"
    else:
        listing = "repro runs" if DEFAULT_LOGS.is_dir() else "repro runs --logs-dir DIR"
    return f"pass a run directory that `{listing}` lists"
