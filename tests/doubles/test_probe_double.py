"""The Paddle probe's double (paddle_probe/sitecustomize.py) reaches the `repro` children it is meant
for, through both ways the harness reaches the probe, and gives the answer it was handed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from repro.platform.devices import PaddleInfo
from tests.doubles import probe_double_env

CHILD = """
import dataclasses, json
import repro.launch.start as start
import repro.platform.devices as devices
assert start.probe_paddle is devices.probe_paddle, "start copied the real probe before the double"
print(json.dumps([dataclasses.asdict(devices.probe_paddle(with_sklearn=w)) for w in (True, False)]))
"""


def test_a_child_gets_the_answer_file_instead_of_probing(tmp_path: Path) -> None:
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps(asdict(PaddleInfo(importable=True, version="0.0-double", sklearn_version="9.9"))))
    env = {**probe_double_env(dict(os.environ)), "REPRO_TEST_PADDLE_PROBE_ANSWER": str(answer)}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with_sklearn, without = json.loads(done.stdout)
    assert (with_sklearn["version"], with_sklearn["sklearn_version"]) == ("0.0-double", "9.9")
    assert (without["version"], without["sklearn_version"]) == ("0.0-double", None)


def test_without_the_answer_the_child_has_the_real_probe(tmp_path: Path) -> None:
    env = {k: v for k, v in probe_double_env(dict(os.environ)).items() if k != "REPRO_TEST_PADDLE_PROBE_ANSWER"}
    code = "import repro.platform.devices as d, inspect; print(inspect.getsourcefile(d.probe_paddle))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(os.path.join("repro", "platform", "devices.py"))
