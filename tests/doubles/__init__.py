"""Test doubles for upstream PaddleClas (see README.md): laid out as a checkout only inside a test's
temporary directory, so nothing in this repository is shaped like upstream code."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from repro.platform.devices import probe_paddle

HERE = Path(__file__).parent
TRAIN_SCRIPT = HERE / "fake_train.py"
EVAL_SCRIPT = HERE / "fake_eval.py"
CONFIG = HERE / "fake_resnest50_config.yaml"
LOG_FORMAT = HERE.parent / "logfakes.py"  # the double prints its lines with this module's builders
CONFIG_PATH = "ppcls/configs/ImageNet/ResNeSt/ResNeSt50.yaml"  # where the recipe looks for it
PROBE_DOUBLE = HERE / "paddle_probe"  # its sitecustomize.py replaces the harness's Paddle probe


def make_fake_checkout(target: Path) -> Path:
    """A directory that looks like a PaddleClas checkout to repro train and repro eval: tools/train.py
    and tools/eval.py (with the modules they import beside them) and the config."""
    (target / "tools").mkdir(parents=True)
    shutil.copy(TRAIN_SCRIPT, target / "tools" / "train.py")
    shutil.copy(TRAIN_SCRIPT, target / "tools" / "fake_train.py")  # fake eval.py reads -c/-o with its rules
    shutil.copy(EVAL_SCRIPT, target / "tools" / "eval.py")
    shutil.copy(LOG_FORMAT, target / "tools" / "logfakes.py")
    config = target / CONFIG_PATH
    config.parent.mkdir(parents=True)
    shutil.copy(CONFIG, config)
    return target


@functools.cache
def scratch_dir(purpose: str) -> Path:
    """One temporary directory per test process and purpose, removed when the process ends."""
    folder = Path(tempfile.mkdtemp(prefix=f"repro-test-{purpose}-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@functools.cache
def _real_probe_answer() -> Path:
    """The real Paddle probe's answer, taken once per test process, for the probe double to give."""
    answer = scratch_dir("probe") / "answer.json"
    answer.write_text(json.dumps(asdict(probe_paddle(with_sklearn=True))))
    return answer


def probe_double_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for `repro` children whose Paddle probe is the double (``paddle_probe/sitecustomize.py``):
    the same answer as the real probe without importing Paddle in a child each time."""
    path = os.pathsep.join(filter(None, [str(PROBE_DOUBLE), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path, "REPRO_TEST_PADDLE_PROBE_ANSWER": str(_real_probe_answer())}
