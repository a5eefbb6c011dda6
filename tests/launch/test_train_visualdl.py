"""``repro train --visualdl``: upstream's own VisualDL logging, recorded as a logging option (never a
deviation from the reference); the value is the harness's, so ``-o Global.use_visualdl`` is refused.
And ``--data-dir``, the other harness option that is not a training setting: where the data lies."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import repro_here
from tests.doubles import make_fake_checkout
from tests.launch.test_train_launcher import finish, harness_env, manifest, repro_train


def test_visualdl_is_a_harness_override_in_the_plan(tmp_path: Path) -> None:
    upstream = make_fake_checkout(tmp_path / "upstream")
    done = repro_here("train", "--upstream", str(upstream), "--platform", "cpu", "--dry-run", "--visualdl",
                      "--run-dir", str(tmp_path / "run"), env=harness_env())
    assert done.returncode == 0, done.stderr
    assert "[harness: -o Global.use_visualdl=True" in done.stdout


def test_data_dir_points_both_loaders_elsewhere_as_a_harness_override(tmp_path: Path) -> None:
    upstream = make_fake_checkout(tmp_path / "upstream")
    data = tmp_path / "tiny"
    data.mkdir()
    done = repro_here("train", "--upstream", str(upstream), "--platform", "cpu", "--dry-run", "--data-dir", str(data),
                      "--run-dir", str(tmp_path / "run"), env=harness_env())
    assert done.returncode == 0, done.stderr
    harness = done.stdout.split("[harness: -o DataLoader.Train.dataset.image_root=", 1)[1]
    assert harness.startswith(f"{data}/ ") and f"-o DataLoader.Eval.dataset.cls_label_path={data}/val_list.txt" in harness


def test_a_users_override_of_it_is_refused_with_the_option_to_use(tmp_path: Path) -> None:
    upstream = make_fake_checkout(tmp_path / "upstream")
    code, _, err = finish(repro_train(upstream, tmp_path / "run", "-o", "Global.use_visualdl=True"))
    assert code == 2 and "use --visualdl" in err.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_the_manifest_records_it_as_logging_and_the_verdict_lists_no_deviation_for_it(tmp_path: Path) -> None:
    upstream = make_fake_checkout(tmp_path / "upstream")
    run = tmp_path / "run"
    code, _, err = finish(repro_train(upstream, run, "--visualdl"), timeout=180)
    assert code == 0, err
    data = manifest(run)
    assert data["logging"] == {"visualdl": True, "visualdl_logdir": str(run / "output"),
                               "open_with": f"visualdl --logdir {run / 'output'} --host 127.0.0.1 --port 8040"}
    assert "Global.use_visualdl=True" in data["command"]["argv"] and not data["overrides"]["user"]
    judged = repro_here("check-accuracy", str(run), "--target", "0.2", "--json", env=harness_env())
    verdict = json.loads(judged.stdout.splitlines()[0])
    assert not any("visualdl" in line for line in verdict["deviations"]), verdict["deviations"]
