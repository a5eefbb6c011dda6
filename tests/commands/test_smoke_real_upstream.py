"""The real smoke, end to end: upstream PaddleClas trains on 2 CPU ranks and check-accuracy passes.

Runs only with a real checkout (REPRO_TEST_UPSTREAM=/path/to/PaddleClas); reported as skipped with
the reason otherwise. It takes a couple of minutes on 2 cores, hence ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.upstream, pytest.mark.slow]


def test_make_smoke_passes_against_real_upstream(real_upstream: Path, tmp_path: Path) -> None:
    # Work on a copy (a few MB): the smoke links its tiny dataset into the checkout, and the user's
    # own checkout must keep whatever its dataset/ILSVRC2012 points at.
    upstream = tmp_path / "PaddleClas"
    shutil.copytree(real_upstream, upstream, symlinks=True,
                    ignore=shutil.ignore_patterns("ILSVRC2012", "output", "__pycache__"))
    link_before = os.readlink(real_upstream / "dataset" / "ILSVRC2012") if (real_upstream / "dataset" / "ILSVRC2012").is_symlink() else None
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_TRAIN_")}
    env["REPRO_UPSTREAM_DIR"] = str(upstream)
    done = subprocess.run(
        [sys.executable, "-m", "repro.commands.smoke", "--logs-dir", str(tmp_path / "logs"), "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "SMOKE PASS" in done.stdout.strip().splitlines()[-1]
    (run,) = (tmp_path / "logs").iterdir()
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["smoke"] is True and manifest["target"]["eval_set_size"] == 32
    assert manifest["status"] == "completed"
    assert "PASS" in output  # check-accuracy's own verdict line
    # repro eval ran upstream's tools/eval.py on the true best, and check-accuracy compared both numbers
    (evaluation,) = manifest["evaluations"]
    assert evaluation["status"] == "completed" and evaluation["checkpoint"] == "true_best"
    assert evaluation["epoch"] == manifest["true_best"]["epoch"] and evaluation["eval_set_size"] == 32
    assert "tools/eval.py" in evaluation["command"]["argv"] and len(evaluation["sha256"]) == 64
    assert f"standalone eval (true_best, epoch {evaluation['epoch']}, tools/eval.py): top1 {evaluation['top1']:.5f}" in output
    # the smoke reads its tiny set through --data-dir: the place the real ImageNet is linked stays free
    assert not os.path.lexists(upstream / "dataset" / "ILSVRC2012")
    if link_before is not None:
        assert os.readlink(real_upstream / "dataset" / "ILSVRC2012") == link_before
