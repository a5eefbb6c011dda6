"""``repro dataset prepare``: miniature official archives, extracted trees, Kaggle, and every bad input.

The miniature devkit numbers its classes in an order that is deliberately *not* the sorted-WNID
order, so a label taken from the ILSVRC2012_ID instead of the sorted WNID fails the val-label test.
"""

from __future__ import annotations

import errno
import io
import json
import os
import random
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner
from PIL import Image

from repro.cli import cli
from repro.core.errors import ReproError
from repro.dataset import prepare as prepare_module
from repro.dataset.prepare import _stream_members
from repro.dataset.tar_stream import NotPlain, plain_members

WNIDS = ["n01440764", "n01443537", "n02099601"]  # sorted: labels 0, 1, 2
# ILSVRC2012_ID of each leaf: not the sorted order (ID 1 is the last WNID).
IDS = {"n02099601": 1, "n01440764": 2, "n01443537": 3}
WORDS = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
         "n02099601": "golden retriever"}
TRAIN_PER_CLASS = 3
# val image N (1-based) -> WNID: the ground truth holds IDS[wnid] on line N.
VAL_WNIDS = ["n02099601", "n01440764", "n01443537", "n01440764", "n02099601", "n01443537"]


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def val_name(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}.JPEG"


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def inner_tar(wnid: str, count: int = TRAIN_PER_CLASS) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for i in range(count):
            add_bytes(tar, f"{wnid}_{i + 1}.JPEG", jpeg(hash((wnid, i)) % 1000))
    return buffer.getvalue()


def meta_mat(ids: dict[str, int] | list[tuple[str, int]], extra_parent: bool = True) -> bytes:
    """meta.mat in the devkit's structure: a struct array `synsets`, leaves with num_children 0."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
              "wordnet_height", "num_train_images"]
    pairs = list(ids.items()) if isinstance(ids, dict) else ids
    rows = [(synset_id, wnid, WORDS.get(wnid, wnid), "gloss", 0, np.zeros((1, 0)), 0, TRAIN_PER_CLASS)
            for wnid, synset_id in pairs]
    if extra_parent:  # a non-leaf synset, as in the real devkit (1,860 synsets, 1,000 leaves)
        rows.append((len(pairs) + 1, "n00001740", "entity", "gloss", len(pairs),
                     np.array([[float(i) for _, i in pairs]]), 5, 0))
    synsets = np.zeros((len(rows), 1), dtype=[(name, "O") for name in fields])
    for index, row in enumerate(rows):
        synsets[index, 0] = row
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


def ground_truth(wnids: list[str] = VAL_WNIDS) -> bytes:
    return "".join(f"{IDS[wnid]}\n" for wnid in wnids).encode()


def write_devkit(path: Path, meta: bytes | None = None, truth: bytes | None = None, with_meta: bool = True) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        if with_meta:
            add_bytes(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta or meta_mat(IDS))
        add_bytes(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth or ground_truth())
    return path


def write_official(where: Path, classes: list[str] = WNIDS, val_count: int = len(VAL_WNIDS)) -> tuple[Path, Path, Path]:
    where.mkdir(parents=True, exist_ok=True)
    train = where / "ILSVRC2012_img_train.tar"
    with tarfile.open(train, "w") as tar:
        for wnid in classes:
            add_bytes(tar, f"{wnid}.tar", inner_tar(wnid))
    val = where / "ILSVRC2012_img_val.tar"
    with tarfile.open(val, "w") as tar:
        for number in range(1, val_count + 1):
            add_bytes(tar, val_name(number), jpeg(100 + number))
    return train, val, write_devkit(where / "ILSVRC2012_devkit_t12.tar.gz")


@pytest.fixture
def official(tmp_path: Path) -> tuple[Path, Path, Path]:
    return write_official(tmp_path / "download")


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["dataset", "prepare", *map(str, args), "--no-progress"])
    return result.exit_code, result.stdout, result.stderr


def run_official(out: Path, official: tuple[Path, Path, Path], *extra: str) -> tuple[int, str, str]:
    train, val, devkit = official
    return run(out, "--train-tar", train, "--val-tar", val, "--devkit", devkit, "--jobs", "1", *extra)


def list_lines(out: Path, name: str) -> list[tuple[str, int]]:
    return [(path, int(label)) for path, label in
            (line.split(" ") for line in (out / name).read_text().splitlines())]


def assert_val_labels_follow_devkit(out: Path) -> None:
    """Each val image's label is the sorted index of the WNID the devkit maps its ground-truth ID to."""
    expected = {f"val/{wnid}/{val_name(n)}": WNIDS.index(wnid) for n, wnid in enumerate(VAL_WNIDS, 1)}
    assert dict(list_lines(out, "val_list.txt")) == expected
    # Taking the ID as the label (ID - 1) would give other labels: the test can tell them apart.
    assert any(IDS[VAL_WNIDS[n - 1]] - 1 != label for n, (_, label) in enumerate(list_lines(out, "val_list.txt"), 1))


