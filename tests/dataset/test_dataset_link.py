"""``repro dataset link``: idempotent, replaces only symlinks (with --force), never harms real data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.dataset.link import ALREADY, CREATED, REPLACED, link_dataset, linked_root
from repro.dataset.tiny import make_tiny
from repro.core.errors import EXIT_CONFLICT, EXIT_UPSTREAM, ReproError


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_tiny(tmp_path / "data", classes=2, train_per_class=2, val_per_class=1, size=16)


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    root = tmp_path / "PaddleClas"
    (root / "dataset").mkdir(parents=True)
    return root


def link_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["dataset", "link", *args])
    return result.exit_code, result.stdout, result.stderr


def test_creates_an_absolute_symlink_then_is_idempotent(tiny: Path, upstream: Path) -> None:
    result = link_dataset(tiny, upstream)
    link = upstream / "dataset" / "ILSVRC2012"
    assert result.action == CREATED and result.report is not None and result.report.ok
    assert link.is_symlink() and os.readlink(link) == str(tiny) and Path(os.readlink(link)).is_absolute()
    assert link_dataset(tiny, upstream).action == ALREADY
    assert linked_root(upstream) == tiny


def test_relative_root_is_made_absolute(tiny: Path, upstream: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny.parent)
    link_dataset(Path("data"), upstream)
    assert os.readlink(upstream / "dataset" / "ILSVRC2012") == str(tiny)


def test_creates_dataset_dir_when_absent(tiny: Path, tmp_path: Path) -> None:
    upstream = tmp_path / "bare"
    upstream.mkdir()
    assert link_dataset(tiny, upstream).action == CREATED


def test_symlink_elsewhere_needs_force_and_reports_old_target(tiny: Path, upstream: Path, tmp_path: Path) -> None:
    old = tmp_path / "old-imagenet"
    old.mkdir()
    link = upstream / "dataset" / "ILSVRC2012"
    link.symlink_to(old)
    exit_code, _, stderr = link_cli(str(tiny), "--upstream", str(upstream))
    assert exit_code == EXIT_CONFLICT and f"already links to {old}" in stderr and "--force" in stderr
    assert os.readlink(link) == str(old)
    exit_code, stdout, _ = link_cli(str(tiny), "--upstream", str(upstream), "--force")
    assert exit_code == 0 and f"was -> {old}" in stdout
    assert os.readlink(link) == str(tiny) and old.is_dir()


def test_a_link_to_a_generated_tiny_set_is_replaced_without_force(tiny: Path, upstream: Path, tmp_path: Path) -> None:
    # What an older `make smoke` left at dataset/ILSVRC2012: the README's `repro dataset link` just works.
    older = make_tiny(tmp_path / "smoke-data", classes=2, train_per_class=1, val_per_class=1, size=16)
    link = upstream / "dataset" / "ILSVRC2012"
    link.symlink_to(older)
    exit_code, stdout, stderr = link_cli(str(tiny), "--upstream", str(upstream))
    assert exit_code == 0, stderr
    assert f"was -> {older}" in stdout and os.readlink(link) == str(tiny)
    assert (older / "train_list.txt").is_file()  # the tiny set itself stays


def test_force_result_object(tiny: Path, upstream: Path, tmp_path: Path) -> None:
    (upstream / "dataset" / "ILSVRC2012").symlink_to(tmp_path / "dangling")
    result = link_dataset(tiny, upstream, force=True)
    assert result.action == REPLACED and result.old_target == tmp_path / "dangling"


@pytest.mark.parametrize("force", [False, True])
def test_real_directory_is_never_touched(tiny: Path, upstream: Path, force: bool) -> None:
    real = upstream / "dataset" / "ILSVRC2012"
    (real / "train").mkdir(parents=True)
    (real / "train" / "precious.JPEG").write_bytes(b"only copy")
    args = [str(tiny), "--upstream", str(upstream)] + (["--force"] if force else [])
    exit_code, _, stderr = link_cli(*args)
    assert exit_code == EXIT_CONFLICT
    assert "is a real directory (holding 1 entries)" in stderr and "never removed" in stderr
    assert stderr.count("\n") == 1
    assert not real.is_symlink() and (real / "train" / "precious.JPEG").read_bytes() == b"only copy"
    assert linked_root(upstream) == real


def test_real_file_is_never_touched(tiny: Path, upstream: Path) -> None:
    real = upstream / "dataset" / "ILSVRC2012"
    real.write_text("notes")
    with pytest.raises(ReproError) as caught:
        link_dataset(tiny, upstream, force=True)
    assert caught.value.exit_code == EXIT_CONFLICT and "a real file" in caught.value.message
    assert real.read_text() == "notes"


def test_failed_check_links_nothing_unless_no_check(tiny: Path, upstream: Path) -> None:
    (tiny / "val_list.txt").unlink()
    exit_code, _, stderr = link_cli(str(tiny), "--upstream", str(upstream))
    assert exit_code == 1 and "val_list.txt: missing" in stderr and "--no-check" in stderr
    assert linked_root(upstream) is None
    exit_code, _, _ = link_cli(str(tiny), "--upstream", str(upstream), "--no-check")
    assert exit_code == 0 and linked_root(upstream) == tiny


def test_missing_upstream_checkout(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ReproError) as caught:
        link_dataset(tiny, tmp_path / "nowhere")
    assert caught.value.exit_code == EXIT_UPSTREAM


def test_linked_root_absent(upstream: Path) -> None:
    assert linked_root(upstream) is None


def test_dangling_symlink_at_the_link_path_needs_force_and_names_the_missing_target(
    tiny: Path, upstream: Path, tmp_path: Path
) -> None:
    gone = tmp_path / "unmounted-imagenet"
    link = upstream / "dataset" / "ILSVRC2012"
    link.symlink_to(gone)
    exit_code, _, stderr = link_cli(str(tiny), "--upstream", str(upstream), "--no-check")
    assert exit_code == EXIT_CONFLICT and f"a symlink to missing {gone}" in stderr and "--force" in stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1
    assert os.readlink(link) == str(gone)
    exit_code, stdout, _ = link_cli(str(tiny), "--upstream", str(upstream), "--no-check", "--force")
    assert exit_code == 0 and f"was -> {gone}" in stdout and os.readlink(link) == str(tiny)


def test_dangling_dataset_dir_symlink_is_a_conflict_and_left_alone(tiny: Path, tmp_path: Path) -> None:
    upstream = tmp_path / "PaddleClas"
    upstream.mkdir()
    gone = tmp_path / "old-dataset-dir"
    (upstream / "dataset").symlink_to(gone)
    for extra in ([], ["--force"]):
        exit_code, _, stderr = link_cli(str(tiny), "--upstream", str(upstream), "--no-check", *extra)
        assert exit_code == EXIT_CONFLICT, stderr
        assert f"is a symlink to missing {gone}, not a directory" in stderr and stderr.count("\n") == 1
    assert os.readlink(upstream / "dataset") == str(gone) and not gone.exists()


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_foreign_temporary_beside_the_link_is_reported_never_deleted(
    tiny: Path, upstream: Path, tmp_path: Path, kind: str
) -> None:
    old = tmp_path / "old-imagenet"
    old.mkdir()
    link = upstream / "dataset" / "ILSVRC2012"
    link.symlink_to(old)
    temporary = upstream / "dataset" / ".ILSVRC2012.repro-new"
    if kind == "file":
        temporary.write_text("not ours")
    else:
        (temporary / "train").mkdir(parents=True)
    exit_code, _, stderr = link_cli(str(tiny), "--upstream", str(upstream), "--no-check", "--force")
    assert exit_code == EXIT_CONFLICT and str(temporary) in stderr and f"a real {kind}" in stderr
    assert "remove it yourself" in stderr and stderr.count("\n") == 1
    assert os.readlink(link) == str(old)
    assert temporary.read_text() == "not ours" if kind == "file" else (temporary / "train").is_dir()


def test_leftover_temporary_link_of_ours_is_replaced(tiny: Path, upstream: Path, tmp_path: Path) -> None:
    old = tmp_path / "old-imagenet"
    old.mkdir()
    (upstream / "dataset" / "ILSVRC2012").symlink_to(old)
    (upstream / "dataset" / ".ILSVRC2012.repro-new").symlink_to(tmp_path / "interrupted")
    assert link_dataset(tiny, upstream, force=True, check=False).action == REPLACED
    assert not os.path.lexists(upstream / "dataset" / ".ILSVRC2012.repro-new")


def test_unwritable_upstream_is_one_line_naming_the_directory(
    tiny: Path, upstream: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests may run as root, where chmod cannot deny anything: simulate what the kernel says.
    def denied(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "symlink", denied)
    exit_code, _, stderr = link_cli(str(tiny), "--upstream", str(upstream), "--no-check")
    assert exit_code == EXIT_UPSTREAM and stderr.count("\n") == 1
    assert f"cannot create the dataset link in {upstream / 'dataset'}: Permission denied" in stderr


def test_force_refuses_to_relink_under_a_running_training(tmp_path: Path) -> None:
    upstream = tmp_path / "PaddleClas"
    (upstream / "tools").mkdir(parents=True)
    (upstream / "tools" / "train.py").write_text("import time\ntime.sleep(30)\n")
    first = make_tiny(tmp_path / "a", classes=2, train_per_class=1, val_per_class=1, size=16)
    other = make_tiny(tmp_path / "b", classes=2, train_per_class=1, val_per_class=1, size=16)
    link_dataset(first, upstream)
    rank = subprocess.Popen([sys.executable, "tools/train.py"], cwd=upstream)
    try:
        time.sleep(0.5)
        with pytest.raises(ReproError, match="is read by training running") as error:
            link_dataset(other, upstream, force=True)
        assert error.value.exit_code == EXIT_CONFLICT and str(rank.pid) in error.value.message
        assert os.readlink(upstream / "dataset" / "ILSVRC2012") == str(first)
    finally:
        rank.kill()
        rank.wait()
    assert link_dataset(other, upstream, force=True).action == "replaced"
