"""The bounded reader: every file read whole is a regular file of sane size, or one line."""

import os
from pathlib import Path

import pytest

from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.core.files import read_bounded_text


def test_reads_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"a": 1}\n')
    assert read_bounded_text(path) == '{"a": 1}\n'


@pytest.mark.parametrize("kind", ["dev-zero-link", "fifo", "directory", "char-device", "too-big", "not-utf8"])
def test_refuses_what_is_not_a_small_text_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "manifest.json"
    if kind == "dev-zero-link":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)  # a blocking open would hang here
    elif kind == "directory":
        path.mkdir()
    elif kind == "char-device":
        path.symlink_to("/dev/null")
    elif kind == "too-big":
        path.write_bytes(b"x" * 2048)
    else:
        path.write_bytes(b"\xff\xfe binary")
    with pytest.raises(ReproError) as error:
        read_bounded_text(path, limit=1024)
    assert error.value.exit_code == EXIT_BAD_INPUT
    assert str(path) in error.value.message and "\n" not in error.value.message


def test_a_missing_file_is_the_callers_to_explain(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bounded_text(tmp_path / "absent")