def error_line(code: int, stderr: str, expected_code: int, words: str) -> None:
    assert code == expected_code, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and words in stderr, stderr
    assert "Traceback" not in stderr


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


# --- good paths -----------------------------------------------------------------------------------

def test_official_archives_give_the_upstream_layout_and_pass_the_check(tmp_path: Path, official) -> None:
    out = tmp_path / "ILSVRC2012"
    threads = set(threading.enumerate())
    code, stdout, stderr = run_official(out, official, "--jobs", "2")
    assert code == 0, stdout + stderr
    assert "source: official ILSVRC2012 archives: 3 class tars" in stdout
    assert "not --expect imagenet-1k" in stdout
    train = list_lines(out, "train_list.txt")
    assert train[0] == ("train/n01440764/n01440764_1.JPEG", 0)
    assert len(train) == 3 * TRAIN_PER_CLASS
    assert {path.split("/")[1]: label for path, label in train} == {w: i for i, w in enumerate(WNIDS)}
    for path, _ in train:
        assert (out / path).read_bytes()[:2] == b"\xff\xd8"
    assert_val_labels_follow_devkit(out)
    assert sorted(p.name for p in (out / "val").iterdir()) == WNIDS
    assert not list(out.rglob("*.partial")) and not list(out.rglob("*.tmp"))
    # No thread left behind (a tqdm monitor would stop the check from forking its lister).
    assert set(threading.enumerate()) <= threads


def test_rerun_verifies_and_skips_finished_classes(tmp_path: Path, official) -> None:
    out = tmp_path / "out"
    assert run_official(out, official)[0] == 0
    before = tree_state(out / "train")
    code, stdout, _ = run_official(out, official)
    assert code == 0 and "4 finished parts were verified and kept" in stdout
    assert tree_state(out / "train") == before


def unrecord(out: Path, key: str, extra: list[str] = ()) -> None:
    """Turn a job's done record back into the journal a kill before it was written leaves."""
    done = out / ".repro-prepare" / "done" / f"{key}.json"
    journal = out / ".repro-prepare" / "writing" / f"{key}.txt"
    journal.parent.mkdir(exist_ok=True)
    journal.write_text("".join(f"{rel}\n" for rel in [*json.loads(done.read_text())["files"], *extra]))
    done.unlink()


def test_half_written_class_is_redone(tmp_path: Path, official) -> None:
    out = tmp_path / "out"
    assert run_official(out, official)[0] == 0
    # As after a kill: one class renamed but not recorded, another still .partial with a half-written
    # file; their journals name what was written (the half-written file too: named before it is created).
    unrecord(out, "train-n01443537")
    (out / "train" / "n01443537" / "n01443537_1.JPEG").unlink()
    unrecord(out, "train-n02099601", extra=["n02099601/half.JPEG"])
    (out / "train" / "n02099601").rename(out / "train" / "n02099601.partial")
    (out / "train" / "n02099601.partial" / "half.JPEG").write_bytes(b"\xff")
    kept = tree_state(out / "train" / "n01440764")
    code, stdout, _ = run_official(out, official)
    assert code == 0 and "2 finished parts" in stdout
    assert tree_state(out / "train" / "n01440764") == kept
    assert sorted(os.listdir(out / "train" / "n02099601")) == [f"n02099601_{i}.JPEG" for i in (1, 2, 3)]
    assert (out / "train" / "n01443537" / "n01443537_1.JPEG").is_file()
    assert not (out / "train" / "n02099601.partial").exists()


