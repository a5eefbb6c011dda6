"""``repro eval`` and check-accuracy's standalone comparison, against the upstream test double
(``tests/doubles/fake_eval.py`` as ``tools/eval.py``) under the real paddle launcher; and the command
an eval runs, built from a training manifest."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.commands.evaluate import eval_command, eval_environment
from repro.run.rundir import RunDir
from repro.launch.command import EnvChanges, build_command
from tests.conftest import repro_here
from tests.doubles import make_fake_checkout
from tests.launch.test_train_launcher import finish, harness_env, manifest, repro_train

VAL_IMAGES = 40


# Set up once: its shared fixture is not function-scoped, so one xdist worker runs the whole module.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """One completed 3-epoch run of the double (top-1 0.25, 0.5, 0.375: the best is epoch 2, not the last)."""
    root = tmp_path_factory.mktemp("eval")
    upstream = make_fake_checkout(root / "upstream")
    val = upstream / "dataset" / "ILSVRC2012" / "val_list.txt"
    val.parent.mkdir(parents=True)
    val.write_text("".join(f"val/{i}.jpg {i % 4}\n" for i in range(VAL_IMAGES)))
    run = root / "run"
    code, _, err = finish(repro_train(upstream, run, "-o", "Global.epochs=3", "--seed", "5",
                                      env=harness_env(FAKE_TOP1="0.25,0.5,0.375")), timeout=300)
    assert code == 0, err
    return upstream, run


def repro(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro", *args], env=harness_env(FAKE_TOP1="0.25,0.5,0.375", **env),
                          capture_output=True, text=True, timeout=300)


def here(*args: str) -> subprocess.CompletedProcess:
    """A command that starts no training or eval, in this process (tests.conftest.repro_here)."""
    return repro_here(*args, env=harness_env(FAKE_TOP1="0.25,0.5,0.375"))


def check(run: Path, *extra: str) -> subprocess.CompletedProcess:
    return here("check-accuracy", str(run), "--target", "0.4", "--eval-set-size", str(VAL_IMAGES), *extra)


def test_eval_scores_the_true_best_and_check_accuracy_compares_both_numbers(trained) -> None:
    upstream, run = trained
    missing = check(run, "--require-eval")
    assert missing.returncode == 2, missing.stdout
    assert "--require-eval: no standalone eval of the judged epoch 2" in missing.stdout

    done = repro("eval", str(run))
    assert done.returncode == 0, done.stderr
    assert "eval true_best (epoch 2" in done.stdout and "top1 0.50000" in done.stdout
    record = manifest(run)["evaluations"][-1]
    weights = run / "output" / "true_best.pdparams"
    assert record["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (record["checkpoint"], record["epoch"], record["top1"], record["eval_set_size"]) == ("true_best", 2, 0.5, VAL_IMAGES)
    assert record["status"] == "completed" and record["exit_code"] == 0 and record["ended"]
    out = Path(record["dir"])
    assert out.parent == run / "eval" and out.name.startswith("true_best-")
    assert "Pod completed" in (out / "console.log").read_text() or (out / "console.log").stat().st_size > 0
    assert "[Eval][Epoch 0][Avg]" in (out / "output" / "eval.log").read_text()
    assert (out / "launcher" / "workerlog.0").is_file()
    argv = record["command"]["argv"]
    assert argv[1:4] == ["-u", "-m", "paddle.distributed.launch"] and "tools/eval.py" in argv
    assert f"Global.pretrained_model={run / 'output' / 'true_best'}" in argv
    assert f"Global.output_dir={out / 'output'}" in argv and not any(a.startswith("Global.seed") for a in argv)
    assert not (run / ".lock").exists()

    agreed = check(run, "--require-eval", "--json")
    verdict = json.loads(agreed.stdout)
    assert agreed.returncode == 0, agreed.stdout
    assert verdict["standalone"]["agree"] and verdict["standalone"]["value"] == verdict["standalone"]["logged"] == 0.5
    text = check(run).stdout
    assert "standalone eval (true_best, epoch 2, tools/eval.py): top1 0.50000 vs logged 0.50000" in text


def test_a_disagreeing_standalone_eval_is_flagged_and_fails_under_require_eval(trained) -> None:
    _, run = trained
    # 0.5 vs 0.3 on 40 images: 2 standard errors at p = 0.4 are 0.155, so this disagrees
    done = repro("eval", str(run), "--checkpoint", "epoch_2", FAKE_EVAL_DELTA="-0.2")
    assert done.returncode == 0, done.stderr
    flagged = check(run)
    assert flagged.returncode == 0 and "warning: the standalone eval of epoch 2 (0.30000) disagrees" in flagged.stdout
    failed = check(run, "--require-eval")
    assert failed.returncode == 1 and failed.stdout.startswith("FAIL top1 0.50000 >= ")  # the verdict line first
    # a later agreeing eval of the same epoch is the one compared
    assert repro("eval", str(run), "--checkpoint", "epoch_2", FAKE_EVAL_DELTA="0.1").returncode == 0
    assert check(run, "--require-eval").returncode == 0


def test_a_failing_eval_is_recorded_and_exits_6(trained) -> None:
    _, run = trained
    before = len(manifest(run)["evaluations"])
    done = repro("eval", str(run), "--checkpoint", "latest", FAKE_EVAL_FAIL="1")
    assert done.returncode == 6, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: tools/eval.py exited")
    records = manifest(run)["evaluations"]
    assert len(records) == before + 1 and records[-1]["status"] == "failed" and records[-1]["top1"] is None


def test_bad_checkpoints_and_non_runs_are_refused_in_one_line(trained, tmp_path: Path) -> None:
    _, run = trained
    runner = CliRunner()
    for args, code, needle in (
        ([str(run), "--checkpoint", "../x"], 2, "is not a checkpoint name"),
        ([str(run), "--checkpoint", "epoch_9"], 2, "epoch_9.pdparams does not exist (checkpoints here: "),
        ([str(tmp_path)], 2, "is not a repro run directory"),
        ([str(run), "--gpus", "0", "--cpu-ranks", "2"], 2, "exclude each other"),
    ):
        result = runner.invoke(cli, ["eval", *args])
        assert result.exit_code == code, result.output
        assert result.output.count("\n") == 1 and needle in result.output, result.output


def test_eval_is_refused_while_the_run_trains(trained) -> None:
    _, run = trained
    fd = os.open(run / ".lock", os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = CliRunner().invoke(cli, ["eval", str(run)])
    finally:
        os.close(fd)
        (run / ".lock").unlink()
    assert result.exit_code == 5 and "is in use" in result.output  # no record: the holder is not guessed


def copy_run(run: Path, where: Path, status: str | None = None) -> Path:
    """A copy of the run (mtimes kept, as ``cp -a``) before any eval, optionally with another manifest status."""
    copy = where / "run"
    shutil.copytree(run, copy, symlinks=True, ignore=shutil.ignore_patterns("eval"))
    data = manifest(copy)
    data.pop("evaluations", None)
    data["status"] = status or data["status"]
    (copy / "manifest.json").write_text(json.dumps(data))
    return copy


def replace(target: Path, source: Path, keep_mtime: bool) -> None:
    """Someone's ``cp source target`` (with ``touch -r target`` when ``keep_mtime``: size and mtime as recorded)."""
    before = target.stat()
    target.write_bytes(source.read_bytes()[: before.st_size].ljust(before.st_size, b"x"))
    if keep_mtime:
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_training_records_the_digest_of_every_checkpoint_file_it_keeps(trained) -> None:
    _, run = trained
    written = manifest(run)["checkpoints_written"]
    kept = sorted(p.name for p in (run / "output").iterdir() if p.suffix in (".pdparams", ".pdopt", ".pdstates"))
    assert kept and sorted(written) == kept
    for name in kept:
        assert written[name]["sha256"] == hashlib.sha256((run / "output" / name).read_bytes()).hexdigest(), name


