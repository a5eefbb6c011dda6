"""``repro runs`` and ``repro runs prune``: list runs; free only the checkpoints the harness wrote."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pickle
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from repro.commands import runs as runs_module
from repro.commands import smoke as smoke_module
from repro.run.lock import is_active
from repro.run.rundir import Manifest
from repro.cli import cli
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, ReproError
from tests.doubles import make_fake_checkout
from tests.logfakes import standard_run


def checkpoint(output: Path, name: str, size: int = 1000) -> dict:
    path = output / name
    path.write_bytes(b"\0" * size)
    info = path.stat()
    return {"segment": 0, "mtime_ns": info.st_mtime_ns, "size": info.st_size}


def make_run(logs: Path, name: str, smoke: bool = True, status: str = "completed") -> Path:
    """A finished run: logs, a manifest recording latest and epoch_3 as written, plus files it did not write."""
    manifest = {"recipe": {"name": "resnest50"}, "status": status, "smoke": smoke,
                "target": {"metric": "top1", "value": 0.5, "eval_set_size": 32, "tolerance": 0.0}}
    run = standard_run(logs / name, manifest=manifest)
    output = run / "output"
    written = {name: checkpoint(output, name) for name in ("latest.pdparams", "latest.pdopt", "epoch_3.pdparams")}
    checkpoint(output, "epoch_2.pdparams")  # copied in by someone: not in the record
    changed = checkpoint(output, "best_model.pdparams")
    written["best_model.pdparams"] = {**changed, "size": 1}  # rewritten since it was recorded: not ours any more
    written["../manifest.json"] = {"size": 1, "mtime_ns": 1}  # a forged name must never reach outside output/
    (output / "link.pdparams").symlink_to(output / "epoch_2.pdparams")
    written["link.pdparams"] = {"size": (output / "link.pdparams").lstat().st_size,
                                "mtime_ns": (output / "link.pdparams").lstat().st_mtime_ns}
    Manifest.load(run / "manifest.json").update(checkpoints_written=written)
    return run


def invoke(*args: str):
    result = CliRunner(mix_stderr=False).invoke(cli, ["runs", *args])
    assert "Traceback" not in result.stdout + result.stderr
    return result


def files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*")}


def test_runs_lists_status_recipe_verdict_and_size(tmp_path: Path) -> None:
    make_run(tmp_path / "logs", "smoke-1")
    make_run(tmp_path / "logs", "big", smoke=False, status="interrupted")
    (tmp_path / "logs" / "not-a-run").mkdir()
    result = invoke("--logs-dir", str(tmp_path / "logs"))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", "status", "recipe", "verdict", "size"]
    assert len(lines) == 3 and "not-a-run" not in result.stdout
    smoke = next(line for line in lines if "smoke-1" in line)
    assert "completed" in smoke and "resnest50 (smoke)" in smoke and "PASS" in smoke and "KB" in smoke
    assert "interrupted" in next(line for line in lines if "big" in line)
    missing = invoke("--logs-dir", str(tmp_path / "nothing"))
    assert missing.exit_code == EXIT_BAD_INPUT and len(missing.stderr.splitlines()) == 1


def test_prune_deletes_only_recorded_unchanged_checkpoints(tmp_path: Path) -> None:
    run = make_run(tmp_path / "logs", "smoke-1")
    before = files(run)
    dry = invoke("prune", str(run), "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "would delete 3 checkpoint file(s), 3.0 KB" in dry.stdout and files(run) == before
    done = invoke("prune", str(run))
    assert done.exit_code == 0 and "deleted 3 checkpoint file(s)" in done.stdout
    gone = before - files(run)
    assert gone == {"output/latest.pdparams", "output/latest.pdopt", "output/epoch_3.pdparams"}
    # logs, manifest, the copied-in, the changed and the linked files stay
    for kept in ("manifest.json", "output/train.log", "launcher/workerlog.0", "output/epoch_2.pdparams",
                 "output/best_model.pdparams", "output/link.pdparams"):
        assert (run / kept).exists() or (run / kept).is_symlink(), kept


def test_prune_smoke_takes_only_finished_smoke_runs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    smoke = make_run(logs, "smoke-1")
    real = make_run(logs, "real", smoke=False)
    unfinished = make_run(logs, "smoke-2", status="running")
    result = invoke("--logs-dir", str(logs), "prune", "--smoke")
    assert result.exit_code == 0, result.stderr
    assert not (smoke / "output" / "latest.pdparams").exists()
    assert (real / "output" / "latest.pdparams").exists() and (unfinished / "output" / "latest.pdparams").exists()


def test_prune_refuses_a_running_run_and_bad_operands(tmp_path: Path) -> None:
    run = make_run(tmp_path / "logs", "smoke-1")
    fd = os.open(run / ".lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what repro train holds for a whole segment
    try:
        result = invoke("prune", str(run))
        assert result.exit_code == EXIT_CONFLICT and "is running (its .lock is held)" in result.stderr
        assert (run / "output" / "latest.pdparams").exists()
        assert "running" in invoke("--logs-dir", str(tmp_path / "logs")).stdout
    finally:
        os.close(fd)
    (run / ".lock").unlink()
    assert invoke("prune").exit_code == EXIT_BAD_INPUT
    not_run = invoke("prune", str(tmp_path))
    assert not_run.exit_code == EXIT_BAD_INPUT and "is not a repro run directory" in not_run.stderr


def test_the_smoke_keeps_fewer_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(smoke_module, "ensure_patched", lambda path: [])
    monkeypatch.setattr(smoke_module, "run_step", lambda argv: calls.append(argv) or 0)
    smoke_module.main(["--upstream", str(make_fake_checkout(tmp_path / "up")), "--data-dir", str(tmp_path / "data"),
                "--logs-dir", str(tmp_path / "logs")])
    train, evaluate, check, prune = calls
    assert evaluate[3] == "eval" and check[3] == "check-accuracy"
    assert train[train.index("--keep-checkpoints") + 1] == "1"
    assert prune[3:6] == ["runs", "prune", train[train.index("--run-dir") + 1]]  # only after a PASS


def test_prune_refuses_a_run_whose_recorded_processes_live(tmp_path: Path) -> None:
    """A SIGKILLed harness leaves its ranks running and holding no flock: the lock file's record tells."""
    run = make_run(tmp_path / "logs", "smoke-1")
    me = psutil.Process()
    (run / ".lock").write_text(json.dumps({"processes": [
        {"pid": me.pid, "create_time": me.create_time(), "cmdline": [], "role": "rank"}]}))
    result = invoke("prune", str(run))
    assert result.exit_code == EXIT_CONFLICT and (run / "output" / "latest.pdparams").exists()
    (run / ".lock").write_text(json.dumps({"processes": [{"pid": me.pid, "create_time": 1.0, "cmdline": [], "role": "rank"}]}))
    assert invoke("prune", str(run)).exit_code == 0  # a reused PID is not that process
    assert not (run / "output" / "latest.pdparams").exists() and (run / ".lock").exists()  # not ours to remove


