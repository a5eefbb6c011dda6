"""Issue 20 §5: messages that misled. Each says what actually holds, happened or would happen: the
command that holds a run, a resume that is refused (no "resuming from" first; a dry run refused as
the resume is), a corrupt pin in a dry run, how to go on after a lost node, a user -o that replaces
a recipe's safeguard."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.core.errors import (EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_PREFLIGHT, EXIT_TRAINING_FAILED, EXIT_UPSTREAM,
                               ReproError)
from repro.core.paths import UPSTREAM_ENV, project_root
from repro.launch.runner import _report
from repro.run.rundir import STATUS_FAILED, RunDir
from repro.upstream.state import inspect_checkout
from repro.upstream import upstream_cli
from tests.conftest import REAL_UPSTREAM_ENV
from tests.doubles import make_fake_checkout
from tests.launch.test_train_robustness import interrupted_run, run, upstream  # noqa: F401 - fixtures

HOLD = ("import sys, time\nfrom pathlib import Path\nfrom repro.run.lock import RunLock\nfrom repro.run.rundir import RunDir\n"
        "RunLock(RunDir(Path(sys.argv[1]))).acquire(lambda text: None)\nprint('held', flush=True)\ntime.sleep(60)")


def holding(run: RunDir, command: str) -> subprocess.Popen:
    """A process that holds the run's lock as ``repro <command>`` would (its command line names it)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(run.path), command], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


def test_a_refusal_names_the_command_that_holds_the_run(run: RunDir, upstream: Path) -> None:
    interrupted_run(run, upstream, {"root": None}, inspect_checkout(upstream).to_manifest())
    runner = CliRunner(mix_stderr=False)
    for command in ("eval", "train"):
        holder = holding(run, command)
        try:
            evaluated = runner.invoke(cli, ["eval", str(run.path)])
            resumed = runner.invoke(cli, ["train", "--resume", str(run.path)])
        finally:
            holder.kill()
            holder.wait()
        assert evaluated.exit_code == EXIT_CONFLICT and f"`repro {command}`" in evaluated.stderr, evaluated.stderr
        other = "train" if command == "eval" else "eval"
        assert f"`repro {other}`" not in evaluated.stderr.replace("`repro watch", ""), evaluated.stderr
        assert resumed.exit_code == EXIT_CONFLICT and f"`repro {command}` holds" in resumed.stderr, resumed.stderr
        assert "resuming from" not in resumed.stderr and "starts again" not in resumed.stderr, resumed.stderr


def test_a_refused_resume_says_so_first_and_its_dry_run_is_refused_alike(run: RunDir, upstream: Path,
                                                                         tmp_path: Path) -> None:
    now = inspect_checkout(upstream).to_manifest()
    interrupted_run(run, upstream, {"root": str(tmp_path / "gone"), "fingerprint": {}},
                    {**now, "commit": "0123456789abcdef"})
    (run.output / "latest.pdparams").write_bytes(b"x")
    runner = CliRunner(mix_stderr=False)
    for extra in ([], ["--dry-run"]):
        result = runner.invoke(cli, ["train", "--resume", str(run.path), *extra])
        assert result.exit_code == EXIT_PREFLIGHT, (extra, result.stdout, result.stderr)
        checks = [line for line in result.stderr.splitlines() if line.startswith("resume check: ")]
        assert len(checks) == 2 and "is gone" in checks[0] and "0123456789abcdef" in checks[1], result.stderr
        assert "resuming from" not in result.stderr and "starts again from epoch 1" not in result.stderr
        assert "+ " not in result.stdout  # no command printed: nothing would run
    assert not run.lock.exists()


