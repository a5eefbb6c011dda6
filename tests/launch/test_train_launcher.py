"""Launcher plumbing of ``repro train``, against a test double of upstream under the REAL paddle launcher.

``tests/doubles`` holds a stand-in for a PaddleClas checkout (see its README): ``fake_train.py``,
laid out as ``tools/train.py`` in a temporary checkout, writes upstream-format logs and tiny
checkpoints. Running it under the real ``python -m paddle.distributed.launch`` exercises what matters here: the launcher's ``os.setsid``
ranks, its exit codes, its log directory.
"""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.core import files
from repro.core.paths import project_root
from repro.run import rundir
from repro.run.checkpoints import check_complete, observe_written, prune, resume_point, snapshot
from repro.run.lock import RunLock
from repro.run.rundir import RunDir
from repro.launch.command import HARNESS, REFERENCE, build_command, environment_changes
from tests.doubles import make_fake_checkout, probe_double_env, scratch_dir

REFERENCE_TOKENS = [  # the DeepSparkHub README's line (repro/recipes/resnest50.yaml reference.command)
    "python3", "-u", "-m", "paddle.distributed.launch", "--gpus=0,1,2,3", "tools/train.py",
    "-c", "ppcls/configs/ImageNet/ResNeSt/ResNeSt50.yaml", "-o", "Arch.pretrained=False", "-o", "Global.device=gpu",
]


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    return make_fake_checkout(tmp_path / "upstream")


def harness_env(real_probe: bool = False, **extra: str) -> dict[str, str]:
    """The environment of a `repro train` child: no leftover knobs, fast housekeeping, and (unless
    ``real_probe``) the Paddle probe's test double (tests/doubles/paddle_probe)."""
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("REPRO_TRAIN_", "FAKE_", "PADDLE_")):
            env.pop(name)
    env.update({"REPRO_TRAIN_HOUSEKEEPING_SECONDS": "0.5", "REPRO_TRAIN_STOP_GRACE": "1",
                "FAKE_BARRIER_DIR": str(scratch_dir("barrier"))})
    env.update(extra)
    return env if real_probe else probe_double_env(env)


