"""Archives (.tar.gz, .zip) for machines without git: extraction, unknown commit, patching, re-fetch."""

from __future__ import annotations

import os
import tarfile

import pytest

from repro.errors import EXIT_CONFLICT, ReproError
from repro.upstream.fetch import FetchRequest, fetch_upstream
from repro.upstream.record import UNKNOWN
from repro.upstream.state import inspect_checkout
from tests.upstream_fixtures import CLASSIFICATION, PATCHED_LINE, git, make_archive, make_fake_upstream, write_harness_root


@pytest.fixture
def fake(tmp_path, monkeypatch):
    upstream = make_fake_upstream(tmp_path)
    git("checkout", "-q", upstream.first, cwd=upstream.path)
    root = write_harness_root(tmp_path / "harness", upstream.url, upstream.first)
    monkeypatch.setenv("REPRO_ROOT", str(root))
    # The destination sits inside a git repository, as .upstream/ sits inside the harness repo.
    git("init", "-q", str(tmp_path / "project"))
    return upstream


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_archive_is_extracted_stripped_patched_and_its_unknown_commit_is_loud(fake, tmp_path, suffix):
    archive = make_archive(fake.path, tmp_path / f"PaddleClas-release-2.6{suffix}")
    dest = tmp_path / "project" / ".upstream" / "PaddleClas"
    lines: list[str] = []
    state = fetch_upstream(FetchRequest(dest=dest, archive=archive), say=lines.append)
    assert (dest / "tools" / "train.py").is_file() and not (dest / "PaddleClas-release-2.6").exists()
    assert not (dest / "docs").exists(), "only the sparse paths are extracted"
    assert PATCHED_LINE in (dest / CLASSIFICATION).read_text()
    assert state.commit == UNKNOWN and not state.matches_pin and state.problems() == []
    assert any("COMMIT IS UNKNOWN" in line for line in lines)
    assert any("UNKNOWN" in warning for warning in state.warnings())
    assert state.summary_line().endswith("(commit unknown, 1/1 patches applied)")


def test_archive_with_commit_matches_pin_and_refetch_is_a_no_op(fake, tmp_path):
    archive = make_archive(fake.path, tmp_path / "pc.tar.gz")
    dest = tmp_path / "PaddleClas"
    state = fetch_upstream(FetchRequest(dest=dest, archive=archive, commit=fake.first), say=lambda _: None)
    assert state.matches_pin and state.warnings() == []
    before = (dest / CLASSIFICATION).stat().st_mtime_ns
    again = fetch_upstream(FetchRequest(dest=dest, archive=archive, commit=fake.first), say=lambda _: None)
    assert again.problems() == [] and (dest / CLASSIFICATION).stat().st_mtime_ns == before


def test_git_archive_embedded_commit_is_used(fake, tmp_path):
    archive = tmp_path / "pc.tar.gz"
    git("archive", "--format=tar.gz", "--prefix=PaddleClas-x/", "-o", str(archive), fake.first, cwd=fake.path)
    with tarfile.open(archive) as tar:
        assert tar.pax_headers.get("comment") == fake.first
    state = fetch_upstream(FetchRequest(dest=tmp_path / "PaddleClas", archive=archive), say=lambda _: None)
    assert state.commit == fake.first and state.matches_pin


def test_edits_in_an_extracted_tree_are_local_changes(fake, tmp_path):
    archive = make_archive(fake.path, tmp_path / "pc.zip")
    dest = tmp_path / "PaddleClas"
    fetch_upstream(FetchRequest(dest=dest, archive=archive), say=lambda _: None)
    (dest / "tools" / "train.py").write_text("# edited\n")
    (dest / "ppcls" / "new.py").write_text("x = 1\n")
    (dest / "output").mkdir()
    (dest / "output" / "latest.pdparams").write_bytes(b"x")
    state = inspect_checkout(dest)
    assert state.patches[0].applied
    assert state.local_changes == ["ppcls/new.py", "tools/train.py"]
    with pytest.raises(ReproError) as caught:
        fetch_upstream(FetchRequest(dest=dest, archive=archive), say=lambda _: None)
    assert "tools/train.py" in caught.value.message


def test_another_archive_over_an_extracted_tree_is_refused(fake, tmp_path):
    first = make_archive(fake.path, tmp_path / "a.tar.gz")
    second = make_archive(fake.path, tmp_path / "b.zip")
    dest = tmp_path / "PaddleClas"
    fetch_upstream(FetchRequest(dest=dest, archive=first), say=lambda _: None)
    with pytest.raises(ReproError) as caught:
        fetch_upstream(FetchRequest(dest=dest, archive=second), say=lambda _: None)
    assert caught.value.exit_code == EXIT_CONFLICT
    assert (dest / "tools" / "train.py").is_file()


@pytest.mark.parametrize("name", ["pc.tar.gz", "pc.zip"])
def test_a_file_that_is_not_an_archive_is_one_line_and_leaves_nothing(fake, tmp_path, name):
    from click.testing import CliRunner

    from repro.cli import cli
    from repro.errors import EXIT_BAD_INPUT

    not_archive = tmp_path / name
    not_archive.write_text("<html>404 Not Found</html>\n")
    dest = tmp_path / "PaddleClas"
    result = CliRunner(mix_stderr=False).invoke(cli, ["upstream", "fetch", "--dest", str(dest), "--archive", str(not_archive)])
    assert result.exit_code == EXIT_BAD_INPUT, result.stderr
    assert result.stderr.startswith("error: ") and str(not_archive) in result.stderr and "download it again" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not dest.exists() and [p.name for p in tmp_path.iterdir() if "fetching" in p.name] == []


def test_an_archive_path_that_is_not_a_regular_file_says_so(fake, tmp_path):
    fifo = tmp_path / "pc.tar.gz"
    os.mkfifo(fifo)
    with pytest.raises(ReproError) as caught:
        fetch_upstream(FetchRequest(dest=tmp_path / "PaddleClas", archive=fifo), say=lambda _: None)
    assert "is not a regular file" in caught.value.message