@pytest.mark.parametrize("target,source,keep_mtime", [
    ("true_best.pdparams", "latest.pdparams", False),  # the cp latest -> true_best
    ("true_best.pdparams", "epoch_1.pdparams", True),  # same size, mtime put back (touch -r)
    ("true_best.pdstates", "latest.pdstates", True),  # the state that labels the epoch
    ("epoch_2.pdparams", "epoch_3.pdparams", True),
])
def test_a_replaced_checkpoint_is_refused_by_eval_require_eval_resume_and_prune(
        trained, tmp_path: Path, target: str, source: str, keep_mtime: bool) -> None:
    _, run = trained
    copy = copy_run(run, tmp_path, status="interrupted")
    output = copy / "output"
    replace(output / target, output / source, keep_mtime)
    name = target.split(".")[0]
    refused = repro("eval", str(copy), "--checkpoint", name)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and f"error: {output / target} is not the file training wrote" in refused.stderr
    assert "repro eval" in refused.stderr
    assert not (copy / "eval").exists() and "evaluations" not in manifest(copy)
    required = check(copy, "--require-eval")
    assert required.returncode == 2 and "--require-eval: no standalone eval of the judged epoch 2" in required.stdout
    # the resume point: latest here; a replaced one stops the resume, naming it
    replace(output / "latest.pdopt", output / "epoch_1.pdopt", True)
    resume = here("train", "--resume", str(copy), "--dry-run")
    assert resume.returncode == 2 and f"error: {output / 'latest.pdopt'} is not the file training wrote" in resume.stderr
    assert "resuming from" not in resume.stderr
    # prune leaves a changed file alone and says so
    pruned = here("runs", "prune", str(copy), "--including", "latest", "--including", "true_best")
    assert pruned.returncode == 0, pruned.stderr
    assert (output / target).exists() and f"kept {target}: changed since training wrote it" in pruned.stdout
    assert (output / "latest.pdopt").exists() and not (output / "latest.pdparams").exists()


