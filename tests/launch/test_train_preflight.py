"""Pre-flight lines: each blocking problem is one line that names its fix."""

from __future__ import annotations

import os
import shutil
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import pytest

from repro.dataset.tiny import MARKER, make_tiny
from repro.platform.devices import PaddleInfo, probe_paddle
from repro.core.paths import DATASET_LINK
from repro.recipes.catalog import load_recipe
from repro.launch import preflight
from repro.launch.config import ResolvedConfig
from repro.launch.preflight import checkpoints_needed, run_preflight

GPU_PROFILE = SimpleNamespace(name="nvidia-cuda", visible_devices_var="CUDA_VISIBLE_DEVICES", uses_gpus=True)
CPU_PROFILE = SimpleNamespace(name="cpu", visible_devices_var=None, uses_gpus=False)
PADDLE_GPU = PaddleInfo(importable=True, version="2.6.2", cuda_build=True, gpu_count=4)
PADDLE_CPU = PaddleInfo(importable=True, version="2.6.2", cuda_build=False, gpu_count=0)
Usage = namedtuple("Usage", "total used free")


def resolved(image_root: str = "./dataset/ILSVRC2012/", class_num: int = 2, epochs: int = 300, save_interval: int = 1) -> ResolvedConfig:
    dataset = {"image_root": image_root, "cls_label_path": image_root.rstrip("/") + "/train_list.txt"}
    eval_dataset = {"image_root": image_root, "cls_label_path": image_root.rstrip("/") + "/val_list.txt"}
    config = {"DataLoader": {"Train": {"dataset": dataset}, "Eval": {"dataset": eval_dataset}}}
    return ResolvedConfig(
        config_arg="c.yaml", overrides=[], config=config, epochs=epochs, save_interval=save_interval,
        arch="ResNeSt50", class_num=class_num,
    )


@pytest.fixture
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout the upstream helper's inspection would call ready (stubbed: it is tested there)."""
    root = tmp_path / "upstream"
    (root / "dataset").mkdir(parents=True)
    monkeypatch.setattr(preflight, "check_upstream", lambda path: [])
    return root


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A small dataset that passes for real data: make-tiny's output without its marker file."""
    root = make_tiny(tmp_path / "tiny", classes=2, train_per_class=2, val_per_class=1, size=16)
    (root / MARKER).unlink()
    return root


def test_a_tiny_set_is_refused_for_a_real_run_but_fine_for_the_smoke(upstream: Path, tmp_path: Path) -> None:
    smoke_set = make_tiny(tmp_path / "smoke-set", classes=2, train_per_class=2, val_per_class=1, size=16)
    os.symlink(smoke_set, upstream / DATASET_LINK)
    (line,) = run(upstream, tmp_path)
    assert "tiny set made by `repro dataset make-tiny`" in line and "repro dataset link /path/to/ILSVRC2012" in line
    assert run(upstream, tmp_path, smoke=True) == []


def run(upstream: Path, tmp_path: Path, **kwargs) -> list[str]:
    arguments = dict(
        upstream_dir=upstream, profile=CPU_PROFILE, recipe=load_recipe("resnest50"), gpus=None,
        run_dir=tmp_path / "logs" / "run", resolved=resolved(), keep_checkpoints=3, smoke=False,
        paddle_info=PADDLE_CPU,
    )
    arguments.update(kwargs)
    return run_preflight(**arguments)


def test_ready_machine_has_no_problems(upstream: Path, tiny: Path, tmp_path: Path) -> None:
    os.symlink(tiny, upstream / DATASET_LINK)
    assert run(upstream, tmp_path) == []


def test_missing_checkout_says_how_to_fetch(tmp_path: Path) -> None:
    problems = run(tmp_path / "nowhere", tmp_path)
    assert any("repro upstream fetch" in line for line in problems)


def test_unlinked_dataset_says_how_to_link(upstream: Path, tmp_path: Path) -> None:
    problems = run(upstream, tmp_path)
    assert problems == [f"dataset not linked: {upstream / DATASET_LINK} is absent; run `repro dataset link /path/to/ILSVRC2012`"]
    smoke_problems = run(upstream, tmp_path, smoke=True)
    assert "make smoke" in smoke_problems[0]


