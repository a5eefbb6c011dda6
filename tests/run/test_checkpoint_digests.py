"""The digests of the checkpoints training wrote (``repro.run.checkpoints.Digests``): taken in the
background, entered only for the very file recorded, and compared by one function everywhere."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from repro.core.files import file_sha256
from repro.run.checkpoints import (
    DIFFERS,
    MATCHES,
    UNRECORDED,
    Digests,
    changed_files,
    digest_status,
    observe_written,
)


def save(output: Path, name: str, data: bytes) -> None:
    (output / name).write_bytes(data)


def test_file_sha256_is_hashlib_over_the_whole_file(tmp_path: Path) -> None:
    for size in (0, 1, (1 << 20) - 1, (1 << 20) + 7):
        path = tmp_path / f"f{size}"
        path.write_bytes(os.urandom(size))
        assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
        assert file_sha256(path, block=4096) == file_sha256(path)


def test_digests_follow_every_save_and_rewrite_of_a_recorded_file(tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.mkdir()
    written: dict[str, dict] = {}
    start = time.time()
    digests = Digests()
    for name in ("latest.pdparams", "latest.pdopt", "latest.pdstates", "epoch_1.pdparams"):
        save(output, name, name.encode() * 1000)
    assert observe_written(output, 0, start, {}, written)
    digests.update(output, written)  # queued
    assert digests.finish(output, written, timeout=30)
    for name, record in written.items():
        assert record["sha256"] == hashlib.sha256((output / name).read_bytes()).hexdigest()
        assert digest_status(output / name, written) == MATCHES
    # upstream rewrites latest in place next epoch: a new record, digested again
    time.sleep(0.01)
    save(output, "latest.pdparams", b"epoch 2 weights")
    assert observe_written(output, 0, start, {}, written)
    assert "sha256" not in written["latest.pdparams"]
    digests = Digests()
    digests.update(output, written)
    digests.finish(output, written, timeout=30)
    assert written["latest.pdparams"]["sha256"] == hashlib.sha256(b"epoch 2 weights").hexdigest()


def test_a_digest_is_never_entered_for_another_file_than_the_recorded_one(tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.mkdir()
    save(output, "epoch_3.pdparams", b"a" * 100)
    info = (output / "epoch_3.pdparams").stat()
    # the record describes an older version (another mtime): what is read now is not it
    written = {"epoch_3.pdparams": {"segment": 0, "mtime_ns": info.st_mtime_ns - 5_000_000_000, "size": info.st_size},
               "gone.pdparams": {"segment": 0, "mtime_ns": 1, "size": 1}}
    digests = Digests()
    digests.update(output, written)
    assert digests.finish(output, written, timeout=30) is False
    assert "sha256" not in written["epoch_3.pdparams"] and "sha256" not in written["gone.pdparams"]


def test_changed_files_names_every_kind_of_replacement(tmp_path: Path) -> None:
    output = tmp_path
    names = ("true_best.pdparams", "true_best.pdstates", "epoch_2.pdparams", "latest.pdopt", "best_model.pdparams")
    written = {}
    for name in names:
        save(output, name, name.encode() * 50)
        written[name] = {"sha256": file_sha256(output / name)}
    save(output, "copied_in.pdparams", b"x")
    paths = [output / name for name in (*names, "copied_in.pdparams")]
    assert changed_files(paths, written) == []
    assert digest_status(output / "copied_in.pdparams", written) == UNRECORDED
    # replaced by another save (same size), truncated, one byte flipped, a link to another file
    save(output, "true_best.pdparams", (output / "epoch_2.pdparams").read_bytes()[: (output / "true_best.pdparams").stat().st_size])
    save(output, "true_best.pdstates", b"")
    data = bytearray((output / "epoch_2.pdparams").read_bytes())
    data[7] ^= 1
    save(output, "epoch_2.pdparams", bytes(data))
    (output / "latest.pdopt").unlink()
    (output / "latest.pdopt").symlink_to(output / "best_model.pdparams")
    assert changed_files(paths, written) == [output / name for name in names[:4]]
    assert digest_status(output / "best_model.pdparams", written) == MATCHES
    assert digest_status(output / "epoch_2.pdparams", written) == DIFFERS
