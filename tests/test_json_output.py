"""``--json`` on every command that reports something: each prints one parseable JSON document on
stdout (``check-accuracy`` and ``watch`` one object a line), with the keys docs/commands.md documents.
Commands that act rather than report are listed with the command that reports their result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from repro.cli import cli
from tests.test_cli import every_command
from repro.judge.band import Band, shipped_band_path
from tests.doubles import make_fake_checkout
from tests.judge.test_bands import fake_run
from tests.launch.test_train_launcher import finish, harness_env, repro_train

# path of the command -> the keys its JSON object has (for JSON lines: each line's object)
REPORTS: dict[tuple[str, ...], set[str]] = {
    ("doctor",): {"ready", "findings"},
    ("upstream", "status"): {"path", "commit"},
    ("dataset", "check"): {"root", "problems"},
    ("train",): {"run_dir", "command", "env", "notes"},
    ("check-accuracy",): {"status", "value", "target"},
    ("report",): {"kind", "out", "files", "verdict"},
    ("watch",): {"alarms"},
    ("runs",): {"logs_dir", "runs"},
    ("runs", "prune"): {"dry_run", "runs", "freed_bytes"},
    ("band", "check"): {"within", "breach", "epochs_checked"},
    ("recipes",): set(),
    ("recipes", "show"): {"name", "target"},
    ("eval",): {"checkpoint", "epoch", "top1", "dir", "status"},
    ("compare",): {"outcome", "exit_code", "equivalence", "curves", "band", "throughput", "candidates", "references"},
}
# Commands that do something rather than report: where their result is read as JSON instead.
ACTIONS: dict[tuple[str, ...], str] = {
    ("upstream", "lock"): "writes the pin: repro upstream status --json",
    ("upstream", "fetch"): "makes the checkout: repro upstream status --json",
    ("upstream", "apply-patches"): "patches the checkout: repro upstream status --json",
    ("dataset", "link"): "makes the link: repro doctor --json (its dataset finding)",
    ("dataset", "make-tiny"): "writes a dataset: repro dataset check OUT --json",
    ("dataset", "prepare"): "writes a dataset: repro dataset check OUT --json",
    ("band", "build"): "writes the band file (YAML), the data itself",
    ("smoke",): "trains and judges a run: repro check-accuracy logs/RUN --json",
}
# Owned by another helper, landing in parallel: remove from here when it lands.
PENDING: dict[tuple[str, ...], str] = {}


def has_json(command: click.Command) -> bool:
    return any("--json" in param.opts for param in command.params if isinstance(param, click.Option))


def test_every_command_reports_as_json_or_is_an_action_that_names_its_report() -> None:
    commands = {path: command for path, command in every_command(cli)}
    leaves_and_reporting_groups = {path for path, command in commands.items()
                                   if not isinstance(command, click.Group) or command.invoke_without_command}
    assert leaves_and_reporting_groups == set(REPORTS) | set(ACTIONS)
    for path in REPORTS:
        if path not in PENDING:
            assert has_json(commands[path]), f"repro {' '.join(path)} reports but has no --json"
    for path, reason in ACTIONS.items():
        assert not has_json(commands[path]) and "--json" in reason or "YAML" in reason, (path, reason)


# Set up once: its shared fixture is not function-scoped, so one xdist worker runs the whole module.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A finished 2-epoch run of the upstream double under the real paddle launcher, in logs/."""
    root = tmp_path_factory.mktemp("json")
    upstream = make_fake_checkout(root / "upstream")
    val = upstream / "dataset" / "ILSVRC2012" / "val_list.txt"
    val.parent.mkdir(parents=True)
    val.write_text("".join(f"val/{i}.jpg {i % 4}\n" for i in range(40)))
    run = root / "logs" / "run"
    code, _, err = finish(repro_train(upstream, run, "-o", "Global.epochs=2", env=harness_env(FAKE_TOP1="0.25,0.5")),
                          timeout=300)
    assert code == 0, err
    reference = root / "reference"  # another seed's run, for compare
    code, _, err = finish(repro_train(upstream, reference, "-o", "Global.epochs=2",
                                      env=harness_env(FAKE_TOP1="0.5,0.25")), timeout=300)
    assert code == 0, err
    return upstream, run


