"""``repro report``'s page, places and atomic files (repro.judge.run_report, repro.judge.html_page)."""

from __future__ import annotations

import errno
import html
import json
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.core.errors import EXIT_CONFLICT
from repro.judge import html_page as H
from repro.judge import run_report
from repro.judge.judge_cli import judge_run
from repro.logs.parse import parse_run
from repro.upstream.pin import load_pin
from tests.logfakes import FakeUpstreamLog, standard_run, write_lines, write_run

OPTIONS = dict(target=None, tolerance=None, metric=None, eval_set_size=None, recipe=None, final=False,
               allow_incomplete=False, strict=False)
PIN = load_pin()


def full_manifest(**extra) -> dict:
    """A manifest with every provenance record `repro train` writes (values as a CPU smoke's)."""
    return {
        "run_id": "smoke-resnest50-20261202T204113Z", "status": "completed", "smoke": True,
        "started": "2026-12-02T20:41:16+00:00", "ended": "2026-12-02T20:43:07+00:00",
        "recipe": {"name": "resnest50", "config": "ppcls/configs/ImageNet/ResNeSt/ResNeSt50.yaml", "arch": "ResNeSt50"},
        "target": {"metric": "top1", "value": 0.5, "eval_set_size": 32, "judged": "best", "tolerance": 0.0},
        "upstream": {"commit": PIN.commit, "archive": "PaddleClas-d178931f.tar.gz",
                     "patches": [{"name": "0001-cpu-distributed-eval-device-id.patch", "sha256": "a16e47f4cb97" + "0" * 52,
                                  "applied": True}], "local_changes": []},
        "dataset": {"root": "/data/tiny", "fingerprint": {
            "tiny": True, "classes": 4, "train_list": {"lines": 128, "sha256": "d8520770a4a8" + "0" * 52},
            "val_list": {"lines": 32, "sha256": "2ce6cfab21b7" + "0" * 52}}},
        "platform": {"name": "cpu", "description": "CPU only", "device": "cpu"},
        "devices": {"gpus": None, "cpu_ranks": 2, "nnodes": 1, "world_size": 2,
                    "report": {"tool": None, "note": "no device tool for this profile (CPU ranks)"}},
        "paddle": {"version": "2.6.2"},
        "harness": {"name": "repro", "version": "0.1.0", "commit": "0ecd1844f00e9594ddfa583dd11ee3cf24142531",
                    "dirty": False, "host": {"hostname": "build-7", "os": "Linux-6.18", "cpu_count": 2, "python": "3.11.7"}},
        "seed": {"value": 0, "source": "upstream default"},
        **extra,
    }


def report_of(run_dir: Path, out: Path | None = None) -> tuple[dict, Path]:
    run = parse_run(run_dir)
    verdict = judge_run(run, OPTIONS)
    default, own = run_report.default_report_dir(run)
    return run_report.write_report(run, verdict, out or default, own_place=own and out is None,
                                   run_path=run_dir), out or default


# -- the page ----------------------------------------------------------------------------------
def test_page_puts_the_verdict_first_then_provenance_with_the_honest_upstream_name(tmp_path):
    evaluation = {"checkpoint": "true_best", "epoch": 3, "status": "completed", "top1": 0.75, "top5": 1.0,
                  "loss": 0.5, "eval_set_size": 32, "sha256": "0adcae13efe2" + "0" * 52}
    run = standard_run(tmp_path / "run", top1={1: 0.25, 2: 0.5, 3: 0.75},
                       manifest=full_manifest(evaluations=[evaluation]))
    write_lines(run / "alarms.jsonl", [json.dumps({"alarm": "plateau", "epoch": 2, "value": 0.5, "expected": "> 0.6",
                                                   "detail": "top-1 has not risen for 1 epoch", "time": "t"})])
    report, out = report_of(run)
    page = (out / "index.html").read_text()
    assert page.index('id="verdict"') < page.index("Provenance") < page.index("Curves") < page.index("Alarms") \
        < page.index("Eval history") < page.index("Throughput")
    banner = re.search(r'<div class="verdict good" id="verdict"><span class="word">PASS</span>([^<]*)', page).group(1)
    assert html.unescape(banner) == "top1 0.7500 (best, epoch 3) >= 0.5000 (target 0.5)"
    assert f"{PIN.commit} (develop {PIN.commit[:8]}, standing in for release/2.6)" in page  # from the pin
    for text in ("0001-cpu-distributed-eval-device-id.patch: applied (sha256 a16e47f4cb97)",
                 "train list 128 lines, sha256 d8520770a4a8", "cpu: CPU only (cpu)", "2 CPU ranks x 1 node(s)",
                 "0ecd1844f00e9594ddfa583dd11ee3cf24142531 (repro 0.1.0)", "build-7: Linux-6.18, 2 CPUs",
                 "plateau", "top-1 has not risen for 1 epoch", "true_best", "0adcae13efe2"):
        assert text in page, text
    assert "<th>top5</th>" not in page  # 4 classes
    assert report["verdict"]["status"] == "PASS" and report["band"].startswith("none:")


