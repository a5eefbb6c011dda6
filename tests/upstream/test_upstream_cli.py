"""``repro upstream status/fetch/lock/apply-patches`` through the real CLI: output and exit codes."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

import repro.upstream.upstream_cli as upstream_cli
from repro.cli import cli
from repro.core.errors import EXIT_OK, EXIT_UPSTREAM
from pathlib import Path

from repro.core.files import file_sha256
from repro.upstream.fetch import FetchRequest, fetch_upstream
from repro.upstream.pin import load_pin
from tests.upstream_fixtures import CLASSIFICATION, PATCH_0001, PATCHED_LINE, REAL_PATCHES, git, make_fake_upstream, write_harness_root

MIRROR_ENV = "REPRO_TEST_UPSTREAM_MIRROR"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    upstream = make_fake_upstream(tmp_path)
    root = write_harness_root(tmp_path / "harness", upstream.url, upstream.first)
    monkeypatch.setenv("REPRO_ROOT", str(root))
    monkeypatch.delenv("REPRO_UPSTREAM_DIR", raising=False)
    return upstream


def repro(*args: str):
    result = CliRunner(mix_stderr=False).invoke(cli, list(args))
    assert "Traceback" not in result.output + result.stderr, result.stderr
    return result


def test_status_exit_codes_missing_good_dirty_unpatched(fake, tmp_path):
    dest = tmp_path / "PaddleClas"
    missing = repro("upstream", "status", "--upstream", str(dest))
    assert missing.exit_code == EXIT_UPSTREAM and "present:          no" in missing.output

    fetched = repro("upstream", "fetch", "--dest", str(dest))
    assert fetched.exit_code == EXIT_OK, fetched.stderr
    assert f"at {fake.first[:8]} (pinned, 1/1 patches applied)" in fetched.output

    good = repro("upstream", "status", "--upstream", str(dest))
    assert good.exit_code == EXIT_OK, good.stderr
    assert f"checked out:      {fake.first}" in good.output and "matches pin:      yes" in good.output

    (dest / "tools" / "train.py").write_text("# edit\n")
    dirty = repro("upstream", "status", "--upstream", str(dest))
    assert dirty.exit_code == EXIT_UPSTREAM and "tools/train.py" in dirty.output
    refused = repro("upstream", "fetch", "--upstream", str(dest))
    assert refused.exit_code == EXIT_UPSTREAM and refused.stderr.startswith("error: ") and "tools/train.py" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    git("checkout", "-q", "--", ".", cwd=dest)  # also takes our patch back out
    unpatched = repro("upstream", "status", "--upstream", str(dest))
    assert unpatched.exit_code == EXIT_UPSTREAM and "not applied" in unpatched.output
    assert "apply-patches" in unpatched.stderr

    applied = repro("upstream", "apply-patches", "--upstream", str(dest))
    assert applied.exit_code == EXIT_OK and f"{PATCH_0001}: applied" in applied.output
    assert repro("upstream", "status", "--upstream", str(dest)).exit_code == EXIT_OK


def test_status_json_is_the_manifest_record(fake, tmp_path):
    dest = tmp_path / "PaddleClas"
    fetch_upstream(FetchRequest(dest=dest), say=lambda _: None)
    result = repro("upstream", "status", "--upstream", str(dest), "--json")
    record = json.loads(result.output)
    assert record["commit"] == record["pinned_commit"] == fake.first
    assert record["patches"][0]["name"] == PATCH_0001 and record["patches"][0]["applied"] is True
    assert len(record["patches"][0]["sha256"]) == 64 and record["local_changes"] == []


def test_upstream_dir_env_var_is_where_it_lives(fake, tmp_path, monkeypatch):
    dest = tmp_path / "elsewhere" / "PaddleClas"
    monkeypatch.setenv("REPRO_UPSTREAM_DIR", str(dest))
    assert repro("upstream", "fetch").exit_code == EXIT_OK
    assert (dest / "tools" / "train.py").is_file()
    assert repro("upstream", "status").exit_code == EXIT_OK


def test_lock_resolves_the_ref_and_keeps_the_comments(fake, tmp_path):
    pin_file = tmp_path / "harness" / "patches" / "UPSTREAM.yaml"
    result = repro("upstream", "lock")
    assert result.exit_code == EXIT_OK, result.stderr
    assert load_pin().commit == fake.second  # the branch tip
    assert pin_file.read_text().startswith("# comment that must survive lock")
    assert "verified against" in result.stderr
    assert "unchanged" in repro("upstream", "lock").output
    pin = load_pin()
    assert pin.commit_from == "release/2.6" and pin.describe() == f"release/2.6 at {fake.second[:8]}"


def test_a_stand_in_commit_is_recorded_as_what_it_is(fake, tmp_path):
    """The pin's commit came from develop: status and the manifest must not call it release/2.6."""
    pin_file = tmp_path / "harness" / "patches" / "UPSTREAM.yaml"
    pin_file.write_text(pin_file.read_text() + "commit_from: develop\n")
    dest = tmp_path / "PaddleClas"
    assert repro("upstream", "fetch", "--dest", str(dest)).exit_code == EXIT_OK
    standing_in = f"develop {fake.first[:8]}, standing in for release/2.6"
    status = repro("upstream", "status", "--upstream", str(dest))
    assert status.exit_code == EXIT_OK
    assert f"upstream is:      {standing_in}" in status.output
    assert "ref:              - (not known to be a ref's tip)" in status.output
    record = json.loads(repro("upstream", "status", "--upstream", str(dest), "--json").output)
    assert record["ref"] is None and record["commit_is"] == standing_in and record["pinned_ref"] == "release/2.6"
    assert record["commit"] == fake.first and record["matches_pin"] is True
    # After `lock` resolves release/2.6 itself, the same words become the plain truth.
    pin_file.write_text(pin_file.read_text().replace("commit_from: develop", "commit_from: release/2.6"))
    record = json.loads(repro("upstream", "status", "--upstream", str(dest), "--json").output)
    assert record["ref"] == "release/2.6" and record["commit_is"] == f"release/2.6 at {fake.first[:8]}"


