"""The Makefile hands command-line variables to repro through the environment, never a shell string."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.doubles import make_fake_checkout
from tests.upstream_fixtures import make_bare_mirror, make_fake_upstream, make_git_archive, write_harness_root

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


def _fake_harness(tmp_path: Path):
    upstream = make_fake_upstream(tmp_path)
    # The pin's own URL is unreachable, as GitHub is on the machines these variables are for.
    root = write_harness_root(tmp_path / "harness", "http://127.0.0.1:9/PaddleClas.git", upstream.first)
    return upstream, root


def test_smoke_variables_reach_fetch_through_the_environment_never_a_shell(tmp_path: Path) -> None:
    if not venv_ready():
        pytest.skip("needs the .venv that `make test` builds")
    done = make("-n", "smoke", "UPSTREAM_URL=x;touch /tmp/repro-pwned", "UPSTREAM_ARCHIVE=$(id)")
    assert done.returncode == 0, done.stderr
    assert "pwned" not in done.stdout and "$(id)" not in done.stdout and "id" not in done.stdout.split()


@pytest.mark.parametrize("variable", ["UPSTREAM_ARCHIVE", "UPSTREAM_URL"])
def test_make_smoke_fetches_from_an_archive_or_a_mirror(tmp_path: Path, variable: str) -> None:
    """The fetch step of `make smoke` for real (the training step is replaced by `true`)."""
    if not venv_ready():
        pytest.skip("needs the .venv that `make test` builds")

    upstream, root = _fake_harness(tmp_path)
    if variable == "UPSTREAM_ARCHIVE":
        value = str(make_git_archive(upstream.path, upstream.first, tmp_path / "pc.tar.gz"))
    else:
        value = str(make_bare_mirror(upstream.path, tmp_path / "mirror.git", branch=None))
    dest = tmp_path / "PaddleClas"
    env = {**os.environ, "REPRO_ROOT": str(root), "REPRO_UPSTREAM_DIR": str(dest)}
    done = make("smoke", f"{variable}={value}", "PY=true", env=env)
    assert done.returncode == 0, done.stderr
    assert (dest / "tools" / "train.py").is_file()
    assert "(pinned, 1/1 patches applied)" in done.stdout


def test_make_train_passes_the_node_options(tmp_path: Path) -> None:
    if not venv_ready():
        pytest.skip("needs the .venv that `make test` builds")
    upstream = make_fake_checkout(tmp_path / "PaddleClas")
    env = {**os.environ, "REPRO_UPSTREAM_DIR": str(upstream)}
    done = make("train", "GPUS=0,1,2,3", "PLATFORM=ixuca-bi-v150-sdk4.2.0", "DRY_RUN=1", "NNODES=2", "NODE_RANK=1",
                "MASTER=10.0.0.1:8090", env=env)
    assert done.returncode == 0, done.stderr
    assert "--nnodes 2 --master 10.0.0.1:8090 --rank 1" in done.stdout
    assert "/node1 (not created: dry run)" in done.stdout
    assert "global batch 64 x 8 = 512" in done.stdout + done.stderr  # the world size, not the local devices


def test_make_train_visualdl_reaches_repro_train(tmp_path: Path) -> None:
    if not venv_ready():
        pytest.skip("needs the .venv that `make test` builds")
    upstream = make_fake_checkout(tmp_path / "PaddleClas")
    env = {**os.environ, "REPRO_UPSTREAM_DIR": str(upstream)}
    done = make("train", "PLATFORM=cpu", "DRY_RUN=1", "VISUALDL=1", env=env)
    assert done.returncode == 0, done.stderr
    assert "[harness: -o Global.use_visualdl=True" in done.stdout
    plain = make("train", "PLATFORM=cpu", "DRY_RUN=1", env=env)  # VISUALDL unset: an empty variable is off
    assert plain.returncode == 0 and "use_visualdl" not in plain.stdout


def test_make_test_keeps_each_shared_fixture_on_one_worker() -> None:
    """`make test` spreads tests over xdist workers, which would set a module's shared fixture up once per
    worker (the docs sandbox trains the double four times): such a module names itself a group, or is
    all real trainings (tests/conftest.py puts those in one group)."""
    make_n = make("-n", "test", "TEST_WORKERS=3")
    assert "-n 3 --dist loadgroup" in make_n.stdout, make_n.stdout + make_n.stderr
    shared = [path for path in (ROOT / "tests").rglob("test_*.py")
              if re.search(r'@pytest\.fixture\(scope="(module|package|session)"', path.read_text(encoding="utf-8"))]
    assert len(shared) >= 5, shared
    ungrouped = [str(path.relative_to(ROOT)) for path in shared
                 if not re.search(r"pytest\.mark\.xdist_group\(__name__\)|"
                                  r"^pytestmark = \[pytest\.mark\.upstream, pytest\.mark\.slow\]",
                                  path.read_text(encoding="utf-8"), re.MULTILINE)]
    assert not ungrouped, f"shared fixtures set up once per worker in: {ungrouped}"