def test_interrupted_run_continues_when_rerun(tmp_path: Path, official, monkeypatch) -> None:
    original = prepare_module.run_job
    calls = []

    def interrupted(out: str, job, link: bool):  # type: ignore[no-untyped-def]
        calls.append(job.key)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(out, job, link)

    monkeypatch.setattr(prepare_module, "run_job", interrupted)
    out = tmp_path / "out"
    code, _, stderr = run_official(out, official)
    error_line(code, stderr, 130, "rerun the same command to continue")
    assert not (out / "train_list.txt").exists()
    monkeypatch.undo()
    code, stdout, _ = run_official(out, official)
    assert code == 0 and "2 finished parts were verified and kept" in stdout
    assert_val_labels_follow_devkit(out)


def test_a_deleted_image_makes_its_class_redo(tmp_path: Path, official) -> None:
    out = tmp_path / "out"
    assert run_official(out, official)[0] == 0
    (out / "val" / "n01440764" / val_name(2)).unlink()
    code, stdout, _ = run_official(out, official)
    assert code == 0 and "3 finished parts" in stdout
    assert_val_labels_follow_devkit(out)


def extract_official(tmp_path: Path, official, val_by_class: bool) -> Path:
    train, val, _ = official
    root = tmp_path / "extracted"
    with tarfile.open(train) as outer:
        for member in outer:
            with tarfile.open(fileobj=outer.extractfile(member)) as inner:
                inner.extractall(root / "train" / member.name[:-4], filter="data")
    with tarfile.open(val) as archive:
        archive.extractall(root / "val", filter="data")
    if val_by_class:
        for number, wnid in enumerate(VAL_WNIDS, 1):
            (root / "val" / wnid).mkdir(exist_ok=True)
            (root / "val" / val_name(number)).rename(root / "val" / wnid / val_name(number))
    return root


def test_extracted_tree_with_flat_val_and_devkit(tmp_path: Path, official) -> None:
    root = extract_official(tmp_path, official, val_by_class=False)
    out = tmp_path / "out"
    code, stdout, stderr = run(out, "--from", root, "--devkit", official[2], "--jobs", "1")
    assert code == 0, stdout + stderr
    assert "source: extracted tree" in stdout and "6 flat val images labelled via" in stdout
    assert_val_labels_follow_devkit(out)
    assert len(list_lines(out, "train_list.txt")) == 9


def test_extracted_tree_with_val_by_class_links(tmp_path: Path, official) -> None:
    root = extract_official(tmp_path, official, val_by_class=True)
    out = tmp_path / "out"
    code, stdout, stderr = run(out, "--from", root, "--link", "--jobs", "2")
    assert code == 0, stdout + stderr
    assert "val by class (6 images)" in stdout
    assert_val_labels_follow_devkit(out)
    source = root / "train" / "n01440764" / "n01440764_1.JPEG"
    assert os.path.samefile(source, out / "train" / "n01440764" / "n01440764_1.JPEG")


def test_link_across_disks_falls_back_to_symlinks(tmp_path: Path, official, monkeypatch) -> None:
    root = extract_official(tmp_path, official, val_by_class=True)

    def cross_device(source, target):  # type: ignore[no-untyped-def]
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), source, target)

    monkeypatch.setattr(prepare_module.os, "link", cross_device)
    out = tmp_path / "out"
    code, stdout, stderr = run(out, "--from", root, "--link", "--jobs", "1")
    assert code == 0, stdout + stderr
    linked = out / "train" / "n01440764" / "n01440764_1.JPEG"
    assert linked.is_symlink() and os.path.samefile(linked, root / "train" / "n01440764" / "n01440764_1.JPEG")
    assert_val_labels_follow_devkit(out)


def test_kaggle_layout(tmp_path: Path, official) -> None:
    extracted = extract_official(tmp_path, official, val_by_class=False)
    root = tmp_path / "kaggle"
    (root / "ILSVRC" / "Data").mkdir(parents=True)
    extracted.rename(root / "ILSVRC" / "Data" / "CLS-LOC")
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {WORDS[w]}\n" for w in WNIDS))
    rows = [f"{val_name(n)[:-5]},{wnid} 1 2 3 4 {wnid} 5 6 7 8" for n, wnid in enumerate(VAL_WNIDS, 1)]
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows[::-1]) + "\n")
    out = tmp_path / "out"
    code, stdout, stderr = run(out, "--from", root, "--jobs", "1")
    assert code == 0, stdout + stderr
    assert "source: Kaggle layout" in stdout
    assert_val_labels_follow_devkit(out)


# --- refused mixtures -----------------------------------------------------------------------------