def test_page_takes_the_manifest_s_own_name_for_the_commit_and_says_so_without_a_manifest(tmp_path):
    manifest = full_manifest()
    manifest["upstream"]["commit_is"] = "release/2.6 at 0123abcd"
    run = standard_run(tmp_path / "run", manifest=manifest)
    page = (report_of(run)[1] / "index.html").read_text()
    assert f"{PIN.commit} (release/2.6 at 0123abcd)" in page
    loose = standard_run(tmp_path / "loose")  # plain upstream logs: no manifest
    page = (report_of(loose)[1] / "index.html").read_text()
    assert "none: plain upstream logs" in page and "no alarms.jsonl" in page
    banner = re.search(r'<div class="verdict neutral" id="verdict">(.*?)</div>', page).group(1)  # UNREADABLE: 4 classes
    assert banner.startswith('<span class="word">UNREADABLE</span>this run has class_num 4')
    assert banner.count("class_num 4") == 1
    (run / "manifest.json").write_text("{ cut by a crash")
    page = (report_of(run)[1] / "index.html").read_text()
    assert f"unreadable ({run / 'manifest.json'}), so only what the logs say is known" in page


def test_page_escapes_what_logs_and_manifests_say_and_fetches_nothing(tmp_path):
    run = standard_run(tmp_path / "<b>bold</b>", manifest=full_manifest(run_id="<script>alert(1)</script>"))
    page = (report_of(run)[1] / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    references = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"|url\(([^)]*)\)', page)
    assert references and all(ref.startswith("data:") for pair in references for ref in pair if ref)


def test_html_page_api_builds_sections_and_refuses_linked_images():
    page = H.HtmlPage("compare a vs b").verdict("NOT EQUIVALENT", "diff -0.9 pt", "margin 0.5 pt")
    page.add("Curves & band", H.image(H.png_data_uri(b"\x89PNG"), "curves", "both runs"))
    page.add("Numbers", H.table(["seed", "top1"], [[1, 0.7712], [2, float("nan")]]) + H.key_value_table([("a", "<x>")]))
    text = page.render()
    assert '<div class="verdict bad" id="verdict"><span class="word">NOT EQUIVALENT</span>diff -0.9 pt' in text
    assert '<section id="curves-band"><h2>Curves &amp; band</h2>' in text
    assert '<td class="num">0.7712</td>' in text and '<td class="num"></td>' in text and "&lt;x&gt;" in text
    assert H.tone_of("NOT SHOWN") == "neutral" and H.tone_of("EQUIVALENT") == "good" and H.tone_of("FAIL") == "bad"
    with pytest.raises(ValueError, match="data: URI"):
        H.image("https://example.org/x.png", "x")


# -- the curves ----------------------------------------------------------------------------------
def _lines(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines()}


def test_curves_put_loss_on_a_log_scale_and_the_target_above_the_pass_line(tmp_path):
    fake = FakeUpstreamLog(epochs=3)
    lines = fake.startup(None)
    for epoch, top1 in {1: 0.25, 2: 0.5, 3: 0.75}.items():
        lines += fake.train_epoch(epoch, loss=1.4) + fake.eval_epoch(epoch, top1, top1, loss=48.0 if epoch == 1 else 1.2)
    manifest = full_manifest()
    manifest["target"].update(value=0.7, tolerance=0.05)
    run_dir = write_run(tmp_path / "run", lines, manifest=manifest)
    run = parse_run(run_dir)
    assert float(run.epochs.loc[1, "eval_loss"]) == 48.0
    verdict = judge_run(run, OPTIONS)
    evals = [{"epoch": 3, "status": "completed", "top1": 0.74, "checkpoint": "true_best"}]
    fig = run_report.plot_curves(run, verdict, None, evals)
    acc_ax, loss_ax = fig.axes[0], fig.axes[1]
    assert loss_ax.get_yscale() == "log"
    lines = _lines(acc_ax)
    target_line, pass_line = lines["target top1 0.7"], lines["passes at 0.6500"]
    assert target_line.get_zorder() > pass_line.get_zorder() and target_line.get_linewidth() > pass_line.get_linewidth()
    assert target_line.get_color() != pass_line.get_color() and pass_line.get_linestyle() == "--"
    star = lines["standalone eval (repro eval)"]
    assert list(star.get_xdata()) == [3] and list(star.get_ydata()) == [0.74]
    assert "top5" not in lines


def test_curves_draw_top5_only_with_more_than_five_classes(tmp_path):
    lines = FakeUpstreamLog(epochs=2, class_num=10).launch(range(1, 3), {1: 0.2, 2: 0.4})
    run = parse_run(write_run(tmp_path / "ten", lines))
    assert run.class_num == 10 and run_report.top5_meaningful(run)
    fig = run_report.plot_curves(run, judge_run(run, OPTIONS), None, [])
    assert "top5" in _lines(fig.axes[0])
    lines = FakeUpstreamLog(epochs=2, class_num=4).launch(range(1, 3), {1: 0.2, 2: 0.4})
    assert not run_report.top5_meaningful(parse_run(write_run(tmp_path / "four", lines)))


def test_curves_draw_the_recipe_s_shipped_band_for_a_run_of_its_schedule(tmp_path):
    run = parse_run(standard_run(tmp_path / "run", epochs=6, top1={e: 0.25 for e in range(1, 7)}, manifest=full_manifest()))
    band, line = run_report.run_band(run)
    assert band is not None and band.recipe == "resnest50" and band.smoke and "resnest50-smoke.yaml" in line
    fig = run_report.plot_curves(run, judge_run(run, OPTIONS), band, [])
    labels = [c.get_label() for c in fig.axes[0].collections]
    assert any(label.startswith("band: mean") for label in labels)
    other = parse_run(standard_run(tmp_path / "three", epochs=3, manifest=full_manifest()))
    assert run_report.run_band(other) == (None, "no band drawn: the shipped band is for 6 epochs, this run is "
                                                "configured for 3")


# -- places ------------------------------------------------------------------------------------
def test_two_loose_logs_in_one_directory_get_a_report_each(tmp_path):
    first = FakeUpstreamLog(epochs=2).launch(range(1, 3), {1: 0.25, 2: 0.5})
    second = FakeUpstreamLog(epochs=2, start=FakeUpstreamLog().start.replace(hour=9)).launch(range(1, 3), {1: 0.5, 2: 0.75})
    write_lines(tmp_path / "a.log", first)
    write_lines(tmp_path / "b.log", second)
    for name in ("a.log", "b.log"):
        result = CliRunner().invoke(cli, ["report", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a.log.report" / "report.json").read_text())["verdict"]["best_value"] == 0.5
    assert json.loads((tmp_path / "b.log.report" / "report.json").read_text())["verdict"]["best_value"] == 0.75
    assert not (tmp_path / "report").exists()
    # Another run's report is never overwritten, whichever way --out names it.
    before = (tmp_path / "a.log.report" / "epochs.csv").read_bytes()
    result = CliRunner(mix_stderr=False).invoke(cli, ["report", str(tmp_path / "b.log"), "--out", str(tmp_path / "a.log.report")])
    assert result.exit_code == EXIT_CONFLICT
    assert result.stderr.startswith(f"error: {tmp_path / 'a.log.report'} holds the report of another run ({tmp_path / 'a.log'})")
    assert (tmp_path / "a.log.report" / "epochs.csv").read_bytes() == before
    # The same run's report is refreshed in place.
    assert CliRunner().invoke(cli, ["report", str(tmp_path / "a.log")]).exit_code == 0


def test_report_never_overwrites_files_it_did_not_write(tmp_path):
    run = standard_run(tmp_path / "run", manifest=full_manifest())
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("my home page")
    result = CliRunner(mix_stderr=False).invoke(cli, ["report", str(run), "--out", str(site)])
    assert result.exit_code == EXIT_CONFLICT and "already holds index.html, not written by a report" in result.stderr
    assert (site / "index.html").read_text() == "my home page" and sorted(os.listdir(site)) == ["index.html"]
    (site / "report.json").write_text('{"mine": true}')
    result = CliRunner(mix_stderr=False).invoke(cli, ["report", str(run), "--out", str(site)])
    assert result.exit_code == EXIT_CONFLICT and "report.json was not written by repro report" in result.stderr
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "curves.png").symlink_to(tmp_path / "not-yet-there.png")
    result = CliRunner(mix_stderr=False).invoke(cli, ["report", str(run), "--out", str(linked)])
    assert result.exit_code == EXIT_CONFLICT and (linked / "curves.png").is_symlink()
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "report.json")  # read whole, a FIFO would block: refused without a read
    result = CliRunner(mix_stderr=False).invoke(cli, ["report", str(run), "--out", str(fifo)])
    assert result.exit_code == EXIT_CONFLICT and "report.json was not written by repro report" in result.stderr
    # A run directory's own report/ from an older harness (no report.json) is the run's: refreshed.
    write_lines(run / "report" / "epochs.csv", ["old"])
    assert CliRunner().invoke(cli, ["report", str(run)]).exit_code == 0
    assert (run / "report" / "epochs.csv").read_text().startswith("epoch,")


# -- atomic files --------------------------------------------------------------------------------
def test_a_full_disk_leaves_no_half_written_report_file(tmp_path, monkeypatch):
    run = standard_run(tmp_path / "run", manifest=full_manifest())
    report_of(run)
    before = {name: (run / "report" / name).read_bytes() for name in run_report.REPORT_FILES}
    standard_run(tmp_path / "run", top1={1: 0.5, 2: 0.5, 3: 0.75}, manifest=full_manifest())
    real = Path.write_bytes

    def disk_fills(self, data):
        if self.name.startswith(".curves.png."):  # the disk fills in the middle of curves.png
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", disk_fills)
    result = CliRunner(mix_stderr=False).invoke(cli, ["report", str(run)])
    assert result.exit_code != 0 and "No space left on device" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    after = {name: (run / "report" / name).read_bytes() for name in run_report.REPORT_FILES}
    assert after["epochs.csv"] != before["epochs.csv"]  # written whole before the disk filled
    assert {n: after[n] == before[n] for n in ("curves.png", "index.html", "report.json")} == dict.fromkeys(
        ("curves.png", "index.html", "report.json"), True)  # the previous complete files, not halves
    assert sorted(os.listdir(run / "report")) == sorted(run_report.REPORT_FILES)  # no temporary left behind


def test_a_file_size_limit_from_the_kernel_leaves_whole_files_or_none(tmp_path):
    """A real refusal by the kernel (RLIMIT_FSIZE, as a full disk refuses mid-file): every report file
    is complete or absent, none is 0 bytes or cut."""
    run = standard_run(tmp_path / "run", manifest=full_manifest())
    limit = 20_000  # epochs.csv and summary.md fit, curves.png (> 40 kB) does not

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", "from repro.cli import main; main()", "report", str(run)],
                          capture_output=True, text=True, env=env, preexec_fn=limited, timeout=300)
    assert done.returncode != 0 and "File too large" in done.stderr and "Traceback" not in done.stderr
    present = sorted(os.listdir(run / "report"))
    assert present == ["epochs.csv", "summary.md"]
    assert (run / "report" / "epochs.csv").read_text().startswith("epoch,") and \
        (run / "report" / "summary.md").read_text().rstrip().endswith("|")


def test_throughput_is_judge_throughput_s_steady_state_per_epoch_and_for_the_run(tmp_path):
    fake = FakeUpstreamLog(epochs=3, iters=8)  # lines from iteration 5 on are past upstream's timer reset
    run_dir = write_run(tmp_path / "run", fake.launch(range(1, 4), {1: 0.25, 2: 0.5, 3: 0.75}), manifest=full_manifest())
    run = parse_run(run_dir)
    table = run_report.throughput_table(run)
    assert list(table.index) == [1, 2, 3] and table["steady_ips"].tolist() == pytest.approx([12.0, 12.0, 12.0])
    assert table["data_wait"].tolist() == pytest.approx([0.00015 / 1.33333] * 3)
    page = (report_of(run_dir)[1] / "index.html").read_text()
    assert "steady state 12 images/s per device, data wait 0.0% of step time (6 logged lines, 18 warm-up" in page
    assert '<td>0.01%</td>' in page
