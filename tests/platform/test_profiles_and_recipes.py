"""Platform profiles and recipes are data the code trusts: each must be complete and mutually consistent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from repro.core.errors import ReproError
from repro.core.paths import environments_dir
from repro.platform.profiles import available_profiles, load_profile
from repro.recipes.catalog import load_recipe

GPU_FLAGS = {"FLAGS_cudnn_exhaustive_search": "True", "FLAGS_cudnn_batchnorm_spatial_persistent": "True"}
EXPECTED = {"cpu", "nvidia-cuda", "ixuca-bi-v150-sdk4.2.0", "ixuca-bi-v100-sdk3.0.0"}


def requirement_lines(path: Path) -> list[str]:
    """Requirement lines with includes followed, comments dropped."""
    lines: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            lines += requirement_lines((path.parent / line[3:].strip()).resolve())
        else:
            lines.append(line)
    return lines


def test_all_platforms_present() -> None:
    assert EXPECTED <= set(available_profiles())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_is_complete(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name == profile.directory.name
    assert profile.requirements.is_file()
    assert profile.paddle["install"] and profile.paddle["check"]
    if name == "cpu":
        assert profile.device == "cpu" and profile.env == {} and profile.visible_devices_var is None
        assert profile.device_query is None
    else:
        assert profile.device == "gpu"
        assert profile.launcher_devices_flag == "--gpus"
        assert profile.visible_devices_var == "CUDA_VISIBLE_DEVICES"
        assert profile.env == GPU_FLAGS
        assert profile.device_query is not None


@pytest.mark.parametrize("name", ["ixuca-bi-v150-sdk4.2.0", "ixuca-bi-v100-sdk3.0.0"])
def test_ixuca_profiles_use_the_vendor_paddle(name: str) -> None:
    profile = load_profile(name)
    assert profile.vendor_paddle
    assert profile.device_query.tool == "ixsmi"
    assert "not on PyPI" in profile.paddle["install"]
    sdk = name.rsplit("sdk", 1)[1]
    assert sdk in profile.description
    # pip must never pull a PyPI paddle over the vendor build.
    assert not [line for line in requirement_lines(profile.requirements) if line.startswith("paddlepaddle")]


@pytest.mark.parametrize("name,pin", [("cpu", "paddlepaddle==2.6.2"), ("nvidia-cuda", "paddlepaddle-gpu==2.6.2")])
def test_pypi_profiles_pin_their_paddle(name: str, pin: str) -> None:
    lines = requirement_lines(load_profile(name).requirements)
    assert pin in lines
    assert len([line for line in lines if line.startswith("paddlepaddle")]) == 1


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_requirement_is_pinned_and_upstream_pins_hold(name: str) -> None:
    lines = requirement_lines(load_profile(name).requirements)
    unpinned = [line for line in lines if "==" not in line]
    assert unpinned == []
    pins = dict(line.split("==", 1) for line in lines)
    assert pins["numpy"] == "1.24.4"
    assert pins["scikit-learn"] == "1.3.2"  # 1.9.x segfaults when imported after paddle
    assert pins["opencv-python"] == "4.6.0.66"  # upstream caps at <=4.6.0.66
    assert pins["gast"] == "0.3.3"
    names = [re.split("==", line)[0].lower() for line in lines]
    assert len(names) == len(set(names)), "a package pinned twice"


def test_unknown_profile_is_a_clear_error() -> None:
    with pytest.raises(ReproError, match="choose one of: .*cpu"):
        load_profile("nope")


def test_profile_missing_keys_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "profile.yaml").write_text("name: broken\ndevice: gpu\n")
    monkeypatch.setattr("repro.platform.profiles.environments_dir", lambda: tmp_path)
    with pytest.raises(ReproError, match="lacks description"):
        load_profile("broken")


def test_profiles_dir_has_only_profiles() -> None:
    for entry in environments_dir().iterdir():
        if entry.is_dir():
            assert (entry / "profile.yaml").is_file(), entry


def test_unknown_recipe_is_a_clear_error() -> None:
    with pytest.raises(ReproError, match="unknown recipe"):
        load_recipe("resnet9000")