def test_from_with_tars_is_a_mixture(tmp_path: Path, official) -> None:
    code, _, stderr = run(tmp_path / "out", "--from", tmp_path, "--train-tar", official[0], "--val-tar", official[1])
    error_line(code, stderr, 2, "mix an extracted tree with archives")
    assert not (tmp_path / "out").exists()


def test_val_mixing_class_dirs_and_flat_images_is_refused(tmp_path: Path, official) -> None:
    root = extract_official(tmp_path, official, val_by_class=True)
    (root / "val" / val_name(99)).write_bytes(jpeg(1))
    code, _, stderr = run(tmp_path / "out", "--from", root, "--devkit", official[2])
    error_line(code, stderr, 2, "mixes class directories")


def test_kaggle_and_plain_tree_together_are_refused(tmp_path: Path, official) -> None:
    root = extract_official(tmp_path, official, val_by_class=True)
    (root / "ILSVRC" / "Data" / "CLS-LOC").mkdir(parents=True)
    code, _, stderr = run(tmp_path / "out", "--from", root)
    error_line(code, stderr, 2, "holds both Kaggle's")


# --- bad input ------------------------------------------------------------------------------------

def test_truncated_train_tar(tmp_path: Path, official) -> None:
    train = official[0]
    data = train.read_bytes()
    train.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    code, _, stderr = run_official(out, official)
    error_line(code, stderr, 2, "truncated")
    assert not out.exists()


def test_truncated_class_tar_inside_a_whole_train_tar(tmp_path: Path, official) -> None:
    train = official[0]
    with tarfile.open(train, "w") as tar:
        for wnid in WNIDS:
            data = inner_tar(wnid)
            add_bytes(tar, f"{wnid}.tar", data[:700] if wnid == WNIDS[1] else data)
    code, _, stderr = run_official(tmp_path / "out", official)
    error_line(code, stderr, 2, "n01443537.tar): truncated or damaged")


def test_a_tar_of_something_else(tmp_path: Path, official) -> None:
    with tarfile.open(official[0], "w") as tar:
        add_bytes(tar, "README.txt", b"hello")
    code, _, stderr = run_official(tmp_path / "out", official)
    error_line(code, stderr, 2, "README.txt is not a class tar")


def test_not_a_tar_at_all(tmp_path: Path, official) -> None:
    official[1].write_bytes(jpeg(3))
    code, _, stderr = run_official(tmp_path / "out", official)
    error_line(code, stderr, 2, "not a readable tar")


def test_class_member_that_escapes_the_directory(tmp_path: Path, official) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        add_bytes(tar, "../../escape.JPEG", jpeg(1))
    with tarfile.open(official[0], "w") as tar:
        for wnid in WNIDS:
            add_bytes(tar, f"{wnid}.tar", buffer.getvalue() if wnid == WNIDS[0] else inner_tar(wnid))
    code, _, stderr = run_official(tmp_path / "out", official)
    error_line(code, stderr, 2, "unsafe member")
    assert not list(tmp_path.rglob("escape.JPEG"))


def test_devkit_without_meta_mat(tmp_path: Path, official) -> None:
    write_devkit(official[2], with_meta=False)
    code, _, stderr = run_official(tmp_path / "out", official)
    error_line(code, stderr, 2, "holds no data/meta.mat")


def test_ground_truth_with_the_wrong_count(tmp_path: Path, official) -> None:
    write_devkit(official[2], truth=ground_truth(VAL_WNIDS + ["n01440764"]))
    code, _, stderr = run_official(tmp_path / "out", official)
    error_line(code, stderr, 2, "ground truth has 7 labels but")


def test_val_image_without_a_label(tmp_path: Path, official) -> None:
    with tarfile.open(official[1], "a") as tar:
        add_bytes(tar, val_name(7), jpeg(7))
    code, _, stderr = run_official(tmp_path / "out", official)
    error_line(code, stderr, 2, f"{val_name(7)} has no label")


def test_duplicate_wnid_in_train_tar(tmp_path: Path, official) -> None:
    with tarfile.open(official[0], "a") as tar:
        add_bytes(tar, "n01440764.tar", inner_tar("n01440764"))
    code, _, stderr = run_official(tmp_path / "out", official)
    error_line(code, stderr, 2, "class n01440764 appears twice")


