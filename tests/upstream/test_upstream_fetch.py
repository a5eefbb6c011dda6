"""Fetching into throw-away repos: clone, pin, sparse contents, idempotence, refusals, in-place use."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import repro.upstream.fetch as fetch_module
from repro.cli import cli
from repro.core.errors import EXIT_CONFLICT, EXIT_UPSTREAM, ReproError
from repro.upstream.fetch import FetchRequest, fetch_upstream
from repro.upstream.pin import load_pin
from repro.upstream.state import inspect_checkout
from tests.upstream_fixtures import CLASSIFICATION, PATCHED_LINE, git, make_bare_mirror, make_fake_upstream, write_harness_root


@pytest.fixture
def fake(tmp_path, monkeypatch):
    upstream = make_fake_upstream(tmp_path)
    root = write_harness_root(tmp_path / "harness", upstream.url, upstream.first)
    monkeypatch.setenv("REPRO_ROOT", str(root))
    return upstream


def fetch(dest: Path, lines: list[str] | None = None, **kwargs):
    say = (lines.append if lines is not None else (lambda _line: None))
    return fetch_upstream(FetchRequest(dest=dest, **kwargs), say=say)


def test_clone_from_local_path_checks_out_the_pinned_commit_sparse_and_patched(fake, tmp_path):
    dest = tmp_path / "work" / "PaddleClas"
    state = fetch(dest)
    # The pin names the first commit although the branch tip is the second one.
    assert git("rev-parse", "HEAD", cwd=dest) == fake.first != fake.second
    assert state.matches_pin and state.commit == fake.first and state.problems() == []
    assert (dest / "tools" / "train.py").is_file() and (dest / "setup.py").is_file()
    assert not (dest / "docs").exists(), "sparse checkout must leave docs on the server"
    assert PATCHED_LINE in (dest / CLASSIFICATION).read_text()
    assert [p.applied for p in state.patches] == [True]
    assert not list(tmp_path.joinpath("work").glob(".*fetching*")), "staging dir left behind"


def test_refetch_changes_nothing(fake, tmp_path):
    dest = tmp_path / "PaddleClas"
    fetch(dest)
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if ".git" not in p.parts}
    lines: list[str] = []
    state = fetch(dest, lines)
    after = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if ".git" not in p.parts}
    assert before == after
    assert any("already applied" in line for line in lines)
    assert state.problems() == []


def test_unknown_pinned_commit_is_refused_and_leaves_nothing(fake, tmp_path):
    pin_file = tmp_path / "harness" / "patches" / "UPSTREAM.yaml"
    pin_file.write_text(pin_file.read_text().replace(fake.first, "1" * 40, 1))
    dest = tmp_path / "PaddleClas"
    with pytest.raises(ReproError) as caught:
        fetch(dest)
    assert caught.value.exit_code == EXIT_UPSTREAM
    assert "11111111" in caught.value.message
    assert not dest.exists() and not list(tmp_path.glob(".PaddleClas.fetching*"))


def test_dirty_checkout_is_refused_with_the_files_and_left_alone(fake, tmp_path):
    dest = tmp_path / "PaddleClas"
    fetch(dest)
    (dest / "tools" / "train.py").write_text("# someone's edit\n")
    (dest / "ppcls" / "mine.py").write_text("x = 1\n")
    with pytest.raises(ReproError) as caught:
        fetch(dest)
    assert caught.value.exit_code == EXIT_UPSTREAM
    assert "tools/train.py" in caught.value.message and "ppcls/mine.py" in caught.value.message
    assert (dest / "tools" / "train.py").read_text() == "# someone's edit\n"


def test_dataset_link_and_output_are_not_local_changes(fake, tmp_path):
    dest = tmp_path / "PaddleClas"
    fetch(dest)
    data = tmp_path / "ILSVRC2012"
    data.mkdir()
    (dest / "dataset" / "ILSVRC2012").symlink_to(data)
    (dest / "output" / "ResNeSt50").mkdir(parents=True)
    (dest / "output" / "ResNeSt50" / "latest.pdparams").write_bytes(b"x")
    (dest / "ppcls" / "__pycache__").mkdir()
    (dest / "ppcls" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"x")
    state = inspect_checkout(dest)
    assert state.local_changes == [] and state.problems() == []
    assert fetch(dest).problems() == []


def test_edit_beside_our_patch_in_the_patched_file_is_a_local_change(fake, tmp_path):
    dest = tmp_path / "PaddleClas"
    fetch(dest)
    with (dest / CLASSIFICATION).open("a") as handle:
        handle.write("    extra = 1\n")
    state = inspect_checkout(dest)
    assert state.patches[0].applied
    assert state.local_changes == [CLASSIFICATION]
    assert any("local change" in problem for problem in state.problems())


def test_checkout_made_by_the_harness_moves_to_a_new_pin(fake, tmp_path):
    dest = tmp_path / "PaddleClas"
    fetch(dest)
    pin_file = tmp_path / "harness" / "patches" / "UPSTREAM.yaml"
    pin_file.write_text(pin_file.read_text().replace(f"commit: {fake.first}", f"commit: {fake.second}"))
    state = fetch(dest)
    assert git("rev-parse", "HEAD", cwd=dest) == fake.second
    assert state.matches_pin and state.patches[0].applied
    assert any("not " in w and "verified against" in w for w in state.warnings())


def test_existing_checkout_given_with_upstream_is_used_in_place(fake, tmp_path):
    mine = tmp_path / "my-PaddleClas"
    git("clone", "-q", fake.url, str(mine))
    git("checkout", "-q", fake.first, cwd=mine)
    marker = mine / "docs" / "big.md"
    assert marker.is_file()
    state = fetch(mine, in_place=True)
    assert state.matches_pin and state.patches[0].applied
    assert marker.is_file(), "a full checkout used in place must not be re-cloned sparse"


def test_checkout_in_place_at_another_commit_is_not_moved(fake, tmp_path):
    mine = tmp_path / "my-PaddleClas"
    git("clone", "-q", fake.url, str(mine))  # at the tip, not the pinned first commit
    with pytest.raises(ReproError) as caught:
        fetch(mine, in_place=True)
    assert caught.value.exit_code == EXIT_UPSTREAM
    assert fake.first[:8] in caught.value.message
    assert git("rev-parse", "HEAD", cwd=mine) == fake.second


def test_dest_that_is_not_a_checkout_is_refused_and_kept(fake, tmp_path):
    dest = tmp_path / "PaddleClas"
    dest.mkdir()
    (dest / "precious.txt").write_text("keep me")
    with pytest.raises(ReproError) as caught:
        fetch(dest)
    assert caught.value.exit_code == EXIT_CONFLICT
    assert (dest / "precious.txt").read_text() == "keep me"


def test_empty_dest_dir_is_filled(fake, tmp_path):
    dest = tmp_path / "PaddleClas"
    dest.mkdir()
    assert fetch(dest).matches_pin


def test_no_pinned_commit_fetches_the_ref_tip_and_warns(fake, tmp_path):
    pin_file = tmp_path / "harness" / "patches" / "UPSTREAM.yaml"
    pin_file.write_text(pin_file.read_text().replace(f"commit: {fake.first}", "commit:"))
    assert load_pin().commit is None
    lines: list[str] = []
    with pytest.raises(ReproError) as caught:  # fetched, but not ready to train until locked
        fetch(tmp_path / "PaddleClas", lines)
    assert "repro upstream lock" in caught.value.message
    assert git("rev-parse", "HEAD", cwd=tmp_path / "PaddleClas") == fake.second
    assert any(line.startswith("WARNING: no commit pinned") for line in lines)


def test_server_that_only_serves_branch_tips_gets_a_clear_error(fake, tmp_path, monkeypatch):
    # Protocol v0 without allowReachableSHA1InWant (like some mirrors) refuses an unadvertised
    # commit; the fallback fetches the ref and must notice that its tip is not the pinned commit.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "protocol.version")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "0")
    with pytest.raises(ReproError) as caught:
        fetch(tmp_path / "PaddleClas")
    assert caught.value.exit_code == EXIT_UPSTREAM
    assert f"does not serve the pinned commit {fake.first[:8]}" in caught.value.message
    assert f"is now at {fake.second[:8]}" in caught.value.message
    assert not (tmp_path / "PaddleClas").exists()


@pytest.mark.parametrize("appeared", ["directory", "file"])
def test_dest_that_appears_during_the_fetch_is_kept_and_so_is_the_fetched_tree(fake, tmp_path, monkeypatch, appeared):
    dest = tmp_path / "PaddleClas"
    dest.mkdir()  # empty: accepted, to be filled
    real_write_record = fetch_module.write_record

    def user_writes_meanwhile(where, record):
        real_write_record(where, record)
        if appeared == "directory":
            (dest / "precious.txt").write_text("keep me")
        else:
            dest.rmdir()
            dest.write_text("keep me")

    monkeypatch.setattr(fetch_module, "write_record", user_writes_meanwhile)
    with pytest.raises(ReproError) as caught:
        fetch(dest)
    message = caught.value.message
    assert caught.value.exit_code == EXIT_CONFLICT and "changed during the fetch" in message
    assert (dest / "precious.txt" if appeared == "directory" else dest).read_text() == "keep me"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".PaddleClas.fetching-")]
    assert len(kept) == 1 and str(kept[0]) in message and (kept[0] / "tools" / "train.py").is_file()


# --- newcomer path without GitHub: mirrors, messages, cleanup -------------------------------------------


def _pin_url(tmp_path: Path, url: str) -> None:
    pin_file = tmp_path / "harness" / "patches" / "UPSTREAM.yaml"
    text = pin_file.read_text()
    old = next(line for line in text.splitlines() if line.startswith("url:"))
    pin_file.write_text(text.replace(old, f"url: {url}"))


def test_a_mirror_without_the_branch_reports_the_commit_it_fetched(fake, tmp_path):
    mirror = make_bare_mirror(fake.path, tmp_path / "develop-only.git", branch=None)
    lines: list[str] = []
    state = fetch(tmp_path / "PaddleClas", lines, url=str(mirror))
    assert state.matches_pin and state.commit == fake.first
    fetched = [line for line in lines if line.startswith("fetched")]
    assert fetched and f"commit {fake.first[:8]} (the pin)" in fetched[0] and "release/2.6" not in fetched[0]
    assert state.ref is None, "the commit was not fetched as release/2.6's tip"


def test_a_mirror_without_partial_clone_support_still_works_and_says_so(fake, tmp_path):
    mirror = make_bare_mirror(fake.path, tmp_path / "nofilter.git", allow_filter=False)
    lines: list[str] = []
    state = fetch(tmp_path / "PaddleClas", lines, url=str(mirror))
    assert state.matches_pin
    assert any("does not support partial clone" in line for line in lines)


def test_a_mirror_refusing_the_blob_filter_falls_back_to_a_plain_shallow_fetch(fake, tmp_path):
    mirror = make_bare_mirror(fake.path, tmp_path / "refuses.git", refuse_blob_filter=True)
    lines: list[str] = []
    state = fetch(tmp_path / "PaddleClas", lines, url=str(mirror))
    assert state.matches_pin and state.problems() == []
    assert any("refused the blob filter" in line and "without it" in line for line in lines)
    assert not (tmp_path / "PaddleClas" / "docs").exists()


def test_a_mirror_lacking_commit_and_branch_names_both_causes_and_leaves_no_upstream_dir(fake, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    git("init", "-q", "-b", "develop", str(other))
    (other / "x").write_text("x\n")
    git("add", "-A", cwd=other)
    git("commit", "-q", "-m", "x", cwd=other)
    mirror = make_bare_mirror(other, tmp_path / "other.git", branch=None)
    dest = tmp_path / "project" / ".upstream" / "PaddleClas"
    (tmp_path / "project").mkdir()
    with pytest.raises(ReproError) as caught:
        fetch(dest, url=str(mirror))
    message = caught.value.message
    assert caught.value.exit_code == EXIT_UPSTREAM
    assert f"the pinned commit {fake.first[:8]}" in message and "has no branch or tag release/2.6" in message
    assert "REPRO_UPSTREAM_DIR" in message
    assert not (tmp_path / "project" / ".upstream").exists(), "a failed fetch leaves no empty .upstream/"
    assert (tmp_path / "project").is_dir(), "what existed before is kept"


def test_an_unreachable_server_is_one_line_naming_every_way_out(fake, tmp_path, monkeypatch):
    _pin_url(tmp_path, "http://127.0.0.1:9/PaddleClas.git")
    monkeypatch.chdir(tmp_path)


    result = CliRunner(mix_stderr=False).invoke(cli, ["upstream", "fetch"])
    assert result.exit_code == EXIT_UPSTREAM and result.stderr.count("\n") == 1, result.stderr
    for way in ("--url", "--archive FILE", "REPRO_UPSTREAM_DIR="):
        assert way in result.stderr
    assert not (tmp_path / ".upstream").exists()


def test_a_failed_fetch_keeps_an_existing_upstream_parent(fake, tmp_path):
    parent = tmp_path / ".upstream"
    parent.mkdir()
    (parent / "notes.txt").write_text("mine\n")
    _pin_url(tmp_path, "http://127.0.0.1:9/PaddleClas.git")
    with pytest.raises(ReproError):
        fetch(parent / "PaddleClas")
    assert (parent / "notes.txt").read_text() == "mine\n" and sorted(p.name for p in parent.iterdir()) == ["notes.txt"]
