"""``python -m repro.commands.smoke`` without real training: the missing-upstream line, the dataset placement
rules (real data is never touched), and the commands it runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from repro.commands import smoke
from repro.dataset.tiny import make_tiny
from repro.core.errors import EXIT_UPSTREAM
from repro.core.paths import DATASET_LINK
from repro.launch.upstream_config import (
    as_upstream_parses,
    check_override,
    upstream_module_names,
)


def test_without_upstream_it_stops_at_once_with_one_line(tmp_path: Path, capsys) -> None:
    code = smoke.main(["--upstream", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path / "data")])
    assert code == EXIT_UPSTREAM
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "repro upstream fetch" in lines[0] and "REPRO_UPSTREAM_DIR" in lines[0]
    assert captured.out == ""
    assert not (tmp_path / "data").exists()  # nothing was made before the check


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    root = tmp_path / "upstream"
    (root / "dataset").mkdir(parents=True)
    (root / "tools").mkdir()
    (root / "tools" / "train.py").write_text("# test double: never run here\n", encoding="utf-8")
    return root


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_tiny(tmp_path / "tiny", classes=2, train_per_class=2, val_per_class=1, size=16)


def test_an_absent_link_stays_absent_for_the_real_data(upstream: Path, tiny: Path) -> None:
    overrides, line = smoke.place_dataset(tiny, upstream)
    assert not os.path.lexists(upstream / DATASET_LINK)  # `repro dataset link` then needs no --force
    assert f"DataLoader.Train.dataset.image_root={tiny.resolve()}/" in overrides
    assert f"DataLoader.Eval.dataset.cls_label_path={tiny.resolve()}/val_list.txt" in overrides
    assert "left for the real data" in line


@pytest.mark.parametrize("kind", ["a link to real data", "a link to an older tiny set", "a real directory"])
def test_whatever_is_at_the_link_is_left_alone(upstream: Path, tiny: Path, tmp_path: Path, kind: str) -> None:
    link = upstream / DATASET_LINK
    if kind == "a real directory":
        link.mkdir()
        (link / "keep.txt").write_text("someone's data", encoding="utf-8")
    else:
        other = tmp_path / "imagenet"
        if kind == "a link to real data":
            (other / "train").mkdir(parents=True)
        else:
            other = make_tiny(tmp_path / "older", classes=2, train_per_class=1, val_per_class=1, size=16)
        os.symlink(other, link)
    overrides, _ = smoke.place_dataset(tiny, upstream)
    assert len(overrides) == 4 and all(f"={tiny.resolve()}/" in option for option in overrides)
    if kind == "a real directory":
        assert (link / "keep.txt").read_text(encoding="utf-8") == "someone's data"
    else:
        assert os.readlink(link) == str(other)


def test_dataset_overrides_pass_the_override_validation(tiny: Path) -> None:
    config = as_upstream_parses(yaml.safe_load(
        "DataLoader:\n"
        "  Train: {dataset: {image_root: ./d/, cls_label_path: ./d/train_list.txt}}\n"
        "  Eval: {dataset: {image_root: ./d/, cls_label_path: ./d/val_list.txt}}\n"
    ))
    names = upstream_module_names(None)
    for option in smoke.dataset_overrides(tiny):
        checked = check_override(option, config, names)
        assert checked.text == option and isinstance(checked.value, str)


def test_child_environment_drops_a_users_train_settings(monkeypatch) -> None:
    monkeypatch.setenv("REPRO_TRAIN_GPUS", "0,1")
    monkeypatch.setenv("REPRO_UPSTREAM_DIR", "/somewhere")
    env = smoke.child_env()
    assert "REPRO_TRAIN_GPUS" not in env and env["REPRO_UPSTREAM_DIR"] == "/somewhere"


def test_smoke_runs_train_then_check_accuracy_and_exits_with_its_code(
    upstream: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(smoke, "ensure_patched", lambda path: [])
    monkeypatch.setattr(smoke, "run_step", lambda argv: calls.append(argv) or (1 if "check-accuracy" in argv else 0))
    code = smoke.main(["--upstream", str(upstream), "--data-dir", str(tmp_path / "data"), "--logs-dir", str(tmp_path / "logs")])
    assert code == 1
    train, evaluate, check = calls
    assert train[1:5] == ["-m", "repro", "train", "--smoke"]
    assert train[train.index("--cpu-ranks") + 1] == "2" and train[train.index("--platform") + 1] == "cpu"
    assert train[train.index("--data-dir") + 1] == str((tmp_path / "data").absolute())  # its own place, not the link
    assert "-o" not in train  # nothing the verdict would list as the user's deviation
    run_dir = train[train.index("--run-dir") + 1]
    assert evaluate[3:] == ["eval", "--", run_dir]  # the standalone eval of the true best, before the verdict
    assert check[3:] == ["check-accuracy", "--", run_dir]
    assert "--tolerance" not in check  # the smoke target and its tolerance come from the manifest
    assert (tmp_path / "data" / "train_list.txt").is_file()
    assert "SMOKE FAIL" in capsys.readouterr().out.strip().splitlines()[-1]


def test_a_loss_check_smoke_is_judged_by_check_accuracy_too(upstream: Path, tmp_path: Path, monkeypatch) -> None:
    """xception's smoke checks the loss: no standalone eval, and check-accuracy gives its verdict."""
    calls: list[list[str]] = []
    monkeypatch.setattr(smoke, "ensure_patched", lambda path: [])
    monkeypatch.setattr(smoke, "run_step", lambda argv: calls.append(argv) or 0)
    code = smoke.main(["--upstream", str(upstream), "--recipe", "xception", "--data-dir", str(tmp_path / "data"),
                       "--logs-dir", str(tmp_path / "logs")])
    train, check = calls[:2]
    assert train[train.index("--data-dir") + 1] == str((tmp_path / "data").absolute())  # its own place, not the link
    assert "-o" not in train  # nothing the verdict would list as the user's deviation
    run_dir = train[train.index("--run-dir") + 1]
    assert code == 0 and check[3:] == ["check-accuracy", "--", run_dir] and not any("eval" in c[3:4] for c in calls)


def test_failed_training_is_a_smoke_fail_without_a_check(upstream: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(smoke, "ensure_patched", lambda path: [])
    monkeypatch.setattr(smoke, "run_step", lambda argv: calls.append(argv) or 6)
    code = smoke.main(["--upstream", str(upstream), "--data-dir", str(tmp_path / "data"), "--logs-dir", str(tmp_path / "logs")])
    assert code == 6 and len(calls) == 1
    assert "SMOKE FAIL: repro train exited 6" in capsys.readouterr().out