def test_duplicate_wnid_in_meta_mat(tmp_path: Path, official) -> None:
    write_devkit(official[2], meta=meta_mat(list(IDS.items()) + [("n01440764", 4)]))
    code, _, stderr = run_official(tmp_path / "out", official)
    error_line(code, stderr, 2, "lists WNID n01440764 or ID 4 twice")


def test_unknown_wnid_in_train_tar(tmp_path: Path, official) -> None:
    with tarfile.open(official[0], "a") as tar:
        add_bytes(tar, "n09999999.tar", inner_tar("n09999999"))
    code, _, stderr = run_official(tmp_path / "out", official)
    error_line(code, stderr, 2, "class n09999999 is not one of the devkit's 3 classes")


def test_out_holding_other_files_is_untouched(tmp_path: Path, official) -> None:
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "mine.JPEG").write_bytes(b"precious")
    before = tree_state(out)
    code, _, stderr = run_official(out, official)
    error_line(code, stderr, 5, "holds files prepare did not write")
    assert tree_state(out) == before


@pytest.mark.parametrize("place", ["class.partial", "class unrecorded", "val.partial", "class redone", "a link"])
def test_a_rerun_never_deletes_a_file_prepare_did_not_write(tmp_path: Path, official, place: str) -> None:
    out = tmp_path / "out"
    assert run_official(out, official)[0] == 0
    train = out / "train"
    if place == "class.partial":  # the case: killed mid-class, a user's file dropped in its .partial
        unrecord(out, "train-n02099601")
        (train / "n02099601").rename(train / "n02099601.partial")
        mine = train / "n02099601.partial" / "notes.txt"
    elif place == "class unrecorded":  # renamed into place, killed before its done record
        unrecord(out, "train-n02099601")
        mine = train / "n02099601" / "notes.txt"
    elif place == "val.partial":
        unrecord(out, "val-tar")
        (out / "val").rename(out / "val.partial")
        mine = out / "val.partial" / VAL_WNIDS[0] / "notes.txt"
    elif place == "class redone":  # finished, then an image lost: the class is redone around the user's file
        (train / "n02099601" / "n02099601_1.JPEG").unlink()
        mine = train / "n02099601" / "notes.txt"
    else:
        unrecord(out, "train-n02099601")
        mine = train / "n02099601" / "elsewhere.JPEG"
        mine.symlink_to(tmp_path / "download")
    if not mine.is_symlink():
        mine.write_text("mine")
    before = tree_state(out / "train") | tree_state(out / "val" if (out / "val").exists() else out / "val.partial")
    code, _, stderr = run_official(out, official)
    error_line(code, stderr, 5, f"{mine} was not written by prepare")
    assert "rerun the same command" in stderr
    assert (mine.is_symlink() or mine.read_text() == "mine")
    assert before == tree_state(out / "train") | tree_state(out / "val" if (out / "val").exists() else out / "val.partial")
    mine.unlink()  # moved out, as the line says: the rerun completes
    code, stdout, stderr = run_official(out, official)
    assert code == 0, stderr
    assert_val_labels_follow_devkit(out)
    assert not list((out / ".repro-prepare" / "writing").glob("*"))


@pytest.mark.parametrize("where", ["in a class", "the root", "in val", "through a link", "holds the source"])
def test_out_and_the_source_may_not_hold_each_other(tmp_path: Path, official, where: str) -> None:
    root = extract_official(tmp_path, official, val_by_class=True)
    out = {"in a class": root / "train" / "n01440764" / "out", "the root": root, "in val": root / "val" / "new",
           "through a link": tmp_path / "link" / "out", "holds the source": tmp_path}[where]
    (tmp_path / "link").symlink_to(root / "train" / "n02099601")
    before = tree_state(root)
    code, _, stderr = run(out, "--from", root, "--jobs", "1")
    words = "lies inside" if where == "holds the source" else "lies inside the source"
    error_line(code, stderr, 2, words)
    assert tree_state(root) == before and (where in ("holds the source", "the root") or not out.exists())
    # the archives too: OUT may not hold them
    train, val, devkit = official
    code, _, stderr = run(tmp_path, "--train-tar", train, "--val-tar", val, "--devkit", devkit)
    error_line(code, stderr, 2, f"the source {train.parent}")