def test_prune_holds_the_lock_while_deleting_and_leaves_no_lock_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "logs", "smoke-1")
    seen = []
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self.suffix == ".pdparams":
            fd = os.open(run / ".lock", os.O_RDONLY)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append(self.name)
            finally:
                os.close(fd)
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert invoke("prune", str(run)).exit_code == 0
    assert seen and not (run / ".lock").exists()
    assert is_active(run) is False


def complete_save(output: Path, name: str, epoch: int, metric: float = 0.5) -> dict[str, dict]:
    """One save as upstream writes it (.pdparams, .pdopt, .pdstates last), recorded with its digests."""
    records = {}
    for suffix, data in ((".pdparams", b"w" * 3000), (".pdopt", b"o" * 3000),
                         (".pdstates", pickle.dumps({"metric": metric, "epoch": epoch}))):
        path = output / f"{name}{suffix}"
        path.write_bytes(data)
        info = path.stat()
        records[path.name] = {"segment": 0, "mtime_ns": info.st_mtime_ns, "size": info.st_size,
                              "sha256": hashlib.sha256(data).hexdigest()}
    return records


def progressed_run(logs: Path, name: str, status: str, smoke: bool = False) -> Path:
    """A run that trained 3 epochs: latest (epoch 3), true_best (epoch 2), epoch_2 and epoch_3, all recorded."""
    manifest = {"recipe": {"name": "resnest50"}, "status": status, "smoke": smoke,
                "target": {"metric": "top1", "value": 0.5, "eval_set_size": 32, "tolerance": 0.0},
                "true_best": {"epoch": 2, "metric": 0.5, "checkpoint": "x", "source": "epoch_2", "method": "copy"}}
    run = standard_run(logs / name, manifest=manifest)
    output = run / "output"
    written = {}
    for prefix, epoch in (("epoch_2", 2), ("epoch_3", 3), ("true_best", 2), ("latest", 3)):
        written.update(complete_save(output, prefix, epoch))
    Manifest.load(run / "manifest.json").update(checkpoints_written=written)
    return run