def test_dangling_link_is_reported(upstream: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone", upstream / DATASET_LINK)
    (line,) = run(upstream, tmp_path)
    assert "does not exist" in line and "repro dataset link" in line


def test_dataset_failing_the_check_names_the_check_command(upstream: Path, tiny: Path, tmp_path: Path) -> None:
    os.symlink(tiny, upstream / DATASET_LINK)
    (tiny / "val_list.txt").write_text("val/n00000001/missing.JPEG 0\n", encoding="utf-8")
    (line,) = run(upstream, tmp_path)
    assert "fails the check" in line and f"repro dataset check {tiny}" in line


def test_config_pointing_outside_the_link_is_checked_there(upstream: Path, tiny: Path, tmp_path: Path) -> None:
    assert run(upstream, tmp_path, resolved=resolved(image_root=str(tiny) + "/")) == []
    problems = run(upstream, tmp_path, resolved=resolved(image_root=str(tmp_path / "elsewhere") + "/"))
    assert problems and "fails the check" in problems[0]


def test_gpu_that_does_not_exist_is_named(upstream: Path, tiny: Path, tmp_path: Path) -> None:
    os.symlink(tiny, upstream / DATASET_LINK)
    problems = run(upstream, tmp_path, profile=GPU_PROFILE, gpus=[0, 5], paddle_info=PADDLE_GPU)
    assert problems == ["GPU 5 does not exist: paddle sees 4 GPU(s) (ids 0..3); pass --gpus within that range"]


def test_gpus_with_a_cpu_build_of_paddle(upstream: Path, tiny: Path, tmp_path: Path) -> None:
    os.symlink(tiny, upstream / DATASET_LINK)
    (line,) = run(upstream, tmp_path, profile=GPU_PROFILE, gpus=[0], paddle_info=PADDLE_CPU)
    assert "CPU build" in line and "PLATFORM=nvidia-cuda" in line


def test_paddle_that_cannot_be_imported_is_one_line(upstream: Path, tiny: Path, tmp_path: Path) -> None:
    os.symlink(tiny, upstream / DATASET_LINK)
    (line,) = run(upstream, tmp_path, gpus=[0], profile=GPU_PROFILE, paddle_info=PaddleInfo(importable=False, error="ModuleNotFoundError: paddle"))
    assert line.startswith("paddle cannot be imported") and "make setup" in line


def test_probe_reports_a_broken_interpreter(tmp_path: Path) -> None:
    info = probe_paddle(python=str(tmp_path / "no-python"))
    assert not info.importable and "cannot start" in info.error


def test_too_many_cpu_ranks_is_only_a_warning(upstream: Path, tiny: Path, tmp_path: Path) -> None:
    os.symlink(tiny, upstream / DATASET_LINK)
    problems = run(upstream, tmp_path, cpu_ranks=(os.cpu_count() or 1) + 1)
    assert list(problems) == []
    assert problems.warnings and "share cores" in problems.warnings[0]


def test_disk_too_small_for_the_kept_checkpoints(upstream: Path, tiny: Path, tmp_path: Path, monkeypatch) -> None:
    os.symlink(tiny, upstream / DATASET_LINK)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 0, 1500 * 1024 * 1024))
    (line,) = run(upstream, tmp_path)
    # latest + best + true best + 3 kept + 1 in flight = 7 x 200 MB, plus the margin
    assert "1500 MB free" in line and "2424 MB needed" in line and "--keep-checkpoints" in line


def test_checkpoint_count_follows_save_interval() -> None:
    assert checkpoints_needed(resolved(epochs=300, save_interval=1), keep_checkpoints=3) == 7
    assert checkpoints_needed(resolved(epochs=6, save_interval=1000), keep_checkpoints=3) == 3
    assert checkpoints_needed(resolved(epochs=6, save_interval=0), keep_checkpoints=3) == 3


def test_preflight_refuses_an_installed_ppcls_that_would_replace_upstreams(tmp_path: Path, monkeypatch) -> None:
    # tools/train.py appends the checkout to sys.path: a `ppcls` earlier on the path wins silently.
    from repro.launch.preflight import check_upstream

    checkout = tmp_path / "PaddleClas"
    (checkout / "ppcls").mkdir(parents=True)
    (checkout / "ppcls" / "__init__.py").write_text("")
    (checkout / "tools").mkdir()
    (checkout / "tools" / "train.py").write_text("")
    elsewhere = tmp_path / "site"
    (elsewhere / "ppcls").mkdir(parents=True)
    (elsewhere / "ppcls" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(elsewhere))
    problems = check_upstream(checkout)
    assert any("ppcls" in line and str(elsewhere) in line for line in problems), problems
    monkeypatch.delenv("PYTHONPATH")
    assert not any(str(elsewhere) in line for line in check_upstream(checkout))
