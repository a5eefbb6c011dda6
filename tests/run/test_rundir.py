"""The run-directory contract (``repro.run.rundir``) and the file primitives every step shares (``repro.core.files``)."""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.core.files import Tail, atomic_path, last_lines, write_text_atomic
from repro.platform import profiles
from repro.run.checkpoints import saved_state
from repro.run.lock import is_active
from repro.run.rundir import Manifest, RunDir, find_run_dir, open_run_dir, read_manifest
from tests.logfakes import standard_run


def test_find_run_dir_walks_up_from_a_file_inside_the_run(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    (run.launcher).mkdir(parents=True)
    Manifest.create(run.manifest, {})
    assert find_run_dir(run.workerlog(0)) == RunDir(run.path.resolve())
    assert find_run_dir(run.path) == RunDir(run.path.resolve())
    assert find_run_dir(tmp_path) is None


def test_a_workerlog_inside_a_run_is_judged_with_that_runs_target(tmp_path: Path) -> None:
    # The parser suggests `repro check-accuracy RUN/launcher/workerlog.0`: it must not fall back to 0.7677.
    manifest = {"recipe": {"name": "resnest50"}, "status": "completed",
                "target": {"metric": "top1", "value": 0.5, "eval_set_size": 32, "tolerance": 0}}
    run = standard_run(tmp_path / "run", top1={1: 0.25, 2: 0.5, 3: 0.75}, manifest=manifest)
    result = CliRunner(mix_stderr=False).invoke(cli, ["check-accuracy", str(run / "launcher" / "workerlog.0")])
    assert result.exit_code == 0, result.output + result.stderr
    assert "PASS" in result.output and "0.5" in result.output


def test_read_manifest_has_one_error_rule(tmp_path: Path) -> None:
    with pytest.raises(ReproError, match="no manifest") as missing:
        read_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text("{half")
    with pytest.raises(ReproError, match="unreadable") as broken:
        read_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ReproError, match="not a JSON object"):
        read_manifest(tmp_path / "manifest.json")
    assert missing.value.exit_code == broken.value.exit_code == EXIT_BAD_INPUT


def test_resume_of_a_missing_or_foreign_directory_is_the_same_bad_input(tmp_path: Path) -> None:
    for path in (tmp_path / "nothing", tmp_path):
        with pytest.raises(ReproError, match="is not a repro run directory") as error:
            open_run_dir(path)
        assert error.value.exit_code == EXIT_BAD_INPUT


def test_manifest_follows_the_users_umask_like_every_other_file(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        Manifest.create(tmp_path / "manifest.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "manifest.json").stat().st_mode & 0o777 == 0o644
    assert json.loads((tmp_path / "manifest.json").read_text())["schema"] == 2


def test_atomic_path_removes_its_temporary_when_the_block_fails(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "pin.yaml", "old\n")
    with pytest.raises(OSError):
        with atomic_path(tmp_path / "pin.yaml") as temp:
            temp.write_text("half")
            raise OSError(28, "No space left on device")
    assert (tmp_path / "pin.yaml").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pin.yaml"]


def test_tail_from_end_reads_only_what_is_appended(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("LAUNCH INFO Exit code 0\n")
    tail = Tail.from_end(log)
    assert tail.read() == []
    with log.open("a") as handle:
        handle.write("LAUNCH INFO Run Pod\npartial")
    assert tail.read() == ["LAUNCH INFO Run Pod"]
    assert last_lines(log, 1) == "partial"
    assert last_lines(tmp_path / "missing.log") == ""


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pdstates_that_would_run_code_counts_as_no_state(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latest.pdstates").write_bytes(pickle.dumps({"metric": 0.5, "epoch": _RunsCode()}))
    assert saved_state(tmp_path / "latest") is None
    assert not (tmp_path / "pwned").exists()
    assert "not a plain upstream state" in capsys.readouterr().err
    (tmp_path / "epoch_2.pdstates").write_bytes(pickle.dumps({"metric": 0.75, "epoch": 2}))
    assert saved_state(tmp_path / "epoch_2") == {"metric": 0.75, "epoch": 2}


def test_advice_to_switch_platforms_is_a_command_the_makefile_accepts(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "repro-platform").write_text("cpu\n")
    monkeypatch.setattr(profiles.sys, "prefix", str(tmp_path))
    # `make setup PLATFORM=nvidia-cuda` on a cpu venv is refused by the Makefile: clean it first.
    assert profiles.setup_command("nvidia-cuda") == "make clean-venv && make setup PLATFORM=nvidia-cuda"
    assert profiles.setup_command("cpu") == "make setup PLATFORM=cpu"


def test_is_active_by_flock_and_by_recorded_processes(tmp_path: Path) -> None:
    """The one rule: a held flock, or a live process recorded in .lock; a dead record is not activity."""
    run = tmp_path / "run"
    run.mkdir()
    assert not is_active(run)  # no lock file at all
    fd = os.open(run / ".lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    assert is_active(run)  # a harness holds it
    os.close(fd)
    assert not is_active(run)  # the kernel dropped it with the descriptor
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        record = {"pid": child.pid, "create_time": psutil.Process(child.pid).create_time(), "cmdline": [], "role": "rank"}
        (run / ".lock").write_text(json.dumps({"processes": [record]}))
        assert is_active(run)  # an orphaned rank with no flock
    finally:
        child.kill()
        child.wait()
    assert not is_active(run)


@pytest.mark.parametrize("edit, says", [
    ({"schema": 99}, "schema 99"),
    ({"schema": "2"}, "schema '2'"),
    ({"target": [1]}, "'target' is [1], expected a list of objects"),
    ({"target": "0.7677"}, "'target' is \"0.7677\", expected an object or a number or a list"),
    ({"evaluations": [None]}, "'evaluations' is [null], expected a list of objects"),
    ({"status": 3}, "'status' is 3, expected a string"),
    ({"smoke": "yes"}, "'smoke' is \"yes\", expected true/false"),
    ({"segments": {}}, "'segments' is {}, expected a list"),
    ({"keep_checkpoints": True}, "'keep_checkpoints' is true, expected a number"),
])
def test_a_hand_edited_manifest_is_refused_in_one_line(tmp_path: Path, edit: dict, says: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"schema": 2, "status": "completed", "segments": [], **edit}))
    with pytest.raises(ReproError) as error:
        read_manifest(path)
    assert says in error.value.message and error.value.exit_code == 2


def test_a_manifest_linked_to_dev_zero_is_refused_not_read(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.symlink_to("/dev/zero")
    with pytest.raises(ReproError, match="character device"):
        read_manifest(path)