def test_lock_of_a_missing_ref_is_bad_input(fake):
    result = repro("upstream", "lock", "--ref", "no-such-branch")
    assert result.exit_code == 2 and "no-such-branch" in result.stderr


def test_shipped_pin_is_full_and_consistent():
    pin = load_pin(REAL_PATCHES / "UPSTREAM.yaml")
    assert pin.url == "https://github.com/PaddlePaddle/PaddleClas.git" and pin.ref == "release/2.6"
    assert pin.commit == pin.verified_against and pin.commit.startswith("d178931f") and len(pin.commit) == 40
    assert pin.verified_date == "2024-10-18"
    assert pin.describe() == "develop d178931f, standing in for release/2.6"
    assert pin.archive_sha256 == "cdcd48315586046def3c3a53bd6fba080ef9676bf110a1dddfe58c914bad1e94"
    shared = Path("/work/shared/upstream/PaddleClas-d178931f.tar.gz")
    if shared.is_file():
        assert file_sha256(shared) == pin.archive_sha256


@pytest.mark.upstream
def test_real_mirror_fetch_applies_our_patch(tmp_path, monkeypatch):
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        pytest.skip(f"no PaddleClas mirror: set {MIRROR_ENV}=/path/to/bare/PaddleClas.git (with release/2.6 at the pinned commit)")
    monkeypatch.delenv("REPRO_ROOT", raising=False)
    dest = tmp_path / "PaddleClas"
    state = fetch_upstream(FetchRequest(dest=dest, url=mirror), say=lambda _: None)
    assert state.matches_pin and state.problems() == [] and all(p.applied for p in state.patches)
    assert PATCHED_LINE in (dest / CLASSIFICATION).read_text()
    assert repro("upstream", "status", "--upstream", str(dest)).exit_code == EXIT_OK
    shutil.rmtree(dest)


@pytest.mark.parametrize("named_by", ["--upstream", "REPRO_UPSTREAM_DIR"])
def test_existing_plain_tree_is_used_in_place_whichever_way_it_is_named(fake, tmp_path, monkeypatch, named_by):
    """`make smoke` runs a bare `fetch`: the env var must name a user's tree as --upstream does."""
    mine = tmp_path / "extracted" / "PaddleClas"
    shutil.copytree(fake.path, mine, ignore=shutil.ignore_patterns(".git"))
    (mine / "mine.txt").write_text("the user's own file")
    if named_by == "--upstream":
        result = repro("upstream", "fetch", "--upstream", str(mine))
    else:
        monkeypatch.setenv("REPRO_UPSTREAM_DIR", str(mine))
        result = repro("upstream", "fetch")
    assert result.exit_code == EXIT_OK, result.stderr
    assert f"using the tree at {mine} in place" in result.output
    assert PATCHED_LINE in (mine / CLASSIFICATION).read_text()
    assert (mine / "mine.txt").read_text() == "the user's own file" and (mine / "docs" / "big.md").is_file()


def test_a_file_in_the_way_of_dest_is_one_line_not_an_internal_error(fake, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory belongs")
    result = repro("upstream", "fetch", "--dest", str(blocker / "PaddleClas"))
    assert result.exit_code == EXIT_UPSTREAM, result.stderr
    assert result.stderr.startswith(f"error: cannot use {blocker}") and result.stderr.count("\n") == 1
    assert "internal error" not in result.stderr and blocker.read_text() == "a file where a directory belongs"


def test_permission_denied_on_the_upstream_dir_is_one_line_with_the_fix(fake, tmp_path, monkeypatch):
    locked = tmp_path / "locked" / "PaddleClas"

    def denied(path, *_args, **_kwargs):
        # Tests may run as root, where chmod 000 denies nothing: raise what the kernel would.
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(upstream_cli, "inspect_checkout", denied)
    monkeypatch.setattr(upstream_cli, "fetch_upstream", lambda request, say: denied(request.dest))
    for command in (["status"], ["fetch"], ["apply-patches"]):
        if command == ["apply-patches"]:
            locked.mkdir(parents=True)
            monkeypatch.setattr(upstream_cli, "apply_series", lambda tree, _series: denied(tree))
        result = repro("upstream", *command, "--upstream", str(locked))
        assert result.exit_code == EXIT_UPSTREAM, (command, result.stderr)
        assert result.stderr == f"error: cannot use {locked}: Permission denied; make it and the directories above it accessible to you (ls -ld; chmod/chown) or use another path\n"
