"""The first hour: ``make smoke``, then the README's real-run steps that can run on this machine.

The smoke runs on the upstream test double (``tests/doubles``: upstream's log format, ``-o`` rules
and checkpoint layout under the real paddle launcher) with a patchable ``classification.py``
double; then, as the README orders them: the user's own dataset is checked and linked (no
``--force``: the smoke never occupied ``dataset/ILSVRC2012``), the GPU training is planned with
``--dry-run``, and the smoke run is evaluated and judged again after its checkpoints were pruned
(by the smoke, then down to upstream's own copy of the best weights).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from repro.core.paths import DATASET_LINK
from tests.conftest import repro_here
from tests.doubles import make_fake_checkout
from tests.launch.test_train_launcher import harness_env
from tests.upstream_fixtures import CLASSIFICATION, CLASSIFICATION_DOUBLE

pytestmark = pytest.mark.slow  # two launches of the real paddle launcher: ~40 s on 2 cores

MAX_SMOKE_LINES = 40


def repro(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def after_smoke(tmp_path: Path) -> tuple[Path, Path, dict[str, str], str]:
    """A passed smoke (its terminal output returned) in ``tmp_path`` as a fresh clone would have it."""
    upstream = make_fake_checkout(tmp_path / ".upstream" / "PaddleClas")
    (upstream / CLASSIFICATION).parent.mkdir(parents=True)
    (upstream / CLASSIFICATION).write_text(CLASSIFICATION_DOUBLE)
    env = {**harness_env(), "REPRO_UPSTREAM_DIR": str(upstream)}
    env.pop("REPRO_SMOKE_VERBOSE", None)
    done = subprocess.run([sys.executable, "-m", "repro.commands.smoke"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    shown = done.stdout + done.stderr
    assert done.returncode == 0, shown[-4000:]
    assert "SMOKE PASS" in done.stdout.splitlines()[-1]
    return tmp_path, upstream, env, shown


def test_the_smoke_is_short_and_the_readme_real_run_works_after_it(after_smoke) -> None:
    home, upstream, env, shown = after_smoke
    lines = shown.splitlines()
    assert len(lines) <= MAX_SMOKE_LINES, shown
    assert "Global : " not in shown and "[Train]" not in shown
    (run,) = (home / "logs").iterdir()
    assert "[Train][Epoch 6/6]" in (run / "console.log").read_text()  # upstream's output is all there
    assert not os.path.lexists(upstream / DATASET_LINK)  # the real data's place stays free

    # README step 2: the user's dataset, checked and linked where upstream reads it, without --force.
    mine = home / "my-imagenet"
    assert repro_here("dataset", "make-tiny", str(mine), cwd=home, env=env).returncode == 0
    checked = repro_here("dataset", "check", str(mine), cwd=home, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    linked = repro_here("dataset", "link", str(mine), cwd=home, env=env)
    assert linked.returncode == 0, linked.stderr
    assert os.readlink(upstream / DATASET_LINK) == str(mine)

    # README step 3, the GPU run, planned (no GPU here).
    planned = repro_here("train", "--gpus", "0,1,2,3", "--platform", "nvidia-cuda", "--dry-run", cwd=home, env=env)
    assert planned.returncode == 0, planned.stderr
    assert "--gpus=0,1,2,3" in planned.stdout and "tools/train.py" in planned.stdout

    # README step 4 on the smoke run, after its prune: `repro eval RUN` and `repro check-accuracy RUN` as written.
    data = json.loads((run / "manifest.json").read_text())
    epoch = data["true_best"]["epoch"]
    evaluated = repro("eval", str(run), cwd=home, env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"eval true_best (epoch {epoch}" in evaluated.stdout
    judged = repro_here("check-accuracy", str(run), cwd=home, env=env)
    assert judged.returncode == 0, judged.stdout + judged.stderr
    assert "PASS" in judged.stdout

    # Pruned down to the weights upstream keeps twice (best_model/model.pdparams): eval uses that copy
    # when it holds the true best's epoch, instead of saying "pruned" beside 98 MB of weights.
    pruned = repro_here("runs", "prune", str(run), "--including", "true_best", cwd=home, env=env)
    assert pruned.returncode == 0, pruned.stderr
    assert not (run / "output" / "true_best.pdparams").exists() and (run / "output" / "best_model" / "model.pdparams").is_file()
    evaluated = repro("eval", str(run), cwd=home, env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"copy of the same epoch {epoch}" in evaluated.stderr
    assert f"eval best_model (epoch {epoch}" in evaluated.stdout