def parse(stdout: str, lines: bool) -> list[dict]:
    if lines:
        return [json.loads(line) for line in stdout.splitlines() if line.strip()]
    document = json.loads(stdout)
    return document if isinstance(document, list) else [document]


def invoke(*args: str):
    return CliRunner(mix_stderr=False).invoke(cli, list(args), catch_exceptions=False)


def cases(upstream: Path, run: Path, tmp: Path) -> dict[tuple[str, ...], tuple[list[str], set[int]]]:
    """path -> (arguments after the command's path, exit codes that are fine here)."""
    dataset = tmp / "tiny"
    made = invoke("dataset", "make-tiny", str(dataset), "--classes", "2", "--train-per-class", "2",
                  "--val-per-class", "1", "--size", "16")
    assert made.exit_code == 0, made.stderr
    band = Band.load(shipped_band_path("resnest50", smoke=True))
    record = band.runs[0]
    epochs = range(1, band.epochs + 1)
    smoke_run = fake_run(tmp / "smoke-run", [record["top1"][e] for e in epochs],
                         [record["train_loss"][e] for e in epochs])
    return {
        ("doctor",): (["--platform", "cpu", "--upstream", str(upstream), "--logs-dir", str(tmp)], {0, 1}),
        ("upstream", "status"): (["--upstream", str(upstream)], {0, 3}),
        ("dataset", "check"): ([str(dataset), "--class-num", "2"], {0, 1}),
        ("train",): (["--dry-run", "--platform", "cpu", "--upstream", str(upstream), "--skip-preflight",
                      "--run-dir", str(tmp / "planned")], {0}),
        ("check-accuracy",): ([str(run), "--target", "0.4", "--eval-set-size", "40"], {0}),
        ("report",): ([str(run), "--out", str(tmp / "report")], {0, 1}),
        ("watch",): ([str(run), "--once"], {0, 1}),
        ("runs",): (["--logs-dir", str(run.parent)], {0}),
        ("runs", "prune"): ([str(run), "--dry-run"], {0}),
        ("band", "check"): ([str(smoke_run)], {0, 1}),
        ("recipes",): ([], {0}),
        ("recipes", "show"): (["resnest50"], {0}),
        ("compare",): ([str(run), "--reference", str(run.parent.parent / "reference")], {0, 1, 2}),  # 2: NOT SHOWN, one seed a side
    }


def test_each_reporting_command_prints_json_with_its_documented_keys(trained, tmp_path: Path) -> None:
    upstream, run = trained
    all_cases = cases(upstream, run, tmp_path)
    for path, (args, codes) in all_cases.items():
        if path in PENDING:
            continue
        result = invoke(*path, *args, "--json")
        assert result.exit_code in codes, (path, result.exit_code, result.stderr)
        objects = parse(result.stdout, lines=path in {("check-accuracy",), ("watch",)})
        assert objects, (path, result.stdout)
        for item in objects:
            missing = REPORTS[path] - set(item)
            assert not missing, f"repro {' '.join(path)} --json lacks {missing}: {sorted(item)}"
    runs = json.loads(invoke("runs", "--logs-dir", str(run.parent), "--json").stdout)["runs"]
    assert [r["path"] for r in runs] == [str(run)] and runs[0]["verdict"] in ("PASS", "FAIL")
    pruned = json.loads(invoke("runs", "prune", str(run), "--dry-run", "--json").stdout)
    assert pruned["dry_run"] is True and pruned["freed_bytes"] == sum(r["bytes"] for r in pruned["runs"])
    plan = json.loads(invoke("train", *all_cases[("train",)][0], "--json").stdout)
    assert plan["run_dir"] == str(tmp_path / "planned") and "tools/train.py" in " ".join(plan["command"]["argv"])
    assert not (tmp_path / "planned").exists()


def test_train_json_needs_dry_run() -> None:
    result = invoke("train", "--json")
    assert result.exit_code == 2 and "--dry-run" in result.stderr and not result.stdout


def test_eval_json_is_its_record_alone_on_stdout(trained) -> None:
    """Upstream's eval output goes to stderr under --json, so stdout parses as the manifest's record."""
    _, run = trained
    done = subprocess.run([sys.executable, "-m", "repro", "eval", str(run), "--json"], env=harness_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert REPORTS[("eval",)] <= set(record)
    assert record["status"] == "completed" and record["checkpoint"] == "true_best"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["evaluations"][-1]["dir"] == record["dir"]