def test_require_eval_counts_only_weights_whose_digest_training_recorded(trained, tmp_path: Path) -> None:
    _, run = trained
    copy = copy_run(run, tmp_path)
    data = manifest(copy)
    del data["checkpoints_written"]["true_best.pdparams"]["sha256"]  # as a run from before digests
    (copy / "manifest.json").write_text(json.dumps(data))
    done = repro("eval", str(copy))
    assert done.returncode == 0, done.stderr
    assert "has no digest recorded by training" in done.stderr and "unverified" in done.stdout
    assert manifest(copy)["evaluations"][-1]["weights_verified"] is False
    judged = check(copy, "--require-eval")
    assert judged.returncode == 2 and "weights whose digest training did not record" in judged.stdout
    assert check(copy).returncode == 0  # without --require-eval the verdict stands on the log


def test_eval_command_is_the_training_command_with_eval_py_and_the_weights(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train = build_command(upstream_dir=tmp_path / "up", entry="tools/train.py", config_arg=str(run / "smoke-config.yaml"),
                          reference_config="ppcls/configs/x.yaml", reference_overrides=["Arch.pretrained=False"],
                          device="gpu", run_dir=run, gpus=[0, 1, 2, 3], extra_overrides=["Global.epochs=5"],
                          harness_overrides=["Optimizer.lr.learning_rate=0.05"], seed=3)
    train = train.with_override("Global.checkpoints", str(run / "output" / "latest"))
    data = {"command": train.to_manifest(), "devices": {"gpus": [0, 1, 2, 3], "cpu_ranks": None},
            "platform": {"name": "nvidia-cuda"}}
    out = run / "eval" / "true_best-x"
    command = eval_command(RunDir(run), data, run / "output" / "true_best", out, [2, 3], None)
    texts = [t.text for t in command.tokens]
    assert texts[:5] == ["python3", "-u", "-m", "paddle.distributed.launch", "--gpus=2,3"]
    assert texts[texts.index("-c") + 1] == str(run / "smoke-config.yaml") and "tools/eval.py" in texts
    overrides = [texts[i + 1] for i, t in enumerate(texts) if t == "-o"]
    assert overrides == ["Arch.pretrained=False", "Global.device=gpu", "Global.epochs=5",
                         "Optimizer.lr.learning_rate=0.05", f"Global.pretrained_model={run / 'output' / 'true_best'}",
                         f"Global.output_dir={out / 'output'}"]
    assert texts[texts.index("--log_dir") + 1] == str(out / "launcher") and command.cwd == tmp_path / "up"
    same_devices = eval_command(RunDir(run), data, run / "output" / "latest", out, None, None)
    assert "--gpus=0,1,2,3" in [t.text for t in same_devices.tokens]
    env = eval_environment(data, [2, 3])
    assert isinstance(env, EnvChanges) and env.set["CUDA_VISIBLE_DEVICES"] == "2,3"


@pytest.mark.parametrize("lose", ["prune", "rm", "half-written"])
def test_resume_refuses_to_start_again_from_epoch_1_once_the_run_has_progressed(trained, tmp_path: Path, lose: str) -> None:
    _, run = trained
    copy = copy_run(run, tmp_path, status="interrupted")
    output = copy / "output"
    kept = here("runs", "prune", str(copy))  # the resume point and the judged weights stay
    assert kept.returncode == 0 and "kept latest.*: the resume point, epoch 3" in kept.stdout
    if lose == "prune":
        assert here("runs", "prune", str(copy), "--including", "latest", "--including", "true_best").returncode == 0
    else:
        for path in output.glob("*.pd*"):
            if lose == "rm" or path.suffix == ".pdstates":
                path.unlink()
    resume = here("train", "--resume", str(copy), "--dry-run")
    assert resume.returncode == 2, resume.stderr
    assert resume.stderr.strip().splitlines()[-1].startswith(f"error: {copy} trained through epoch 3 and saved checkpoints, "
                                                           "but no complete one is left")
    assert "starts again from epoch 1" not in resume.stderr


def test_a_run_that_never_completed_a_save_starts_again_and_says_so(trained, tmp_path: Path) -> None:
    _, run = trained
    copy = copy_run(run, tmp_path, status="interrupted")
    for path in (copy / "output").glob("*.pd*"):
        path.unlink()
    log = copy / "output" / "train.log"
    log.write_text("".join(line for line in log.read_text().splitlines(keepends=True) if "Already save" not in line))
    data = manifest(copy)
    data.update(checkpoints_written={}, true_best=None)
    (copy / "manifest.json").write_text(json.dumps(data))
    resume = here("train", "--resume", str(copy), "--dry-run")
    assert resume.returncode == 0, resume.stderr
    assert "no complete checkpoint yet: the run starts again from epoch 1" in resume.stderr


def test_resume_from_an_older_state_says_which_epochs_are_trained_again(trained, tmp_path: Path) -> None:
    _, run = trained
    copy = copy_run(run, tmp_path, status="interrupted")
    assert here("runs", "prune", str(copy), "--including", "latest").returncode == 0  # true_best (epoch 2) stays
    resume = here("train", "--resume", str(copy), "--dry-run")
    assert resume.returncode == 0, resume.stderr
    assert "resuming from" in resume.stderr and "true_best (epoch 2)" in resume.stderr
    assert "the run had trained through epoch 3, so epochs 3-3 are trained again" in resume.stderr
