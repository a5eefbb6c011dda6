"""Platform profiles: how Paddle is installed and launched on each kind of machine, as YAML data in
``environments/<name>/profile.yaml`` (a new platform is a folder, not an edit to the launcher)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from repro.core.files import KIB, read_text_bounded
from repro.core.errors import EXIT_ENVIRONMENT, ReproError
from repro.core.paths import environments_dir

DEFAULT_PROFILE = "cpu"
REQUIRED_KEYS = ("name", "description", "paddle", "device", "env", "requirements")
REQUIRED_PADDLE_KEYS = ("package", "source", "expected_build", "install", "check")


@dataclass(frozen=True)
class DeviceQuery:
    """The vendor's device tool (``nvidia-smi``, ``ixsmi``) and the arguments that make it brief."""

    tool: str
    args: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()  # arguments to try when ``args`` fail (an older tool: ``ixsmi -L``)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    device: str  # the Global.device value upstream expects: "gpu" or "cpu"
    launcher_devices_flag: str | None  # "--gpus" for GPU platforms; None where ranks are processes
    visible_devices_var: str | None  # "CUDA_VISIBLE_DEVICES" or the vendor's equivalent
    env: dict[str, str]
    device_query: DeviceQuery | None
    paddle: dict[str, Any]
    requirements: Path
    directory: Path = field(repr=False)

    @property
    def uses_gpus(self) -> bool:
        return self.device != "cpu"

    @property
    def vendor_paddle(self) -> bool:
        """True where Paddle comes from the vendor's SDK rather than PyPI, so pip cannot install it."""
        return self.paddle.get("source") == "vendor"


def venv_platform() -> str | None:
    """The profile ``make setup`` built this environment for (it leaves the name in the venv)."""
    marker = Path(sys.prefix) / "repro-platform"
    if marker.is_file():
        return read_text_bounded(marker, KIB, what="venv marker").strip() or None
    return None


def gpu_profiles() -> list[str]:
    """The profiles whose device is a GPU (what a user on the wrong platform can switch to)."""
    return [name for name in available_profiles() if load_profile(name).uses_gpus]


def vendor_builds() -> list[dict[str, Any]]:
    """Every profile's vendor build marks (``paddle.device_names`` and ``paddle.build_label``), lower-cased."""
    paddles = [load_profile(name).paddle for name in available_profiles()]
    return [{"device_names": [str(n).lower() for n in p["device_names"]], "build_label": str(p["build_label"])}
            for p in paddles if p.get("device_names") and p.get("build_label")]


def visible_devices_vars() -> list[str]:
    """Every profile's device-visibility variable: one left in the environment would make a CPU run's
    launcher think it drives GPUs."""
    return sorted({var for name in available_profiles() if (var := load_profile(name).visible_devices_var)})


def setup_command(name: str) -> str:
    """The command that gives this checkout a venv for profile ``name``: a venv holds one Paddle build and
    the Makefile refuses to switch one in place, so a venv built for another platform goes first."""
    current = venv_platform()
    if current and current != name:
        return f"make clean-venv && make setup PLATFORM={name}"
    return f"make setup PLATFORM={name}"


def default_platform() -> str:
    """The venv's profile (so a GPU machine set up with PLATFORM=nvidia-cuda never falls back to cpu), else cpu."""
    return venv_platform() or DEFAULT_PROFILE


def available_profiles() -> list[str]:
    return sorted(p.parent.name for p in environments_dir().glob("*/profile.yaml"))


def load_profile(name: str = DEFAULT_PROFILE) -> Profile:
    directory = environments_dir() / name
    path = directory / "profile.yaml"
    if not path.is_file():
        raise ReproError(
            f"unknown platform {name!r}; choose one of: {', '.join(available_profiles())}", EXIT_ENVIRONMENT
        )
    data = yaml.safe_load(read_text_bounded(path, what="profile", fix="restore it from the harness repository")) or {}
    missing = [k for k in REQUIRED_KEYS if k not in data]
    missing += [f"paddle.{k}" for k in REQUIRED_PADDLE_KEYS if k not in (data.get("paddle") or {})]
    if missing:
        raise ReproError(f"profile {path} lacks {', '.join(missing)}; add them to the file", EXIT_ENVIRONMENT)
    query = data.get("device_query")
    return Profile(
        name=data["name"],
        description=data["description"],
        device=data["device"],
        launcher_devices_flag=data.get("launcher_devices_flag"),
        visible_devices_var=data.get("visible_devices_var"),
        env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
        device_query=DeviceQuery(query["tool"], tuple(query.get("args") or ()), tuple(query.get("fallback") or ()))
        if query else None,
        paddle=dict(data["paddle"]),
        requirements=directory / data["requirements"],
        directory=directory,
    )
