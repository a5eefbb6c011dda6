"""Test doubles for upstream PaddleClas (see README.md): laid out as a checkout only inside a test's
temporary directory, so nothing in this repository is shaped like upstream code."""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).parent
TRAIN_SCRIPT = HERE / "fake_train.py"
EVAL_SCRIPT = HERE / "fake_eval.py"
CONFIG = HERE / "fake_resnest50_config.yaml"
LOG_FORMAT = HERE.parent / "logfakes.py"  # the double prints its lines with this module's builders
CONFIG_PATH = "ppcls/configs/ImageNet/ResNeSt/ResNeSt50.yaml"  # where the recipe looks for it


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
