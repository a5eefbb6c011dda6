"""The test double itself: it must read ``-o`` by upstream's rules and log what the harness parses.

Runs ``fake_train.py`` as a single rank without the launcher (a second or so each).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

from tests.conftest import repro_here
from tests.doubles import CONFIG, TRAIN_SCRIPT


def fake_train(tmp_path: Path, *overrides: str, **knobs: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_", "PADDLE_"))}
    env.update({"PADDLE_TRAINER_ID": "0", "PADDLE_TRAINERS_NUM": "1", "FAKE_SLEEP": "0"}, **knobs)
    argv = [sys.executable, str(TRAIN_SCRIPT), "-c", str(CONFIG), "-o", f"Global.output_dir={tmp_path / 'out'}"]
    for item in overrides:
        argv += ["-o", item]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def messages(tmp_path: Path) -> list[str]:
    """train.log without the ``[time] ppcls INFO: `` prefix."""
    return [line.split(": ", 1)[1] if " ppcls " in line else line
            for line in (tmp_path / "out" / "train.log").read_text().splitlines()]


def test_overrides_follow_upstreams_rules(tmp_path: Path) -> None:
    done = fake_train(tmp_path, "Global.device=cpu", "Global.epochs=1", "Global.image_shape.0=1", "Optimizer.lr.name=Piecewise",
                      "Optimizer.lr.learning_rate=1e-3", "Arch.pretrained=False", "Global.new_key=[1,2]",
                      "New.deep.key=x")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:4] == ["A new field (new_key) detected!", "A new Series field (New) detected!",
                                            "A new Series field (deep) detected!", "A new field (key) detected!"]
    echo = messages(tmp_path)
    for line in ["    epochs : 1",  # eval("1") -> int
                 "    image_shape : [1, 224, 224]",  # a list item by index
                 "        name : Piecewise",  # eval raises NameError -> the raw string
                 "        learning_rate : 0.001",  # eval("1e-3") -> float (yaml would keep a string)
                 "    pretrained : False",
                 "    new_key : [1, 2]",
                 "New : ", "    deep : ", "        key : x"]:
        assert line in echo, line
    # a 60-dash rule closes every capitalised top-level section; the device line follows the echo
    assert echo[echo.index("Arch : ") - 1] == "-" * 60
    assert echo[echo.index("profiler_options : None") + 1] == "train with paddle 2.6.2 and device Place(cpu)"


def test_an_option_with_two_equals_signs_is_refused_like_upstream(tmp_path: Path) -> None:
    done = fake_train(tmp_path, "Global.output_dir=a=b")
    assert done.returncode == 1 and "there can be only a = in the option" in done.stderr


def test_the_harness_reads_the_doubles_log(tmp_path: Path) -> None:
    done = fake_train(tmp_path, "Global.epochs=3", FAKE_TOP1="0.5,0.8,0.7")
    assert done.returncode == 0, done.stderr
    checked = repro_here("check-accuracy", "--json", str(tmp_path / "out" / "train.log"))
    result = json.loads(checked.stdout)
    assert checked.returncode == 0 and result["status"] == "PASS", result
    assert (result["epochs_completed"], result["best_epoch"], result["best_value"]) == (3, 2, 0.8)
    assert result["launches"] == 1 and result["mean_ips"] == 160.0


def test_nan_and_slow_knobs(tmp_path: Path) -> None:
    done = fake_train(tmp_path, "Global.epochs=3", FAKE_NAN_EPOCH="2", FAKE_SLOW_FROM="3", FAKE_TOP1="0.5,0.8,0.9")
    assert done.returncode == 0, done.stderr
    log = messages(tmp_path)
    assert "[Eval][Epoch 1][Avg]CELoss: 1.00000, loss: 1.00000, top1: 0.50000, top5: 1.00000" in log
    assert "[Eval][Epoch 2][Avg]CELoss: nan, loss: nan, top1: nan, top5: nan" in log
    assert "[Eval][Epoch 3][best metric: 0.5]" in log  # nan >= best is False, as in upstream
    ips = [line.split("ips: ")[1].split()[0] for line in log if line.startswith("[Train][Epoch ") and "ips: " in line]
    assert ips == ["160.00000"] * 4 + ["40.00000"] * 2
    with (tmp_path / "out" / "best_model.pdstates").open("rb") as handle:
        assert pickle.load(handle)["epoch"] == 1
    checked = repro_here("check-accuracy", str(tmp_path / "out" / "train.log"))
    assert checked.returncode == 1 and "diverged" in checked.stdout.splitlines()[0]