def test_not_enough_free_space_is_refused_before_writing(tmp_path: Path, official, monkeypatch) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(prepare_module.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    out = tmp_path / "out"
    code, _, stderr = run_official(out, official)
    error_line(code, stderr, 4, "GB free")
    assert not (out / "train").exists()


def test_disk_filling_up_while_writing(tmp_path: Path, official, monkeypatch) -> None:
    calls = []

    def full(path: str, data: bytes) -> int:
        calls.append(path)
        if len(calls) > 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        with open(path, "xb") as handle:
            return handle.write(data)

    monkeypatch.setattr(prepare_module, "_write_new", full)
    out = tmp_path / "out"
    code, _, stderr = run_official(out, official)
    error_line(code, stderr, 8, "the disk filled up while writing")
    assert not (out / "train_list.txt").exists()
    monkeypatch.undo()
    code, stdout, _ = run_official(out, official)
    assert code == 0, stdout
    assert_val_labels_follow_devkit(out)


# --- the label order upstream uses ----------------------------------------------------------------

# Well-known ILSVRC2012 classes: (label in sorted-WNID order, WNID, first name in the devkit's words).
KNOWN = [(0, "n01440764", "tench"), (1, "n01443537", "goldfish"), (207, "n02099601", "golden retriever"),
         (281, "n02123045", "tabby"), (409, "n02708093", "analog clock"), (999, "n15075141", "toilet tissue")]


def test_upstream_label_list_is_in_sorted_wnid_order() -> None:
    """Upstream's imagenet1k_label_list.txt holds names, not WNIDs: 1000 lines 'index words'.

    Without the full devkit the sorted-WNID order can only be checked at known points: the labels
    of six well-known classes (first, last and between) in sorted-WNID order must carry their names.
    In ILSVRC2012_ID order, label 0 would be n02119789 'kit fox', so this tells the two orders apart.
    """
    upstream = os.environ.get("REPRO_TEST_UPSTREAM")
    if not upstream:
        pytest.skip("needs a real upstream checkout: set REPRO_TEST_UPSTREAM=/path/to/PaddleClas")
    lines = (Path(upstream) / "ppcls" / "utils" / "imagenet1k_label_list.txt").read_text().splitlines()
    assert len(lines) == 1000
    names = {}
    for index, line in enumerate(lines):
        number, words = line.split(" ", 1)
        assert int(number) == index
        names[index] = words
    for label, wnid, word in KNOWN:
        assert names[label].split(",")[0] == word, (label, wnid, names[label])


# --- the fast class-tar reader against tarfile ----------------------------------------------------

def random_archive(rng) -> bytes:
    """A small tar in a random format with random members: mostly plain images, sometimes not."""
    buffer = io.BytesIO()
    fmt = rng.choice([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for index in range(rng.randint(0, 8)):
            roll = rng.random()
            name = f"n01440764_{index}.JPEG"
            if roll < 0.05:
                name = "x" * rng.randint(90, 160) + ".JPEG"  # long: GNU long name or pax header
                if fmt == tarfile.USTAR_FORMAT:
                    name = "d" * 60 + "/" + name[:90]  # ustar: the name prefix field
            elif roll < 0.1:
                name = f"sub/{name}"
            elif roll < 0.13:
                name = f"./{name}"
            elif roll < 0.16:
                name = f"é{name}"
            info = tarfile.TarInfo(name)
            if rng.random() < 0.05:
                info.type = rng.choice([tarfile.DIRTYPE, tarfile.SYMTYPE])
                info.linkname = "target"
                tar.addfile(info)
                continue
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 1500)))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    roll = rng.random()
    if roll < 0.1 and raw:
        raw = raw[: rng.randrange(len(raw))]  # truncated
    elif roll < 0.2 and raw:
        at = rng.randrange(len(raw))
        raw = raw[:at] + bytes([raw[at] ^ 0x41]) + raw[at + 1:]  # one damaged byte
    return raw


def test_fast_class_tar_reader_declines_or_agrees_with_tarfile(tmp_path: Path) -> None:
    rng = random.Random(7)
    agreed = declined = 0
    for _ in range(600):
        raw = random_archive(rng)
        try:
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r|") as tar:
                reference: list | str = list(_stream_members(tar, "t", str(tmp_path)))
        except (ReproError, tarfile.ReadError) as error:
            reference = f"refused: {error}"
        try:
            fast = list(plain_members(io.BytesIO(raw).read))
        except NotPlain:
            declined += 1
            continue
        agreed += 1
        assert fast == reference
    assert agreed > 100 and declined > 100, (agreed, declined)
