"""``repro dataset make-tiny``: the ImageNet layout, deterministic, learnable, and safe to re-run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from repro.cli import cli
from repro.dataset.check import check_dataset
from repro.dataset.fingerprint import fingerprint
from repro.dataset.tiny import MARKER, is_tiny_dataset, make_tiny
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, ReproError


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != MARKER
    }


def test_cli_make_tiny_then_check_exits_zero(tmp_path: Path) -> None:
    runner = CliRunner(mix_stderr=False)
    out = tmp_path / "t"
    made = runner.invoke(cli, ["dataset", "make-tiny", str(out)])
    assert made.exit_code == 0, made.stderr
    checked = runner.invoke(cli, ["dataset", "check", str(out)])
    assert checked.exit_code == 0, checked.stdout


def test_layout_is_what_upstream_reads(tmp_path: Path) -> None:
    out = make_tiny(tmp_path / "t", classes=4, train_per_class=3, val_per_class=2, size=24)
    train = (out / "train_list.txt").read_text().splitlines()
    val = (out / "val_list.txt").read_text().splitlines()
    assert len(train) == 12 and len(val) == 8
    assert train[0] == "train/n00000001/n00000001_1.JPEG 0"
    assert val[-1] == "val/n00000004/ILSVRC2012_val_00000008.JPEG 3"
    for line in train + val:
        path, label = line.strip().split(" ")  # upstream's parse
        assert (out / path).is_file() and path.endswith(".JPEG") and 0 <= int(label) < 4
        assert path.split("/")[1] == f"n{int(label) + 1:08d}"
    with Image.open(out / train[0].split(" ")[0]) as image:
        assert image.format == "JPEG" and image.size == (26, 24) and image.mode == "RGB"


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    first = digest_tree(make_tiny(tmp_path / "a", classes=2, train_per_class=2, val_per_class=1, size=16, seed=3))
    second = digest_tree(make_tiny(tmp_path / "b", classes=2, train_per_class=2, val_per_class=1, size=16, seed=3))
    other = digest_tree(make_tiny(tmp_path / "c", classes=2, train_per_class=2, val_per_class=1, size=16, seed=4))
    assert first == second
    assert first != other and first.keys() == other.keys()


def test_classes_are_separable_in_small_crops(tmp_path: Path) -> None:
    """Nearest class mean on random 32-pixel crops classifies val perfectly: a network can learn it."""
    out = make_tiny(tmp_path / "t", classes=4, train_per_class=8, val_per_class=4, size=72)
    rng = np.random.default_rng(0)

    def crops(list_name: str):
        for line in (out / list_name).read_text().splitlines():
            path, label = line.split(" ")
            pixels = np.asarray(Image.open(out / path), dtype=np.float64)
            y, x = rng.integers(0, pixels.shape[0] - 32), rng.integers(0, pixels.shape[1] - 32)
            yield pixels[y : y + 32, x : x + 32].mean(axis=(0, 1)), int(label)

    train = list(crops("train_list.txt"))
    means = np.array([np.mean([f for f, lab in train if lab == k], axis=0) for k in range(4)])
    assert min(np.linalg.norm(means[i] - means[j]) for i in range(4) for j in range(i + 1, 4)) > 40
    correct = [np.argmin(np.linalg.norm(means - feature, axis=1)) == label for feature, label in crops("val_list.txt")]
    assert all(correct)


def test_refuses_a_foreign_non_empty_directory(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    result = CliRunner(mix_stderr=False).invoke(cli, ["dataset", "make-tiny", str(out)])
    assert result.exit_code == EXIT_CONFLICT
    assert "is not empty and is not a make-tiny output" in result.stderr and result.stderr.count("\n") == 1
    assert sorted(path.name for path in out.iterdir()) == ["thesis.tex"]


def test_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ReproError) as caught:
        make_tiny(tmp_path / "f")
    assert caught.value.exit_code == EXIT_CONFLICT and (tmp_path / "f").read_text() == "x"


def test_rerun_rewrites_its_own_output_and_keeps_foreign_files(tmp_path: Path) -> None:
    out = make_tiny(tmp_path / "t", classes=3, train_per_class=2, val_per_class=1, size=16)
    (out / "train" / "notes.txt").write_text("user file")
    make_tiny(out, classes=2, train_per_class=2, val_per_class=1, size=16)
    assert not (out / "train" / "n00000003").exists()  # the old third class is gone
    assert (out / "train" / "notes.txt").read_text() == "user file"
    marker = json.loads((out / MARKER).read_text())
    assert marker["complete"] and marker["params"]["classes"] == 2
    assert check_dataset(out, class_num=2).ok and is_tiny_dataset(out)


def test_from_samples_a_real_tree_with_consistent_labels(tmp_path: Path) -> None:
    source = make_tiny(tmp_path / "src", classes=6, train_per_class=5, val_per_class=3, size=40)
    out = make_tiny(tmp_path / "t", classes=3, train_per_class=2, val_per_class=2, size=20, seed=1, source=source)
    source_labels = dict(
        line.split(" ") for name in ("train_list.txt", "val_list.txt")
        for line in (source / name).read_text().splitlines()
    )
    new_labels: dict[str, int] = {}
    for name in ("train_list.txt", "val_list.txt"):
        for line in (out / name).read_text().splitlines():
            path, label = line.split(" ")
            class_dir = path.split("/")[1]
            assert new_labels.setdefault(class_dir, int(label)) == int(label)
            assert path in source_labels
            with Image.open(out / path) as image:
                assert min(image.size) == 20
    assert sorted(new_labels.values()) == [0, 1, 2]
    # relabelled in the original order: a higher old label keeps a higher new label
    old = {class_dir: int(source_labels[f"train/{class_dir}/{class_dir}_1.JPEG"]) for class_dir in new_labels}
    assert sorted(new_labels, key=new_labels.get) == sorted(old, key=old.get)
    assert check_dataset(out, class_num=3).ok


def test_from_with_too_few_classes(tmp_path: Path) -> None:
    source = make_tiny(tmp_path / "src", classes=2, train_per_class=2, val_per_class=1, size=16)
    with pytest.raises(ReproError, match="only 2 classes"):
        make_tiny(tmp_path / "t", classes=3, source=source)
    assert not (tmp_path / "t").exists()


def test_fingerprint_is_cheap_identity(tmp_path: Path) -> None:
    out = make_tiny(tmp_path / "t", classes=3, train_per_class=2, val_per_class=1, size=16)
    print_ = fingerprint(out)
    train_bytes = (out / "train_list.txt").read_bytes()
    assert print_["train_list"]["sha256"] == hashlib.sha256(train_bytes).hexdigest()
    assert print_["train_list"]["lines"] == 6 and print_["val_list"]["lines"] == 3
    assert print_["classes"] == 3 and print_["tiny"] is True
    (out / "val_list.txt").unlink()
    assert fingerprint(out)["val_list"] is None


def test_make_tiny_under_a_file_is_one_line_not_an_internal_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = CliRunner(mix_stderr=False).invoke(cli, ["dataset", "make-tiny", str(blocker / "tiny")])
    assert result.exit_code == EXIT_BAD_INPUT, result.stderr
    assert result.stderr.startswith(f"error: cannot use {blocker / 'tiny'}: Not a directory;")
    assert result.stderr.count("\n") == 1 and blocker.read_text() == "x"
