"""Archives (.tar.gz, .zip) for machines without git: extraction, unknown commit, patching, re-fetch."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile

import pytest

from click.testing import CliRunner

from repro.cli import cli
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, ReproError
from repro.core.files import file_sha256
from repro.upstream.archive import extract_archive
from repro.upstream.fetch import FetchRequest, fetch_upstream
from repro.upstream.pin import load_pin
from repro.upstream.fetch_record import UNKNOWN
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


def test_archive_with_a_claimed_commit_is_recorded_as_claimed_not_verified(fake, tmp_path):
    """--commit on an archive without an embedded id is a claim: recorded, warned, never 'matches pin: yes'."""
    archive = make_archive(fake.path, tmp_path / "pc.tar.gz")
    dest = tmp_path / "PaddleClas"
    lines: list[str] = []
    state = fetch_upstream(FetchRequest(dest=dest, archive=archive, commit=fake.first), say=lines.append)
    assert not state.matches_pin and state.commit_claimed and state.problems() == []
    assert any("claimed, not verified" in w for w in state.warnings())
    assert any("claimed, not verified" in line for line in lines)
    record = state.to_manifest()
    assert record["source"] == "archive" and record["archive"] == "pc.tar.gz"
    assert record["archive_sha256"] == file_sha256(archive) and record["url"] is None
    assert record["commit_verified_by"] is None and "claimed, not verified" in record["commit_is"]
    status = CliRunner(mix_stderr=False).invoke(cli, ["upstream", "status", "--upstream", str(dest)])
    assert "matches pin:      commit claimed, not verified" in status.stdout
    assert f"archive pc.tar.gz (sha256 {file_sha256(archive)})" in status.stdout
    assert "github" not in status.stdout.lower()
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
    assert state.commit_verified_by == "the archive's embedded commit id" and state.warnings() == []


def test_the_pins_known_archive_sha256_verifies_an_archive_without_embedded_id(fake, tmp_path):
    archive = make_archive(fake.path, tmp_path / "pc.zip")
    pin = tmp_path / "harness" / "patches" / "UPSTREAM.yaml"
    pin.write_text(pin.read_text() + f"archive_sha256: {file_sha256(archive)}\n")
    state = fetch_upstream(FetchRequest(dest=tmp_path / "PaddleClas", archive=archive), say=lambda _: None)
    assert state.commit == fake.first and state.matches_pin and state.warnings() == []
    assert state.commit_verified_by == "sha256 of the pin's known archive"


def test_a_bad_archive_sha256_in_the_pin_is_one_line(fake, tmp_path):
    pin = tmp_path / "harness" / "patches" / "UPSTREAM.yaml"
    pin.write_text(pin.read_text() + "archive_sha256: abc\n")
    with pytest.raises(ReproError) as caught:
        load_pin()
    assert "archive_sha256 must be 64 hex" in caught.value.message


def _tar_with(path, name: str, *, symlink_to: str | None = None, hardlink_to: str | None = None):
    with tarfile.open(path, "w:gz") as tar:
        good = tarfile.TarInfo("PaddleClas-x/tools/train.py")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"#\n"))
        info = tarfile.TarInfo(name)
        if symlink_to is not None:
            info.type, info.linkname = tarfile.SYMTYPE, symlink_to
            tar.addfile(info)
        elif hardlink_to is not None:
            info.type, info.linkname = tarfile.LNKTYPE, hardlink_to
            tar.addfile(info)
        else:
            info.size = 2
            tar.addfile(info, io.BytesIO(b"x\n"))
    return path


def _zip_with(path, name: str, *, symlink_to: str | None = None):
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("PaddleClas-x/tools/train.py", "#\n")
        info = zipfile.ZipInfo(name)
        if symlink_to is not None:
            info.external_attr = (0o120777 << 16)
            bundle.writestr(info, symlink_to)
        else:
            bundle.writestr(info, "x\n")
    return path


@pytest.mark.parametrize("kind,name,link", [
    ("tar", "PaddleClas-x/../x", None), ("tar", "/etc/x", None), ("tar", "PaddleClas-x/ppcls/up", "../../x"),
    ("tar", "PaddleClas-x/ppcls/abs", "/etc/passwd"), ("tar-hard", "PaddleClas-x/ppcls/h", "../x"),
    ("zip", "PaddleClas-x/../x", None), ("zip", "/etc/x", None), ("zip", "PaddleClas-x/ppcls/up", "../../x"),
    ("zip", "PaddleClas-x/ppcls/abs", "/etc/passwd"),
])
def test_entries_escaping_the_tree_are_refused_with_one_line(fake, tmp_path, kind, name, link):
    archive = tmp_path / ("evil.zip" if kind == "zip" else "evil.tar.gz")
    if kind == "zip":
        _zip_with(archive, name, symlink_to=link)
    elif kind == "tar-hard":
        _tar_with(archive, name, hardlink_to=link)
    else:
        _tar_with(archive, name, symlink_to=link)
    dest = tmp_path / "out" / "PaddleClas"
    result = CliRunner(mix_stderr=False).invoke(cli, ["upstream", "fetch", "--dest", str(dest), "--archive", str(archive)])
    assert result.exit_code == EXIT_BAD_INPUT, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "unsafe entry" in result.stderr
    assert not dest.exists() and not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


def test_a_link_inside_the_tree_is_kept(fake, tmp_path):
    archive = _zip_with(tmp_path / "ok.zip", "PaddleClas-x/ppcls/alias", symlink_to="../tools/train.py")

    extract_archive(archive, tmp_path / "t", ("/ppcls/", "/tools/"))
    assert os.readlink(tmp_path / "t" / "ppcls" / "alias") == "../tools/train.py"


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
