"""The Makefile hands command-line variables to repro through the environment, never a shell string."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.doubles import make_fake_checkout

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def venv_ready() -> bool:
    return (ROOT / ".venv" / "bin" / "repro").exists() and any((ROOT / ".venv").glob(".installed-*"))


def test_variables_are_not_pasted_into_recipes() -> None:
    if not venv_ready():
        pytest.skip("needs the .venv that `make test` builds")
    done = make("-n", "train", "GPUS=0,1;touch /tmp/repro-pwned", "OVERRIDES=$(id)", "check", "LOGS=x;y")
    assert done.returncode == 0, done.stderr
    assert "pwned" not in done.stdout and "$(id)" not in done.stdout and "x;y" not in done.stdout
    assert ".venv/bin/repro train" in done.stdout


def test_make_train_dry_run_prints_the_reference_command(tmp_path: Path) -> None:
    if not venv_ready():
        pytest.skip("needs the .venv that `make test` builds")
    upstream = make_fake_checkout(tmp_path / "PaddleClas")
    env = {**os.environ, "REPRO_UPSTREAM_DIR": str(upstream)}
    done = make("train", "GPUS=0,1,2,3", "PLATFORM=ixuca-bi-v150-sdk4.2.0", "DRY_RUN=1", env=env)
    assert done.returncode == 0, done.stderr
    assert ("python3 -u -m paddle.distributed.launch --gpus=0,1,2,3 tools/train.py -c "
            "ppcls/configs/ImageNet/ResNeSt/ResNeSt50.yaml -o Arch.pretrained=False -o Global.device=gpu") in done.stdout
    for flag in ("FLAGS_cudnn_exhaustive_search=True", "FLAGS_cudnn_batchnorm_spatial_persistent=True",
                 "CUDA_VISIBLE_DEVICES=0,1,2,3"):
        assert flag in done.stdout
    # The platform of a train run never rebuilds the venv for another Paddle build.
    assert not (ROOT / ".venv" / ".installed-ixuca-bi-v150-sdk4.2.0").exists()


def test_setup_refuses_to_switch_the_platform_of_an_existing_venv() -> None:
    if not venv_ready():
        pytest.skip("needs the .venv that `make test` builds")
    built_for = (ROOT / ".venv" / "repro-platform").read_text().strip()
    other = "nvidia-cuda" if built_for != "nvidia-cuda" else "cpu"
    done = make("setup", f"PLATFORM={other}")
    assert done.returncode != 0
    assert f"built for {built_for}, not {other}" in done.stderr and "make clean-venv" in done.stderr
