"""``report/index.html`` in a real headless browser: Debian's Chromium (``apt-get install chromium``;
``.ci/run`` installs it). The page must render offline, carry its key texts, and draw something.

Skipped, saying why, where no Chromium is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image, ImageStat

from repro.cli import cli
from repro.upstream.pin import load_pin
from tests.judge.test_run_report import full_manifest
from tests.logfakes import standard_run, write_lines

BROWSER = next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)
pytestmark = [pytest.mark.skipif(
    BROWSER is None, reason="no chromium on PATH (Debian: apt-get install -y chromium; .ci/run installs it)"),
    pytest.mark.xdist_group(__name__)]  # one worker: the module-scoped page is rendered once

# Offline and quiet: no network, no first-run, no updates, a fresh profile per call.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    return subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    evaluation = {"checkpoint": "true_best", "epoch": 3, "status": "completed", "top1": 0.75, "top5": 1.0,
                  "loss": 0.5, "eval_set_size": 32, "sha256": "0adcae13efe2" + "0" * 52}
    run = standard_run(root / "run", top1={1: 0.25, 2: 0.5, 3: 0.75}, manifest=full_manifest(evaluations=[evaluation]))
    write_lines(run / "alarms.jsonl", [json.dumps({"alarm": "nonfinite_loss", "epoch": 2, "value": None,
                                                   "expected": "finite", "detail": "loss nan at iteration 3"})])
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 0, result.output
    return run / "report" / "index.html"


def test_the_page_renders_with_its_key_texts(page, tmp_path):
    done = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    commit = load_pin().commit
    for text in ("PASS", "top1 0.7500 (best, epoch 3)", "Provenance", f"{commit} (develop {commit[:8]}, standing in "
                 "for release/2.6)", "0001-cpu-distributed-eval-device-id.patch: applied", "d8520770a4a8",
                 "Curves", "Alarms", "nonfinite_loss", "Eval history", "true_best", "Throughput", "steady images/s"):
        assert text in dom, text
    assert dom.count('<img src="data:image/png;base64,') == 2  # curves and throughput, inline


def test_the_screenshot_is_not_blank(page, tmp_path):
    shot = tmp_path / "page.png"
    done = chromium(tmp_path, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2400)
    stats = ImageStat.Stat(image)
    assert max(stats.var) > 500, f"pixel variance {stats.var}: a blank or one-colour page"
    colours = image.resize((300, 600)).getcolors(maxcolors=300 * 600)
    assert colours is not None and len(colours) > 50  # text, the banner's green, the figures' lines
    # The verdict banner is the page's first block: its green is in the top 250 pixels.
    top = image.crop((0, 0, 1200, 250))
    assert any(g > r + 30 and g > b + 20 for _, (r, g, b) in top.getcolors(maxcolors=1200 * 250))