def test_a_dry_run_reads_the_pin_as_the_start_does(upstream: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    root = tmp_path / "harness"
    for name in ("patches", "environments"):
        shutil.copytree(project_root() / name, root / name)
    monkeypatch.setenv("REPRO_ROOT", str(root))
    args = ["train", "--dry-run", "--platform", "cpu", "--upstream", str(upstream), "--run-dir", str(tmp_path / "run")]
    runner = CliRunner(mix_stderr=False)
    assert runner.invoke(cli, args).exit_code == 0
    for corrupt in (b"url: [unclosed\n", b"\xff\xfe binary", b"- a list\n- not a mapping\n"):
        (root / "patches" / "UPSTREAM.yaml").write_bytes(corrupt)
        result = runner.invoke(cli, args)
        assert result.exit_code == EXIT_BAD_INPUT, (corrupt, result.stdout, result.stderr)
        assert "UPSTREAM.yaml" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    (root / "patches" / "UPSTREAM.yaml").unlink()
    (root / "patches" / "UPSTREAM.yaml").symlink_to("/dev/zero")
    started = time.monotonic()
    result = runner.invoke(cli, args)
    assert result.exit_code == EXIT_BAD_INPUT and "character device" in result.stderr
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("saved", [False, True])
def test_after_a_failure_on_several_nodes_the_way_on_is_a_resume(run: RunDir, saved: bool) -> None:  # noqa: F811
    if saved:
        for suffix in (".pdparams", ".pdopt", ".pdstates"):
            (run.output / f"latest{suffix}").write_bytes(b"x")
    for extra in ({"failed_rank": None, "launcher_exit_code": 1}, {"failed_rank": 0, "launcher_exit_code": 1}):
        with pytest.raises(ReproError) as caught:
            _report(run, STATUS_FAILED, None, extra, [], several_nodes=True)
        message = caught.value.message
        assert caught.value.exit_code == EXIT_TRAINING_FAILED
        assert "repro train --resume DIR` on each node" in message and str(run.path) in message, message
        assert "start a new run" not in message and "can be removed" not in message, message


def test_a_user_override_of_a_recipe_safeguard_is_said_before_launch(tmp_path: Path) -> None:
    real = os.environ.get(REAL_UPSTREAM_ENV)
    if not real:
        pytest.skip(f"needs the real upstream ({REAL_UPSTREAM_ENV}) for the Swin config")
    runner = CliRunner(mix_stderr=False)
    base = ["train", "--dry-run", "--platform", "cpu", "--recipe", "swin_transformer", "--upstream", real,
            "--run-dir", str(tmp_path / "run")]
    for override, safeguard in (("AMP.use_amp=True", "AMP.use_amp=False"),
                                ("AMP.use_fp16_test=True", "AMP.use_fp16_test=False")):
        result = runner.invoke(cli, [*base, "-o", override])
        assert result.exit_code == 0, result.stderr
        assert f"warning: -o {override} replaces the recipe's safeguard {safeguard}" in result.stderr, result.stderr
    result = runner.invoke(cli, base)
    assert result.exit_code == 0 and "replaces the recipe's safeguard" not in result.stderr


@pytest.fixture
def stand_in_fetch(monkeypatch) -> list[Path]:
    """`repro upstream fetch` without a network: it leaves the test double's checkout at its destination,
    which it records in the list returned."""
    fetched: list[Path] = []

    def fetch(request, say):
        fetched.append(request.dest)
        return inspect_checkout(make_fake_checkout(request.dest))

    monkeypatch.setattr(upstream_cli, "fetch_upstream", fetch)
    return fetched


def test_the_fetch_a_missing_upstream_names_fetches_that_checkout(tmp_path: Path, monkeypatch, stand_in_fetch) -> None:
    """`repro train --upstream DIR` with DIR missing says to run a fetch: typed as printed, from the same
    directory, it must fetch DIR (plain `repro upstream fetch` fetches ./.upstream/PaddleClas instead)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(UPSTREAM_ENV, raising=False)
    wanted = tmp_path / "elsewhere" / "PaddleClas"
    runner = CliRunner(mix_stderr=False)
    train = ["train", "--dry-run", "--platform", "cpu", "--skip-preflight", "--upstream", str(wanted),
             "--run-dir", str(tmp_path / "run")]
    refused = runner.invoke(cli, train)
    assert refused.exit_code == EXIT_UPSTREAM, refused.stderr
    printed = re.search(r"run `(repro upstream fetch[^`]*)`", refused.stderr)
    assert printed, refused.stderr
    followed = runner.invoke(cli, shlex.split(printed.group(1))[1:])
    assert followed.exit_code == 0 and stand_in_fetch == [wanted], (followed.stderr, stand_in_fetch)
    again = runner.invoke(cli, train)
    assert again.exit_code == 0, again.stderr
    doctor = runner.invoke(cli, ["doctor", "--platform", "cpu", "--upstream", str(tmp_path / "gone")])
    fixes = [line.split(" -> ", 1)[1] for line in doctor.stdout.splitlines() if line.startswith("FAIL") and " -> " in line]
    assert fixes and all(f"--upstream {tmp_path / 'gone'}" in fix for fix in fixes if "repro upstream" in fix), fixes


def test_a_checkout_missing_its_config_is_told_to_fetch_a_fresh_one_and_use_it(tmp_path: Path, monkeypatch, stand_in_fetch) -> None:
    """A checkout without the recipe's config: `repro upstream fetch` alone would keep that checkout as it is,
    so the fix fetches a fresh one into NEWDIR and names it with --upstream; followed, the dry run passes."""
    monkeypatch.chdir(tmp_path)
    damaged = make_fake_checkout(tmp_path / "damaged")
    next(damaged.glob("ppcls/configs/**/*.yaml")).unlink()
    runner = CliRunner(mix_stderr=False)
    train = ["train", "--dry-run", "--platform", "cpu", "--skip-preflight", "--run-dir", str(tmp_path / "run")]
    refused = runner.invoke(cli, [*train, "--upstream", str(damaged)])
    assert refused.exit_code == EXIT_UPSTREAM and refused.stderr.count("\n") == 1, refused.stderr
    printed = re.search(r"`(repro upstream fetch --dest NEWDIR)` and pass --upstream NEWDIR", refused.stderr)
    assert printed, refused.stderr
    fresh = tmp_path / "fresh"
    fetched = runner.invoke(cli, shlex.split(printed.group(1).replace("NEWDIR", str(fresh)))[1:])
    assert fetched.exit_code == 0 and stand_in_fetch == [fresh], fetched.stderr
    assert runner.invoke(cli, [*train, "--upstream", str(fresh)]).exit_code == 0


@pytest.mark.parametrize("command", [["eval"], ["train", "--resume"], ["watch", "--once"], ["runs", "prune"]])
@pytest.mark.parametrize("where", ["elsewhere", "logs"])
def test_a_mistyped_run_is_told_a_listing_that_shows_the_real_one(command: list[str], where: str, run: RunDir,
                                                                   upstream: Path, tmp_path: Path, monkeypatch) -> None:
    """The fix for a path that is not a run lists the runs beside it, from where the user stands: under
    ./logs plain `repro runs`, elsewhere with --logs-dir (it once said `ls logs/` wherever runs were)."""
    interrupted_run(run, upstream, {"root": None}, inspect_checkout(upstream).to_manifest())
    parent = tmp_path / where
    parent.mkdir()
    real = run.path.rename(parent / "r50-seed1")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(mix_stderr=False)
    mistyped = runner.invoke(cli, [*command, str(Path(where) / "r50-seed")])
    assert mistyped.exit_code == EXIT_BAD_INPUT, mistyped.stderr
    (fix,) = re.findall(r"`(repro runs[^`]*)`", mistyped.stderr)
    assert ("--logs-dir" in fix) == (where != "logs"), mistyped.stderr
    listed = runner.invoke(cli, shlex.split(fix)[1:])
    assert listed.exit_code == 0 and real.name in listed.stdout, listed.stdout + listed.stderr