@pytest.mark.parametrize("status", ["interrupted", "failed", "abandoned", "running"])  # running: a SIGKILLed harness
def test_prune_keeps_the_resume_point_and_the_judged_weights_of_an_unfinished_run(tmp_path: Path, status: str) -> None:
    run = progressed_run(tmp_path / "logs", "r", status)
    before = files(run)
    dry = invoke("prune", str(run), "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    listed = [line.strip() for line in dry.stdout.splitlines() if line.startswith("  /")]
    assert sorted(listed) == sorted(str(run / "output" / f"{p}{s}") for p in ("epoch_2", "epoch_3")
                                    for s in (".pdparams", ".pdopt", ".pdstates"))
    assert "kept latest.*: the resume point, epoch 3 (`--including latest` deletes it too)" in dry.stdout
    assert "kept true_best.*: the judged weights, epoch 2" in dry.stdout and files(run) == before
    done = invoke("prune", str(run))
    assert done.exit_code == 0, done.stderr
    assert before - files(run) == {f"output/{line.rsplit('/', 1)[1]}" for line in listed}
    assert all((run / "output" / f"{p}{s}").exists() for p in ("latest", "true_best") for s in (".pdparams", ".pdopt", ".pdstates"))
    # named, they go too
    named = invoke("prune", str(run), "--including", "latest")
    assert named.exit_code == 0 and not (run / "output" / "latest.pdparams").exists()
    assert (run / "output" / "true_best.pdopt").exists()


def test_prune_of_a_completed_run_keeps_only_what_eval_reads_of_the_judged_weights(tmp_path: Path) -> None:
    run = progressed_run(tmp_path / "logs", "r", "completed")
    done = invoke("prune", str(run))
    assert done.exit_code == 0, done.stderr
    left = sorted(p.name for p in (run / "output").iterdir() if p.name != "train.log")
    assert left == ["true_best.pdparams", "true_best.pdstates"]
    assert "kept true_best.*: the judged weights, epoch 2" in done.stdout
    for bad in ("latest,true_best", "../x", "epoch_0"):
        refused = invoke("prune", str(run), "--including", bad)
        assert refused.exit_code == EXIT_BAD_INPUT and "is not a checkpoint name" in refused.stderr


def test_prune_smoke_takes_completed_smoke_runs_only(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    runs = {status: progressed_run(logs, status, status, smoke=True)
            for status in ("completed", "interrupted", "failed", "abandoned", "running")}
    result = invoke("--logs-dir", str(logs), "prune", "--smoke")
    assert result.exit_code == 0, result.stderr
    assert "in 1 run(s)" in result.stdout and not (runs["completed"] / "output" / "latest.pdparams").exists()
    for status, run in runs.items():
        if status != "completed":
            assert all((run / "output" / f"{p}.pdparams").exists() for p in ("latest", "epoch_2", "true_best")), status


@pytest.mark.parametrize("failure", [OSError(13, "Permission denied", "output/latest.pdparams"),
                                     ReproError("it started meanwhile", EXIT_CONFLICT)])
def test_one_run_that_cannot_be_pruned_does_not_stop_the_others(tmp_path: Path, monkeypatch, failure) -> None:
    logs = tmp_path / "logs"
    first, second = make_run(logs, "smoke-1"), make_run(logs, "smoke-2")
    before = files(second)
    real_plan = runs_module.plan_prune

    def plan(run, named):
        if run.path.name == "smoke-1":
            raise failure
        return real_plan(run, named)

    monkeypatch.setattr(runs_module, "plan_prune", plan)
    result = invoke("--logs-dir", str(logs), "prune", "--smoke")
    assert f"{second}: deleted " in result.stdout and files(second) != before  # the other run was pruned
    assert result.stderr.startswith(f"{first}: error: ") and "1 of 2 run(s) could not be pruned" in result.stderr
    assert result.exit_code == (EXIT_CONFLICT if isinstance(failure, ReproError) else EXIT_BAD_INPUT)


def test_runs_lists_every_run_though_one_manifest_is_broken(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    make_run(logs, "smoke-1")
    broken = make_run(logs, "smoke-2")
    (broken / "manifest.json").write_bytes(b"\xff\xfe not json")
    result = invoke("--logs-dir", str(logs))
    assert result.exit_code == 0, result.stderr
    rows = {Path(line.split()[0]).name: line.split() for line in result.stdout.splitlines()[1:]}
    assert rows["smoke-2"][1] == "unreadable" and "UNREADABLE" in rows["smoke-2"] and "PASS" in rows["smoke-1"]
    listed = json.loads(invoke("--logs-dir", str(logs), "--json").stdout)
    assert [r["verdict"] for r in listed["runs"]] == ["PASS", "UNREADABLE"]
