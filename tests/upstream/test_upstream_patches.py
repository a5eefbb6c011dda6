"""The patch series: parsing, apply, re-apply as a no-op, and naming the hunk that fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.core.errors import EXIT_BAD_INPUT, EXIT_UPSTREAM, ReproError
from repro.upstream.patches import PatchStatus, apply_series, check_patch, parse_patch, read_series
from tests.upstream_fixtures import CLASSIFICATION, CLASSIFICATION_DOUBLE, PATCH_0001, PATCHED_LINE, REAL_PATCHES, git


@pytest.fixture
def tree(tmp_path) -> Path:
    """A plain (non-git) tree with the test double of the patched file."""
    root = tmp_path / "tree"
    (root / CLASSIFICATION).parent.mkdir(parents=True)
    (root / CLASSIFICATION).write_text(CLASSIFICATION_DOUBLE)
    return root


def test_shipped_series_names_the_cpu_eval_fix_with_a_header():
    patches = read_series(REAL_PATCHES)
    assert [p.name for p in patches] == [PATCH_0001]
    assert patches[0].files == (CLASSIFICATION,)
    assert len(patches[0].hunks) == 1
    header = (REAL_PATCHES / PATCH_0001).read_text().split("diff --git", 1)[0]
    assert "device_id" in header and "Why" in header


def test_apply_then_reapply_is_a_no_op(tree):
    patches = read_series(REAL_PATCHES)
    assert [newly for _, newly in apply_series(tree, patches)] == [True]
    patched = (tree / CLASSIFICATION).read_text()
    assert PATCHED_LINE in patched and "ParallelEnv().device_id" in patched
    assert [newly for _, newly in apply_series(tree, patches)] == [False]
    assert (tree / CLASSIFICATION).read_text() == patched
    assert check_patch(tree, patches[0]).status is PatchStatus.APPLIED


def test_plain_tree_inside_another_git_repo_is_patched_at_its_own_root(tmp_path, tree):
    # .upstream/PaddleClas from an archive sits inside the harness's own git repo.
    git("init", "-q", str(tmp_path))
    patches = read_series(REAL_PATCHES)
    apply_series(tree, patches)
    assert PATCHED_LINE in (tree / CLASSIFICATION).read_text()


def test_patch_that_neither_applies_nor_is_applied_names_file_and_hunk(tree):
    text = CLASSIFICATION_DOUBLE.replace("label_list = []", "label_list = list()")
    (tree / CLASSIFICATION).write_text(text)
    patches = read_series(REAL_PATCHES)
    check = check_patch(tree, patches[0])
    assert check.status is PatchStatus.CONFLICT
    with pytest.raises(ReproError) as caught:
        apply_series(tree, patches)
    assert caught.value.exit_code == EXIT_UPSTREAM
    assert CLASSIFICATION in caught.value.message and "hunk #1 (@@ -74,7 +74,9 @@" in caught.value.message
    assert (tree / CLASSIFICATION).read_text() == text, "a failed check must not touch the file"


def test_missing_file_is_named(tmp_path):
    patches = read_series(REAL_PATCHES)
    (tmp_path / "t").mkdir()
    with pytest.raises(ReproError) as caught:
        apply_series(tmp_path / "t", patches)
    assert CLASSIFICATION in caught.value.message


def test_series_naming_a_missing_patch_is_bad_input(tmp_path):
    (tmp_path / "series").write_text("# comment\n\n0009-gone.patch\n")
    with pytest.raises(ReproError) as caught:
        read_series(tmp_path)
    assert caught.value.exit_code == EXIT_BAD_INPUT and "0009-gone.patch" in caught.value.message


def test_parse_patch_reads_files_hunks_and_hash(tmp_path):
    patch = tmp_path / "x.patch"
    patch.write_text(
        "Header text.\n\ndiff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -3,2 +3,2 @@ def f():\n-x\n+y\n"
        "@@ -10 +10 @@\n-p\n+q\n"
    )
    parsed = parse_patch(patch)
    assert parsed.files == ("a.py",)
    assert [h.old_start for h in parsed.hunks] == [3, 10]
    assert parsed.describe_hunk("a.py", 10) == "a.py hunk #2 (@@ -10 +10 @@)"
    assert len(parsed.sha256) == 64
