"""The real smoke, end to end: upstream PaddleClas trains on 2 CPU ranks and check-accuracy passes.

The smoke itself is the session's ``real_smoke`` fixture (tests/conftest.py: `make smoke`'s command on a
copy of the checkout REPRO_TEST_UPSTREAM names), shared with compare's real test; skipped with the
reason when there is no real checkout.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import RealSmoke

pytestmark = [pytest.mark.upstream, pytest.mark.slow]


def test_make_smoke_passes_against_real_upstream(real_smoke: RealSmoke) -> None:
    done, run = real_smoke.done, real_smoke.run
    output = done.stdout + done.stderr
    assert "SMOKE PASS" in done.stdout.strip().splitlines()[-1]
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
    assert not os.path.lexists(real_smoke.upstream / "dataset" / "ILSVRC2012")


def test_the_users_own_checkout_is_left_as_it_was(real_smoke: RealSmoke, real_upstream) -> None:
    place = real_upstream / "dataset" / "ILSVRC2012"
    assert (os.readlink(place) if place.is_symlink() else None) == real_smoke.user_link