def repro_train(upstream: Path, run: Path, *args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    argv = [sys.executable, "-m", "repro", "train", *args]
    if "--resume" not in args:  # a resume takes all of these from the run's manifest (and refuses them)
        argv += ["--upstream", str(upstream), "--platform", "cpu", "--skip-preflight", "--run-dir", str(run)]
    return subprocess.Popen(argv, env=env or harness_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def lock_pids(run: Path) -> list[dict]:
    try:
        return json.loads((run / ".lock").read_text())["processes"]
    except (FileNotFoundError, ValueError, KeyError):
        return []


def wait_for_ranks(run: Path, count: int = 2, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ranks = [p for p in lock_pids(run) if "tools/train.py" in p["cmdline"]]
        if len(ranks) >= count and (run / "output" / "train.log").exists():
            return lock_pids(run)
        time.sleep(0.2)
    raise AssertionError(f"ranks did not start: {lock_pids(run)}")


def assert_all_gone(records: list[dict]) -> None:
    alive = live(records)
    assert not alive, f"left running: {alive}"


# --------------------------------------------------------------------------- command and dry run


def test_dry_run_prints_the_reference_command_and_flags(upstream: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    logs = tmp_path / "logs"
    result = CliRunner().invoke(
        cli,
        ["train", "--dry-run", "--gpus", "0,1,2,3", "--platform", "ixuca-bi-v150-sdk4.2.0", "--upstream", str(upstream),
         "--logs-dir", str(logs)],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].strip() == " ".join(REFERENCE_TOKENS)
    # The full command keeps every reference token, in order, and marks the rest.
    full = lines[3].strip()
    assert full.startswith("python3 -u -m paddle.distributed.launch --gpus=0,1,2,3 [harness: --log_dir ")
    assert "tools/train.py -c ppcls/configs/ImageNet/ResNeSt/ResNeSt50.yaml -o Arch.pretrained=False -o Global.device=gpu [harness: -o Global.output_dir=" in full
    assert f"working directory: {upstream}" in result.output
    for flag in ("FLAGS_cudnn_exhaustive_search=True", "FLAGS_cudnn_batchnorm_spatial_persistent=True",
                 "CUDA_VISIBLE_DEVICES=0,1,2,3"):
        assert f"  {flag}" in lines
    assert not logs.exists(), "a dry run must create nothing"


def test_command_tokens_keep_reference_order_and_mark_additions(tmp_path: Path) -> None:
    command = build_command(
        upstream_dir=tmp_path, entry="tools/train.py", config_arg="c.yaml", reference_config="c.yaml",
        reference_overrides=["Arch.pretrained=False"], device="cpu", run_dir=tmp_path / "run", cpu_ranks=2,
        extra_overrides=["Global.epochs=2"], seed=7, nnodes=2, master="127.0.0.1:8090", python="/py",
    )
    assert command.reference_tokens == ["python3", "-u", "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                                        "tools/train.py", "-c", "c.yaml", "-o", "Arch.pretrained=False",
                                        "-o", "Global.device=cpu"]
    argv = command.argv
    assert argv[0] == "/py"
    # launcher flags precede the script; the harness's -o come after the user's, so they win
    assert argv.index("--master") < argv.index("tools/train.py") and argv.index("--log_dir") < argv.index("tools/train.py")
    assert argv[-4:] == ["-o", f"Global.output_dir={tmp_path / 'run' / 'output'}", "-o", "Global.seed=7"]
    resumed = command.with_override("Global.checkpoints", "/x/latest").with_override("Global.checkpoints", "/x/epoch_2")
    assert resumed.argv.count("-o") == command.argv.count("-o") + 1
    assert resumed.argv[-2:] == ["-o", "Global.checkpoints=/x/epoch_2"]
    assert {t.source for t in resumed.tokens} == {REFERENCE, HARNESS, "user"}


def test_environment_sets_visible_devices_to_the_gpu_list_and_drops_overriding_vars() -> None:
    current = {"CUDA_VISIBLE_DEVICES": "0,1", "PADDLE_LOG_DIR": "/elsewhere", "HOME": "/h"}
    gpu = environment_changes({"FLAGS_x": "True"}, "CUDA_VISIBLE_DEVICES", [4, 5], current)
    env = gpu.apply(current)
    # --gpus=4,5 is resolved by the launcher as indexes into CUDA_VISIBLE_DEVICES: they must agree
    assert env["CUDA_VISIBLE_DEVICES"] == "4,5" and env["FLAGS_x"] == "True"
    assert "PADDLE_LOG_DIR" not in env and env["HOME"] == "/h"
    cpu = environment_changes({}, None, None, current).apply(current)
    assert "CUDA_VISIBLE_DEVICES" not in cpu  # would make the launcher think it drives GPUs


def test_a_new_platforms_visible_devices_variable_is_dropped_from_a_cpu_run(tmp_path: Path, monkeypatch) -> None:
    """Which variables hide devices is platform data (each profile's visible_devices_var), not a list in code."""
    shutil.copytree(project_root() / "environments", tmp_path / "environments")
    profile = tmp_path / "environments" / "new-gpu" / "profile.yaml"
    profile.parent.mkdir()
    profile.write_text((tmp_path / "environments" / "nvidia-cuda" / "profile.yaml").read_text()
                       .replace("visible_devices_var: CUDA_VISIBLE_DEVICES", "visible_devices_var: NEW_VISIBLE_DEVICES"))
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    current = {"NEW_VISIBLE_DEVICES": "0", "CUDA_VISIBLE_DEVICES": "1", "HOME": "/h"}
    assert sorted(environment_changes({}, None, None, current).unset) == ["CUDA_VISIBLE_DEVICES", "NEW_VISIBLE_DEVICES"]


def test_explicit_run_dir_that_is_not_empty_is_refused(upstream: Path, tmp_path: Path) -> None:
    run = tmp_path / "taken"
    run.mkdir()
    (run / "train.log").write_text("someone else's log\n")
    result = CliRunner().invoke(cli, ["train", "--platform", "cpu", "--upstream", str(upstream), "--run-dir",
                                                  str(run), "--skip-preflight"])
    assert result.exit_code == 5
    assert (run / "train.log").read_text() == "someone else's log\n"


def test_preflight_problems_stop_before_anything_runs(upstream: Path, tmp_path: Path, monkeypatch) -> None:
    import repro.launch.start as start  # start imports run_preflight by name: patch the name it calls

    monkeypatch.setattr(start, "run_preflight", lambda **kw: ["dataset missing: run `repro dataset link ROOT`"])
    run = tmp_path / "run"
    result = CliRunner(mix_stderr=False).invoke(cli, ["train", "--platform", "cpu", "--upstream", str(upstream),
                                                                  "--run-dir", str(run)])
    assert result.exit_code == 4
    assert "pre-flight: dataset missing" in result.stderr
    assert not run.exists(), "a run that never started leaves no directory behind"


# --------------------------------------------------------------------------- real launcher runs


def test_run_writes_run_dir_and_manifest(upstream: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, out, err = finish(repro_train(upstream, run, "-o", "Global.epochs=5", "--seed", "11",
                                        "--keep-checkpoints", "2"))
    assert code == 0, err
    data = manifest(run)
    harness = data["harness"]  # what ran is this checkout's code: its commit, and whether it was edited
    assert re.fullmatch(r"[0-9a-f]{40}", harness["commit"]) and harness["dirty"] in (True, False)
    assert harness["host"]["hostname"] and harness["host"]["python"].startswith("3.")
    assert data["status"] == "completed" and data["exit_code"] == 0 and data["ended"]
    assert data["command"]["argv"][1:6] == ["-u", "-m", "paddle.distributed.launch", "--nproc_per_node", "2"]
    assert f"Global.output_dir={run / 'output'}" in data["command"]["argv"]
    assert data["seed"]["value"] == 11 and data["platform"]["name"] == "cpu"
    assert data["paddle"]["version"] and data["devices"]["world_size"] == 2
    assert data["overrides"]["user"] == ["Global.epochs=5"]
    assert [s["status"] for s in data["segments"]] == ["completed"]
    assert any(p["role"] == "launcher" for p in data["segments"][0]["processes"])
    assert (run / "config.yaml").is_file() and (run / "launcher" / "workerlog.0").is_file()
    assert "seed 11" in (run / "launcher" / "workerlog.1").read_text()
    # retention: latest, best_model and the last 2 epochs stay; the older epochs this run wrote went
    names = {p.name for p in (run / "output").iterdir()}
    assert {"epoch_4.pdparams", "epoch_5.pdparams", "latest.pdstates", "best_model.pdstates"} <= names
    assert not {"epoch_1.pdparams", "epoch_2.pdopt", "epoch_3.pdstates"} & names
    assert "epoch_3.pdparams" in data["checkpoints_deleted"]
    assert not (run / ".lock").exists()


def test_a_first_segment_that_saved_nothing_is_not_told_to_resume(upstream: Path, tmp_path: Path) -> None:
    # A resume reruns the same command from epoch 1: advice to resume a run that saved nothing cannot work.
    run = tmp_path / "run"
    code, _, err = finish(repro_train(upstream, run, env=harness_env(FAKE_CRASH_EPOCH="1", FAKE_CRASH_RANK="0")))
    assert code == 6, err
    assert "nothing was saved to resume from" in err.splitlines()[-1] and "--resume" not in err.splitlines()[-1]


def test_rank_failure_stops_the_run_with_its_last_lines(upstream: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, _, err = finish(repro_train(upstream, run, env=harness_env(FAKE_CRASH_EPOCH="2", FAKE_CRASH_RANK="1",
                                                                      FAKE_SLEEP="1")))
    assert code == 6, err
    assert "last lines of rank 1" in err and "fake failure on rank 1 in epoch 2" in err
    assert "repro train --resume" in err.splitlines()[-1]
    data = manifest(run)
    assert data["status"] == "failed" and data["segments"][0]["failed_rank"] == 1 and data["ended"]
    assert_all_gone(data["segments"][0]["processes"])


@pytest.mark.slow  # ~13 s: two real launches and a deliberate wait into epoch 2
def test_lock_refuses_while_ranks_live_then_sigint_leaves_no_process_and_resume_appends(
    upstream: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    first = repro_train(upstream, run, env=harness_env(FAKE_SLEEP="3", FAKE_CHILD="1"))
    try:
        records = wait_for_ranks(run)
        time.sleep(4)  # into epoch 2: epoch 1 is saved
        code, _, err = finish(repro_train(upstream, run, "--resume", str(run)))
        assert code == 5 and "in use by live process" in err
        assert len(manifest(run)["segments"]) == 1, "a refused resume must not touch the manifest"
        records = lock_pids(run)
        first.send_signal(signal.SIGINT)
        code, out, err = finish(first)
    finally:
        if first.poll() is None:
            first.kill()
    assert code == 130, err
    assert "interrupted" in err.splitlines()[-1]
    assert len([r for r in records if "tools/train.py" in r["cmdline"]]) >= 2
    assert_all_gone(records)
    data = manifest(run)
    assert data["status"] == "interrupted" and data["segments"][0]["signal"] == "SIGINT"
    log_before = (run / "output" / "train.log").read_text()
    worker_before = (run / "launcher" / "workerlog.0").read_text()

    code, out, err = finish(repro_train(upstream, run, "--resume", str(run)))
    assert code == 0, err
    data = manifest(run)
    assert [s["kind"] for s in data["segments"]] == ["start", "resume"]
    assert data["status"] == "completed"
    assert data["segments"][1]["resumed_from"] == str(run / "output" / "latest")
    log_after = (run / "output" / "train.log").read_text()
    assert log_after.startswith(log_before) and f"checkpoints : {run / 'output' / 'latest'}" in log_after
    assert "[Eval][Epoch 3][Avg]" in log_after and log_after.count("[Eval][Epoch 1][Avg]") == 1
    assert (run / "launcher" / "workerlog.0").read_text().startswith(worker_before)


def test_sigterm_kills_ranks_that_ignore_it_by_pid(upstream: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = repro_train(upstream, run, env=harness_env(FAKE_HANG="1", FAKE_CHILD="1"))
    try:
        records = wait_for_ranks(run)
        records = lock_pids(run)
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, err
    assert "killed by PID" in err
    assert_all_gone(records)
    assert manifest(run)["segments"][0]["killed_by_pid"]


def test_resume_skips_a_half_written_latest_and_true_best_survives(upstream: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = harness_env(FAKE_TOP1="0.2,0.9,0.3,0.4,0.5", FAKE_CRASH_EPOCH="4", FAKE_CRASH_RANK="0")
    code, _, err = finish(repro_train(upstream, run, "-o", "Global.epochs=5", "--keep-checkpoints", "1", env=env))
    assert code == 6, err
    output = run / "output"
    # a crash while upstream rewrote latest: new .pdparams beside the old .pdopt/.pdstates
    time.sleep(0.05)
    (output / "latest.pdparams").write_bytes(b"half")
    env.pop("FAKE_CRASH_EPOCH")
    code, _, err = finish(repro_train(upstream, run, "--resume", str(run), env=env))
    assert code == 0, err
    assert "not using latest: incomplete" in err
    data = manifest(run)
    assert data["segments"][1]["resumed_from"] == str(output / "epoch_3")
    # upstream's reset best let epoch 5 (0.5) overwrite best_model; the true best is epoch 2 (0.9)
    assert b"epoch 5" in (output / "best_model.pdparams").read_bytes()
    assert data["true_best"]["epoch"] == 2 and data["true_best"]["metric"] == pytest.approx(0.9)
    assert (output / "true_best.pdparams").read_bytes() == b"params epoch 2"
    assert not (output / "epoch_2.pdparams").exists()  # retention removed it; true_best keeps the weights


def test_retention_deletes_only_files_this_run_wrote(tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.mkdir()

    def save(epoch: int) -> None:
        for suffix in (".pdparams", ".pdopt", ".pdstates"):
            (output / f"epoch_{epoch}{suffix}").write_bytes(b"x")

    save(1)  # there before the run: never ours
    before = snapshot(output)
    start = time.time()
    written: dict = {}
    for epoch in range(2, 7):
        save(epoch)
    observe_written(output, 0, start, before, written)
    (output / "epoch_3.pdopt").write_bytes(b"changed by someone else")  # no longer the file we saw
    deleted, foreign = prune(output, 2, written)
    left = sorted(p.name.split(".")[0] for p in output.iterdir())
    assert "epoch_1" in left and "epoch_3" in left and "epoch_2" not in left and "epoch_4" not in left
    assert {"epoch_5", "epoch_6"} <= set(left)
    assert foreign == ["epoch_1", "epoch_3"] and "epoch_2.pdparams" in deleted


def test_checkpoint_completeness_and_resume_point(tmp_path: Path) -> None:
    def save(name: str, t: float, sizes=(1, 1, 1)) -> None:
        for offset, (suffix, size) in enumerate(zip((".pdparams", ".pdopt", ".pdstates"), sizes)):
            path = tmp_path / f"{name}{suffix}"
            path.write_bytes(b"x" * size)
            os.utime(path, (t + offset, t + offset))

    save("epoch_2", 100)
    save("epoch_3", 200)
    save("latest", 300)
    assert resume_point(tmp_path).name == "latest"
    os.utime(tmp_path / "latest.pdparams", (400, 400))  # rewritten after .pdstates: interrupted save
    assert check_complete(tmp_path / "latest")[0] is False
    assert resume_point(tmp_path).name == "epoch_3"
    save("epoch_3", 200, sizes=(1, 0, 1))
    assert resume_point(tmp_path).name == "epoch_2"
    (tmp_path / "epoch_2.pdstates").unlink()
    assert resume_point(tmp_path) is None


def test_a_later_complete_best_model_beats_an_older_latest_after_a_full_disk(tmp_path: Path) -> None:
    # The disk filled while epoch_5 and latest were being written; best_model of epoch 5 was saved first.
    import pickle


    def save(name: str, epoch: int, t: float, states: bool = True) -> None:
        for offset, suffix in enumerate((".pdparams", ".pdopt", ".pdstates")):
            path = tmp_path / f"{name}{suffix}"
            if suffix == ".pdstates" and not states:
                continue
            path.write_bytes(pickle.dumps({"metric": 0.5, "epoch": epoch}) if suffix == ".pdstates" else b"x")
            os.utime(path, (t + offset, t + offset))

    save("latest", 4, 100)
    save("epoch_4", 4, 90)
    save("best_model", 5, 200)
    save("epoch_5", 5, 210, states=False)  # incomplete: no .pdstates
    assert resume_point(tmp_path).name == "best_model" and resume_point(tmp_path).epoch == 5
    save("true_best", 3, 50)
    assert resume_point(tmp_path).name == "best_model"
    (tmp_path / "best_model.pdopt").write_bytes(b"")  # best_model broken too: the older latest it is
    assert resume_point(tmp_path).name == "latest"


def test_manifest_write_is_atomic(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "manifest.json"
    rundir.write_manifest(path, {"status": "running"})

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    with pytest.raises(OSError):
        rundir.write_manifest(path, {"status": "completed"})
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary left behind


def test_stale_lock_is_taken_over(upstream: Path, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.lock.write_text(json.dumps({"processes": [{"pid": dead.pid, "create_time": 1.0, "cmdline": ["x"], "role": "rank"}]}))
    messages: list[str] = []
    RunLock(run).acquire(messages.append)
    assert "stale lock" in messages[0]
    assert json.loads(run.lock.read_text())["processes"][0]["pid"] == os.getpid()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ranks_stop_when_the_harness_itself_is_killed(upstream: Path, tmp_path: Path) -> None:
    """SIGKILL cannot be caught: the launcher's parent-death signal must still stop the ranks."""
    run = tmp_path / "run"
    proc = repro_train(upstream, run, env=harness_env(FAKE_SLEEP="30"))
    records: list[dict] = []
    try:
        wait_for_ranks(run)
        records = lock_pids(run)[1:]  # launcher and ranks (the first entry is the harness)
        proc.kill()
        proc.communicate(timeout=10)
        deadline = time.monotonic() + 20
        while live(records) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert_all_gone(records)
    finally:
        for process in live(records):  # never leave the test's processes behind, even on failure
            process.kill()


def live(records: list[dict]) -> list[psutil.Process]:
    found = []
    for record in records:
        try:
            process = psutil.Process(record["pid"])
            if abs(process.create_time() - record["create_time"]) < 1 and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


def test_a_dropped_ssh_session_does_not_stop_training(upstream: Path, tmp_path: Path) -> None:
    """Under a real pseudo-terminal whose master is closed mid-run (the SSH session drops): the harness
    gets SIGHUP, keeps training, writes on into console.log, and completes the run and its record."""
    run = tmp_path / "run"
    env = harness_env(FAKE_SLEEP="0.8")
    argv = [sys.executable, "-m", "repro", "train", "--upstream", str(upstream), "--platform", "cpu",
            "--skip-preflight", "--run-dir", str(run), "-o", "Global.epochs=4"]
    pid, master = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.execve(argv[0], argv, env)
    try:
        wait_for_ranks(run)
        os.close(master)  # the terminal goes away: the kernel sends SIGHUP to the session
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("repro train did not finish after the hangup")
    finally:
        try:
            os.close(master)
        except OSError:
            pass
    assert os.waitstatus_to_exitcode(status) == 0
    data = manifest(run)
    assert data["status"] == "completed" and len(data["segments"]) == 1
    console = (run / "console.log").read_text()
    assert "hangup: the terminal is gone" in console and "training completed" in console
    assert "[Eval][Epoch 4]" in (run / "output" / "train.log").read_text()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MB tmpfs, as root; skipped with the reason where mounting is not possible."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full-disk test needs root to mount a small tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize)
        except OSError:
            pass
        try:
            while handle.write(b"\0" * 512):
                pass
        except OSError:
            pass
    return filler


def test_a_full_disk_mid_run_is_one_line_and_resume_continues_from_the_newest_complete_save(
        upstream: Path, small_disk: Path) -> None:
    run = small_disk / "run"
    proc = repro_train(upstream, run, "-o", "Global.epochs=4", env=harness_env(FAKE_SLEEP="1.5"))
    deadline = time.monotonic() + 60
    while not (run / "output" / "latest.pdstates").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    filler = fill(small_disk)  # the disk fills during epoch 2
    code, _, err = finish(proc, timeout=90)
    assert code == 6, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"repro train --resume {run}" in last and "internal error" not in err
    assert not list(run.rglob("*.tmp")), "temporaries of a failed write are removed"
    assert not list(run.rglob(".*.tmp"))
    filler.unlink()
    code, _, err = finish(repro_train(upstream, run, "--resume", str(run)), timeout=90)
    assert code == 0, err
    assert "resuming from" in err
    data = manifest(run)
    assert data["status"] == "completed"
    assert data["segments"][0]["status"] in ("failed", "abandoned")
    assert "[Eval][Epoch 4]" in (run / "output" / "train.log").read_text()


def test_gpus_on_the_cpu_venv_name_the_gpu_platforms_to_pass(upstream: Path, tmp_path: Path) -> None:
    # README step 4 on the cpu venv that `make smoke` builds: the line says how to name a GPU platform.
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["train", "--dry-run", "--gpus", "0,1,2,3", "--platform", "cpu", "--upstream", str(upstream)])
    assert result.exit_code == 2
    assert "PLATFORM=" in result.stderr and "ixuca-bi-v150-sdk4.2.0" in result.stderr and "nvidia-cuda" in result.stderr
    fixed = CliRunner(mix_stderr=False).invoke(
        cli, ["train", "--dry-run", "--gpus", "0,1,2,3", "--platform", "ixuca-bi-v150-sdk4.2.0", "--upstream",
              str(upstream), "--logs-dir", str(tmp_path / "logs")])
    assert fixed.exit_code == 0, fixed.stderr
