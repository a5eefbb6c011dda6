"""``repro compare`` on log fixtures (tests/logfakes.py writes upstream-format logs): curves against the
reference band, the equivalence verdict and exit codes, throughput and data wait, duplicates, outputs."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.judge.compare_page import MARKER
from repro.judge.throughput import measure
from repro.logs.parse import parse_run
from tests.logfakes import FakeUpstreamLog, write_manifest, write_run

EPOCHS = 10


def reference_curve(epoch: int) -> float:
    """A top-1 curve rising to ~0.767 at epoch 10, like a (very short) ImageNet run."""
    return 0.767 * (1 - math.exp(-epoch / 2.2)) / (1 - math.exp(-EPOCHS / 2.2))


def reference_loss(epoch: int) -> float:
    return 2.0 + 4.5 * math.exp(-epoch / 2.0)


def make_run(root: Path, offset: float = 0.0, wobble: float = 0.0, top1: dict[int, float] | None = None,
             loss: dict[int, float] | None = None, ips: float = 12.0, reader_cost: float = 0.00015,
             manifest: dict | None = None) -> Path:
    """A plain upstream run of 10 epochs and 1000 classes (the resnest50 recipe's model)."""
    fake = FakeUpstreamLog(epochs=EPOCHS, class_num=1000, iters=8)
    top1 = top1 or {e: round(reference_curve(e) + offset + wobble * (-1) ** e, 5) for e in range(1, EPOCHS + 1)}
    loss = loss or {e: reference_loss(e) for e in range(1, EPOCHS + 1)}
    lines = fake.startup()
    best = -1.0
    for epoch in range(1, EPOCHS + 1):
        lines += [fake.train_iter(epoch, it, loss[epoch], ips, reader_cost) for it in range(fake.iters)]
        lines.append(fake.train_avg(epoch, loss[epoch]))
        best = max(best, top1[epoch])
        lines += fake.eval_epoch(epoch, top1[epoch], best)
    write_run(root, lines, layout="upstream", manifest=manifest)
    return root


def run(*args: str):
    return CliRunner(mix_stderr=False).invoke(cli, ["compare", *args])


@pytest.fixture
def references(tmp_path: Path) -> list[Path]:
    return [make_run(tmp_path / f"ref{i}", offset=off) for i, off in enumerate((0.0, 0.0012, -0.0009))]


def test_equivalent_candidates_exit_0(tmp_path: Path, references: list[Path]) -> None:
    candidates = [make_run(tmp_path / f"cand{i}", offset=off, wobble=0.002) for i, off in enumerate((0.0005, -0.0004, 0.001))]
    result = run(*map(str, candidates), *[f"--reference={p}" for p in references])
    assert result.exit_code == 0, result.output + result.stderr
    first = result.output.splitlines()[0]
    assert first.startswith("EQUIVALENT within +-0.5 pt (90 % interval of the difference [")
    assert "curves inside the band" in first and "throughput 1.00 x reference" in first
    assert "curves: every candidate inside the reference band (10 epochs checked)" in result.output


def test_broken_learning_rate_leaves_the_band_early_and_is_not_equivalent(tmp_path: Path, references: list[Path]) -> None:
    # lr 10x too high: the loss stays near ln(1000) for epochs, top-1 lags far behind and ends 7 points low
    slow = {e: round(0.69 * (1 - math.exp(-e / 4.0)) / (1 - math.exp(-EPOCHS / 4.0)) + 0.001 * i, 5)
            for i, e in enumerate(range(1, EPOCHS + 1))}
    candidates = [make_run(tmp_path / f"broken{i}", top1={e: v + 0.001 * i for e, v in slow.items()},
                           loss={e: 6.9 - 0.3 * e for e in range(1, EPOCHS + 1)}) for i in range(3)]
    result = run(*map(str, candidates), "--reference", str(references[0]), "--reference", str(references[1]),
                 "--reference", str(references[2]), "--json")
    assert result.exit_code == 1, result.output + result.stderr
    data = json.loads(result.output)
    assert data["outcome"] == "NOT EQUIVALENT" and data["exit_code"] == 1
    assert data["equivalence"]["interval"][1] < -0.005
    breaches = data["curves"]["first_breach"]
    assert len(breaches) == 3 and all(b["epoch"] <= 2 for b in breaches.values())
    human = run(*map(str, candidates), *[f"--reference={p}" for p in references])
    assert human.output.startswith("NOT EQUIVALENT: the difference lies beyond +-0.5 pt")
    assert "curves: 3 of 3 candidate(s) leave the band; first broken0 at epoch 1 train_loss" in human.output


def test_one_run_a_side_says_nothing_can_be_shown(tmp_path: Path, references: list[Path]) -> None:
    candidate = make_run(tmp_path / "cand", offset=0.0003)
    result = run(str(candidate), "--reference", str(references[0]))
    assert result.exit_code == 2, result.output + result.stderr
    assert result.output.startswith("NOT SHOWN: one run per side (1 candidate, 1 reference)")
    assert "nothing can be shown" in result.output.splitlines()[0]
    assert "the band rests on 1 reference run(s)" in result.output


def test_too_few_seeds_names_how_many_are_needed(tmp_path: Path, references: list[Path]) -> None:
    candidates = [make_run(tmp_path / f"c{i}", offset=off) for i, off in enumerate((-0.004, 0.003))]
    result = run(*map(str, candidates), *[f"--reference={p}" for p in references[:2]], "--json")
    data = json.loads(result.output)
    assert result.exit_code == 2 and data["outcome"] == "NOT SHOWN"
    assert data["equivalence"]["seeds_needed"] >= 3
    assert f"about {data['equivalence']['seeds_needed']} seeds per side" in data["message"]


def test_margin_option_overrides_the_recipe(tmp_path: Path, references: list[Path]) -> None:
    candidates = [make_run(tmp_path / f"c{i}", offset=-0.02 + off) for i, off in enumerate((0.0, 0.001, -0.001))]
    tight = run(*map(str, candidates), *[f"--reference={p}" for p in references])
    assert tight.exit_code == 1 and tight.output.startswith("NOT EQUIVALENT")
    wide = run(*map(str, candidates), *[f"--reference={p}" for p in references], "--margin", "0.05")
    assert wide.output.startswith("EQUIVALENT within +-5 pt"), wide.output
    assert "margin +-5 pt (--margin 0.05)" in wide.output


def test_band_file_as_reference(tmp_path: Path, references: list[Path]) -> None:
    band = tmp_path / "band.yaml"
    built = CliRunner(mix_stderr=False).invoke(cli, ["band", "build", *map(str, references), "--out", str(band)])
    assert built.exit_code == 0, built.output + built.stderr
    candidates = [make_run(tmp_path / f"cand{i}", offset=off) for i, off in enumerate((0.0005, -0.0004, 0.001))]
    result = run(*map(str, candidates), "--reference", str(band), "--json")
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["outcome"] == "EQUIVALENT", result.output
    assert data["equivalence"]["n_reference"] == 3
    assert data["throughput"]["reference"]["per_device"] is None  # a band records no speed
    mixed = run(str(candidates[0]), "--reference", str(band), "--reference", str(references[0]))
    assert mixed.exit_code == 2 and mixed.stderr.startswith("error: a band file is a whole reference")


def test_the_same_run_twice_is_refused(tmp_path: Path, references: list[Path]) -> None:
    result = run(str(references[0]), "--reference", str(references[0]))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "name the same run" in result.stderr
    # a copy of a plain upstream log directory (no manifest): the same rank-0 log
    copy = tmp_path / "copy-of-ref0"
    shutil.copytree(references[0], copy)
    again = run(str(copy), str(references[1]), "--reference", str(references[0]), "--reference", str(references[2]))
    assert again.exit_code == 2 and again.stderr.count("\n") == 1
    assert again.stderr.startswith("error: compare: ") and "are the same run (their rank-0 logs are identical" in again.stderr
    # a candidate that is one of a band file's own runs
    recorded = [make_run(tmp_path / f"rec{i}", offset=0.001 * i,
                         manifest={"run_id": f"2026120{i}T000000Z", "recipe": {"name": "resnest50"}}) for i in range(3)]
    band = tmp_path / "band.yaml"
    assert CliRunner(mix_stderr=False).invoke(cli, ["band", "build", *map(str, recorded), "--out", str(band)]).exit_code == 0
    own = run(str(recorded[1]), "--reference", str(band))
    assert own.exit_code == 2 and "is run 20261201T000000Z, one of the band's own runs" in own.stderr


def test_runs_of_different_configs_are_refused(tmp_path: Path, references: list[Path]) -> None:
    fake = FakeUpstreamLog(epochs=3, class_num=1000)
    other = write_run(tmp_path / "short", fake.launch(range(1, 4), {1: 0.1, 2: 0.2, 3: 0.3}), layout="upstream")
    result = run(str(other), "--reference", str(references[0]))
    assert result.exit_code == 2 and "differ in configured epochs" in result.stderr


def test_html_page_has_the_curves_and_refuses_foreign_files(tmp_path: Path, references: list[Path]) -> None:
    candidate = make_run(tmp_path / "cand", offset=0.0002)
    page = tmp_path / "compare.html"
    result = run(str(candidate), *[f"--reference={p}" for p in references], "--html", str(page))
    assert result.exit_code in (0, 2), result.stderr
    text = page.read_text(encoding="utf-8")
    assert MARKER in text and "data:image/png;base64," in text and "reference band" in text
    again = run(str(candidate), *[f"--reference={p}" for p in references], "--html", str(page))
    assert again.exit_code in (0, 2)  # its own page is replaced
    foreign = tmp_path / "notes.html"
    foreign.write_text("<p>mine</p>", encoding="utf-8")
    refused = run(str(candidate), *[f"--reference={p}" for p in references], "--html", str(foreign))
    assert refused.exit_code == 5 and foreign.read_text(encoding="utf-8") == "<p>mine</p>"


def test_help_lists_the_exit_codes() -> None:
    result = CliRunner(mix_stderr=False).invoke(cli, ["compare", "--help"])
    assert result.exit_code == 0
    for words in ("EQUIVALENT, and every candidate", "NOT EQUIVALENT, or a candidate", "NOT SHOWN (too few seeds"):
        assert words in " ".join(result.output.split())


# -- throughput -------------------------------------------------------------------------------------
def known_speed_run(root: Path, steady_ips: float, steady_reader: float, print_batch_step: int = 1) -> Path:
    """Epoch 1 is slow (warm-up epoch), iterations 0-4 of every epoch are slow (upstream's warm-up);
    the rest runs at ``steady_ips`` with ``steady_reader`` seconds of data wait per iteration."""
    fake = FakeUpstreamLog(epochs=3, class_num=1000, iters=10, batch_size=16, print_batch_step=print_batch_step)
    lines = fake.startup()
    for epoch in (1, 2, 3):
        for it in range(0, fake.iters, print_batch_step):
            warm = epoch == 1 or it < 5
            lines.append(fake.train_iter(epoch, it, 3.0, 1.0 if warm else steady_ips, 0.9 if warm else steady_reader))
        lines.append(fake.train_avg(epoch, 3.0))
        lines += fake.eval_epoch(epoch, 0.1 * epoch, 0.1 * epoch)
    return write_run(root, lines, layout="upstream")


def test_steady_throughput_excludes_warm_up_and_knows_the_data_wait(tmp_path: Path) -> None:
    speed = measure("r", parse_run(known_speed_run(tmp_path / "r", steady_ips=8.0, steady_reader=0.5)).train_iters)
    assert speed.per_device == pytest.approx(8.0, rel=1e-4)
    assert speed.data_wait_share == pytest.approx(0.5 / 2.0, rel=1e-4)  # batch_cost = 16 / 8 = 2 s
    assert speed.lines == 10 and speed.iterations == 10 and speed.excluded_lines == 20
    assert speed.batch_size == 16


def test_lines_covering_several_iterations_weigh_by_them(tmp_path: Path) -> None:
    fake = FakeUpstreamLog(epochs=2, class_num=1000, iters=10, batch_size=16, print_batch_step=2)
    lines = fake.startup()
    for epoch in (1, 2):
        # lines at iterations 0, 2, 4, 6, 8: the line at 6 covers 5-6 (timers reset at 5), at 8 covers 7-8
        for it, ips in ((0, 1.0), (2, 1.0), (4, 1.0), (6, 8.0), (8, 16.0)):
            lines.append(fake.train_iter(epoch, it, 3.0, ips, 0.1))
        lines.append(fake.train_avg(epoch, 3.0))
        lines += fake.eval_epoch(epoch, 0.1, 0.1)
    speed = measure("r", parse_run(write_run(tmp_path / "r", lines, layout="upstream")).train_iters)
    # epoch 2 only: 2 x 16 images in 2 x 2 s, then 2 x 16 in 2 x 1 s -> 64 images / 6 s
    assert speed.per_device == pytest.approx(64 / 6, rel=1e-4)
    assert speed.data_wait_share == pytest.approx(0.1 * 4 / 6, rel=1e-4)
    assert speed.iterations == 4


def test_compare_reports_the_speed_ratio_and_names_data_bound(tmp_path: Path) -> None:
    candidate = known_speed_run(tmp_path / "cand", steady_ips=8.0, steady_reader=0.5)
    reference = known_speed_run(tmp_path / "ref", steady_ips=10.0, steady_reader=0.0001)
    result = run(str(candidate), "--reference", str(reference), "--allow-incomplete", "--json")
    data = json.loads(result.output)
    assert data["throughput"]["ratio"] == pytest.approx(0.8, rel=1e-4)
    assert data["throughput"]["candidate"]["data_wait_share"] == pytest.approx(0.25, rel=1e-4)
    human = run(str(candidate), "--reference", str(reference))
    assert "throughput: candidate 8.00 img/s per device (steady state, 1 run(s)), data wait 25.0% -- data-bound" in human.output
    assert "throughput: reference 10.00 img/s per device" in human.output and "data-bound" not in human.output.split(
        "throughput: reference")[1].splitlines()[0]
    assert "throughput: candidate / reference = 0.80" in human.output
    assert "published baseline: none published for ResNeSt50" in human.output


def test_loading_the_statistics_does_not_import_scipy() -> None:
    """scipy is heavy: the equivalence module imports it only when it computes (inside its functions)."""
    code = "import sys, repro.judge.equivalence, repro.judge.compare; sys.exit('scipy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 0, done.stderr


def test_compliance_of_every_run_is_reported_not_judged(tmp_path: Path, references: list[Path]) -> None:
    """The fixtures are 10-epoch, 32-pixel, batch-16 logs: NONCOMPLIANT with resnest50's reference rules,
    named per run with the violated rules; the comparison's outcome does not change for it."""
    candidate = make_run(tmp_path / "cand", offset=0.0002)
    result = run(str(candidate), "--reference", str(references[0]))
    line = next(line for line in result.output.splitlines() if line.startswith("compliance cand: "))
    assert "NONCOMPLIANT with recipe resnest50's reference rules" in line and "epochs" in line and "-v lists them" in line
    assert result.exit_code == 2  # NOT SHOWN (one run a side), as without compliance
    verbose = run(str(candidate), "--reference", str(references[0]), "-v")
    assert "NONCOMPLIANT epochs 10 != 300 (Global.epochs)" in verbose.output
    data = json.loads(run(str(candidate), "--reference", str(references[0]), "--json").output)
    assert data["candidates"][0]["compliance"]["status"] == "NONCOMPLIANT"
