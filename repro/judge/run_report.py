"""``repro report``: what a person looks at first, for one run, in one directory (docs/ARCHITECTURE.md,
"The report"). The loss is drawn on a log scale: an eval loss of 48 in an early epoch must not flatten a
train loss of 1.4; top-5 only with more than 5 classes (with 4 it is always 1).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro.core.errors import EXIT_CONFLICT, ReproError
from repro.core.files import open_regular_file, read_text_bounded, write_bytes_atomic, write_text_atomic
from repro.judge import html_page as H
from repro.judge.alarmlog import AlarmLog
from repro.judge.band import Band
from repro.judge.health import load_band_for
from repro.judge.throughput import Throughput, measure, run_throughput
from repro.judge.verdict import Verdict
from repro.logs.parse import RunLogs
from repro.run.rundir import K_EVALUATIONS, RunDir, is_smoke, recipe_name
from repro.upstream.pin import load_pin

REPORT_KIND = "repro-report"
REPORT_SCHEMA = 1
EPOCHS_CSV, SUMMARY_MD, CURVES_PNG, INDEX_HTML, REPORT_JSON = (
    "epochs.csv", "summary.md", "curves.png", "index.html", "report.json")
REPORT_FILES = (EPOCHS_CSV, SUMMARY_MD, CURVES_PNG, INDEX_HTML, REPORT_JSON)
SUMMARY_COLUMNS = ["segment", "train_loss", "lr", "ips", "top1", "top5", "eval_loss"]
TOP5_MIN_CLASSES = 6  # with 5 classes or fewer every top-5 is 1.0
HEAD_BYTES = 65536  # a run's rank-0 log is identified by its first bytes (start-up echo with times)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# -- where, and whose ---------------------------------------------------------------------------
def default_report_dir(run: RunLogs) -> tuple[Path, bool]:
    """(directory, it is the run's own ``report/``): a run directory's, ``<log>.report`` for a loose
    log file, ``<dir>/report`` for a loose log directory."""
    files = run.files
    if files.single_file is not None:
        return files.single_file.parent / f"{files.single_file.name}.report", False
    if files.manifest_path is not None and files.manifest_path.parent == files.root:
        return RunDir(files.root).report_dir, True
    return files.root / RunDir(files.root).report_dir.name, False


def run_identity(run: RunLogs) -> dict[str, Any]:
    """What names a run wherever it sits: its run id and a digest of its rank-0 log's head."""
    try:
        with open_regular_file(run.primary.path) as handle:
            head: str | None = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()
    except (OSError, ReproError):
        head = None
    return {"run_id": _dict(run.manifest).get("run_id"), "log": str(run.primary.path), "log_head_sha256": head}


def _same_run(mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    if mine.get("run_id") and theirs.get("run_id"):
        return mine["run_id"] == theirs["run_id"]
    return bool(mine.get("log_head_sha256")) and mine.get("log_head_sha256") == theirs.get("log_head_sha256")


def claim_report_dir(out: Path, identity: dict[str, Any], own_place: bool, run_path: Path) -> Path:
    """Create ``out`` or check that it holds this run's report (or, in a run directory's own
    ``report/``, a report of an older harness that wrote no ``report.json``)."""
    if out.exists() and not out.is_dir():
        raise ReproError(f"--out {out} is a file; give a directory for the report's files", EXIT_CONFLICT)
    fix = f"give this report its own place: repro report {run_path} --out {out.parent / (out.name + '-2')}"
    marker = out / REPORT_JSON
    if os.path.lexists(marker):
        try:
            theirs = json.loads(read_text_bounded(marker, what="report mark"))
        except (OSError, ValueError, ReproError):  # a FIFO, a huge or binary file: not our mark
            theirs = None
        if not isinstance(theirs, dict) or theirs.get("kind") != REPORT_KIND:
            raise ReproError(f"{marker} was not written by repro report; {fix}", EXIT_CONFLICT)
        if not _same_run(identity, theirs.get("identity") or {}):
            other = (theirs.get("identity") or {}).get("log") or theirs.get("path")
            raise ReproError(f"{out} holds the report of another run ({other}); {fix}", EXIT_CONFLICT)
    elif not own_place:
        taken = [name for name in REPORT_FILES if os.path.lexists(out / name)]  # a dangling link is someone's too
        if taken:
            raise ReproError(f"{out} already holds {', '.join(taken)}, not written by a report of this run; {fix}",
                             EXIT_CONFLICT)
    out.mkdir(parents=True, exist_ok=True)
    return out


# -- what the run says --------------------------------------------------------------------------
def top5_meaningful(run: RunLogs) -> bool:
    """Top-5 means something with more than 5 classes; unknown class count: unless every value is 1."""
    if "top5" not in run.epochs.columns:
        return False
    if run.class_num is not None:
        return run.class_num >= TOP5_MIN_CLASSES
    values = pd.to_numeric(run.evaluated["top5"], errors="coerce").dropna()
    return not values.empty and bool((values < 1.0).any())


def standalone_evals(run: RunLogs) -> list[dict[str, Any]]:
    return [e for e in _dict(run.manifest).get(K_EVALUATIONS) or [] if isinstance(e, dict)]


def _evals_to_mark(evals: list[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    return [(int(e["epoch"]), float(e[metric])) for e in evals
            if e.get("status") == "completed" and isinstance(e.get("epoch"), int)
            and isinstance(e.get(metric), (int, float)) and math.isfinite(e[metric])]


def run_band(run: RunLogs) -> tuple[Band | None, str]:
    """The recipe's shipped band when it is for this run's schedule, else None and why."""
    manifest = _dict(run.manifest)
    try:
        band, line = load_band_for(recipe_name(manifest), is_smoke(manifest), None)
    except ReproError as error:
        return None, f"no band: {error.message}"
    if band is not None and run.epochs_configured and band.epochs != run.epochs_configured:
        return None, (f"no band drawn: the shipped band is for {band.epochs} epochs, this run is configured for "
                      f"{run.epochs_configured}")
    return band, line


def _series(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(dtype=float)
    values = pd.to_numeric(frame[column], errors="coerce")
    return values[np.isfinite(values)]


def _epoch_axis(iters: pd.DataFrame) -> pd.Series:
    """Each iteration line's place on an epoch axis (epoch 3's last iteration at 3.0)."""
    return iters["epoch"] - 1 + (iters["iter"] + 1) / iters["iters"]


def throughput_table(run: RunLogs) -> pd.DataFrame:
    """Per epoch: upstream's ips at the epoch's last logged line, and the steady-state images/s per
    device and data-wait share of :mod:`repro.judge.throughput` (its warm-up rule) over that epoch."""
    table = pd.DataFrame({"logged_ips": _series(run.epochs, "ips")})
    iters = run.train_iters
    if not iters.empty and "epoch" in iters.columns:
        steady = {int(epoch): measure(run.name, group) for epoch, group in iters.groupby("epoch")}
        table = table.reindex(sorted(set(table.index) | set(steady)))
        table["steady_ips"] = [steady[e].per_device if e in steady else None for e in table.index]
        table["data_wait"] = [steady[e].data_wait_share if e in steady else None for e in table.index]
    table = table.astype(float)
    return table.rename_axis("epoch")


# -- figures ------------------------------------------------------------------------------------
def draw_top1_band(ax: Any, band: Band, label: str | None = None) -> None:
    """The band's top-1 on an accuracy axis: mean dashed, ``mean +- k x std used`` shaded (its lower
    edge is the limit a run must stay above). Reusable by any page that draws a run against a band."""
    epochs, lower, mean, upper = band.edges("top1")
    runs = len(band.runs) or band.top1_n()
    ax.fill_between(epochs, lower, upper, color="tab:green", alpha=0.15, linewidth=0,
                    label=label or f"band: mean \u00b1 {band.settings.k:g} std ({runs} runs)")
    ax.plot(epochs, mean, "--", color="tab:green", linewidth=1, alpha=0.8)


def _pass_line_differs(verdict: Verdict) -> bool:
    return verdict.threshold is not None and (verdict.target is None or abs(verdict.threshold - verdict.target) > 1e-9)


def verdict_number(verdict: Verdict) -> str:
    """The number the verdict rests on, first: ``top1 0.7702 (best, epoch 287) >= 0.7581 (target 0.7677)``."""
    if verdict.value is None:
        return verdict.reason
    where = f" ({verdict.judged}, epoch {verdict.epoch})" if verdict.epoch is not None else f" ({verdict.judged})"
    bar = ""
    if verdict.threshold is not None:
        bar = f" {'>=' if verdict.value >= verdict.threshold else '<'} {verdict.threshold:.4f}"
        bar += f" (target {verdict.target:g})" if verdict.target is not None else ""
    return f"{verdict.metric} {verdict.value:.4f}{where}{bar}"


def plot_curves(run: RunLogs, verdict: Verdict, band: Band | None,
                evals: list[dict[str, Any]]) -> Any:
    """Accuracy (top-1, top-5 where meaningful) with target, pass line, band and standalone evals;
    below, loss on a log scale with the learning rate on a second axis. Returns the figure."""
    plt = H.pyplot()
    fig, (acc_ax, loss_ax) = plt.subplots(2, 1, figsize=(10, 8), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    evaluated = run.evaluated
    metric = verdict.metric or "top1"
    if band is not None and metric == "top1":
        draw_top1_band(acc_ax, band)
    shown = ["top1"] + (["top5"] if top5_meaningful(run) else [])
    for column, style in zip(shown, ("o-", "s--")):
        series = _series(evaluated, column)
        if not series.empty:
            acc_ax.plot(series.index, series.values, style, markersize=3, label=column, zorder=4)
    if _pass_line_differs(verdict):
        acc_ax.axhline(verdict.threshold, color="tab:orange", linestyle="--", linewidth=1.2, zorder=2,
                       label=f"passes at {verdict.threshold:.4f}")
        if verdict.target is not None:
            acc_ax.axhspan(verdict.threshold, verdict.target, color="tab:orange", alpha=0.08, zorder=1)
    if verdict.target is not None:
        acc_ax.axhline(verdict.target, color="tab:red", linewidth=2, zorder=3,
                       label=f"target {verdict.metric} {verdict.target:g}")
    marks = _evals_to_mark(evals, metric)
    if marks:
        acc_ax.plot([m[0] for m in marks], [m[1] for m in marks], "*", color="tab:purple", markersize=14,
                    markeredgecolor="black", zorder=5, label="standalone eval (repro eval)")
        for epoch, value in marks:
            acc_ax.annotate(f"{value:.4f}", (epoch, value), textcoords="offset points", xytext=(8, -12),
                            color="tab:purple", fontsize=8)
    if verdict.best_epoch is not None and verdict.best_value is not None:
        acc_ax.annotate(f"best {verdict.best_value:.4f} @ {verdict.best_epoch}", (verdict.best_epoch, verdict.best_value),
                        textcoords="offset points", xytext=(-60, 12), arrowprops={"arrowstyle": "->"})
    for number, segment in enumerate(run.segments[1:]):
        first = run.primary.train_epochs[run.primary.train_epochs["segment"] == segment.index]["epoch"]
        if not first.empty:
            label = "resumed" if number == 0 else None  # one legend entry for every resume line
            acc_ax.axvline(int(first.min()) - 0.5, color="grey", linestyle="--", linewidth=0.8, label=label)
            loss_ax.axvline(int(first.min()) - 0.5, color="grey", linestyle="--", linewidth=0.8)
    judged = f"{verdict.judged} {metric} {verdict.value:.4f}" if verdict.value is not None else verdict.judged
    acc_ax.set(ylabel="eval accuracy", title=f"{run.name}: {verdict.status} ({judged})")
    acc_ax.grid(alpha=0.3)
    acc_ax.legend(loc="lower right", fontsize=8)

    _draw_loss(loss_ax, run, band)
    fig.tight_layout()
    return fig


def _draw_loss(loss_ax: Any, run: RunLogs, band: Band | None) -> None:
    epochs = run.epochs
    iters = run.train_iters
    drawn = []
    if not iters.empty and "loss" in iters.columns:
        loss = pd.to_numeric(iters["loss"], errors="coerce")
        keep = loss.map(lambda v: math.isfinite(v) and v > 0)
        if keep.any():
            loss_ax.plot(_epoch_axis(iters)[keep], loss[keep], color="tab:blue", alpha=0.25, linewidth=0.8,
                         label="train loss (logged)")
            drawn.append(loss[keep])
    for column, style, color, label in (("train_loss", "o-", "tab:blue", "train loss (epoch avg)"),
                                        ("eval_loss", "^:", "tab:cyan", "eval loss")):
        series = _series(epochs, column)
        series = series[series > 0]
        if not series.empty:
            loss_ax.plot(series.index, series.values, style, markersize=3, color=color, label=label)
            drawn.append(series)
    if band is not None and band.train_loss:
        points, _, _, upper = band.edges("train_loss")
        loss_ax.plot(points, upper, "--", color="tab:green", linewidth=1, label="band: train loss limit")
    if drawn:
        loss_ax.set_yscale("log")  # one eval loss of 48 must not flatten a train loss of 1.4
    loss_ax.set(xlabel="epoch", ylabel="loss (log scale)" if drawn else "loss")
    loss_ax.grid(alpha=0.3, which="both")
    lr_ax = loss_ax.twinx()
    if not iters.empty and "lr" in iters.columns:
        lr_ax.plot(_epoch_axis(iters), iters["lr"], color="tab:orange", linewidth=1, label="lr")
    elif "lr" in epochs.columns:
        lr_ax.plot(epochs.index, pd.to_numeric(epochs["lr"], errors="coerce"), color="tab:orange", label="lr")
    lr_ax.set_ylabel("learning rate", color="tab:orange")
    (lines, labels), (lr_lines, lr_labels) = loss_ax.get_legend_handles_labels(), lr_ax.get_legend_handles_labels()
    loss_ax.legend(lines + lr_lines, labels + lr_labels, loc="upper right", fontsize=8)


def plot_throughput(run: RunLogs, table: pd.DataFrame, steady: Throughput) -> Any | None:
    iters = run.train_iters
    if table.empty and (iters.empty or "ips" not in iters.columns):
        return None
    plt = H.pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    if not iters.empty and "ips" in iters.columns:
        ax.plot(_epoch_axis(iters), pd.to_numeric(iters["ips"], errors="coerce"), color="tab:blue", alpha=0.3,
                linewidth=0.8, label="ips (rank 0, logged lines)")
    if "steady_ips" in table.columns and table["steady_ips"].notna().any():
        ax.plot(table.index - 0.5, table["steady_ips"], "o", color="tab:blue", markersize=4,
                label="epoch steady state")
    if steady.per_device is not None:
        ax.axhline(steady.per_device, color="grey", linestyle="--", linewidth=1,
                   label=f"run steady state {steady.per_device:.4g}")
    ax.set(xlabel="epoch", ylabel="images/s per device", ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


# -- the page ------------------------------------------------------------------------------------
def upstream_name(upstream: dict[str, Any]) -> str:
    """The commit and what it truly is (``develop d178931f, standing in for release/2.6``): the
    manifest's own words, else the pin's when the commit is the pinned one."""
    commit = upstream.get("commit")
    if not commit:
        return "unknown" + (f" ({upstream['note']})" if upstream.get("note") else "")
    honest = upstream.get("commit_is")
    if not honest:
        try:
            pin = load_pin()
            honest = pin.describe() if pin.commit == commit else None
        except ReproError:
            honest = None
    return f"{commit} ({honest})" if honest else str(commit)


def provenance_rows(run: RunLogs, verdict: Verdict) -> list[tuple[str, Any]]:
    manifest = _dict(run.manifest)
    logs = ", ".join(str(path) for path in run.files.all_logs)
    if not manifest or "_unreadable" in manifest:
        damaged = run.files.manifest_path
        why = (f"unreadable ({damaged}), so only what the logs say is known" if damaged is not None
               else "none: plain upstream logs, so only what the logs say is known")
        return [("manifest", why),
                ("logs", logs), ("model", run.arch), ("classes", run.class_num),
                ("epochs configured", run.epochs_configured), ("launches", len(run.segments))]
    recipe, upstream, dataset = _dict(manifest.get("recipe")), _dict(manifest.get("upstream")), _dict(manifest.get("dataset"))
    platform, devices, harness = _dict(manifest.get("platform")), _dict(manifest.get("devices")), _dict(manifest.get("harness"))
    host, paddle, seed = _dict(harness.get("host")), _dict(manifest.get("paddle")), _dict(manifest.get("seed"))
    patches = [f"{p.get('name')}: {'applied' if p.get('applied') else 'NOT applied'}"
               + (f" (sha256 {str(p['sha256'])[:12]})" if p.get("sha256") else "")
               for p in upstream.get("patches") or [] if isinstance(p, dict)]
    fingerprint = _dict(dataset.get("fingerprint"))
    lists = [f"{split} list {_dict(fingerprint.get(f'{split}_list')).get('lines', '?')} lines, sha256 "
             f"{str(_dict(fingerprint.get(f'{split}_list')).get('sha256', '?'))[:12]}"
             for split in ("train", "val") if fingerprint.get(f"{split}_list")]
    data = "; ".join(lists + ([f"{fingerprint['classes']} classes"] if fingerprint.get("classes") else [])
                     + (["tiny generated subset"] if fingerprint.get("tiny") else [])) or dataset.get("note")
    report = _dict(devices.get("report"))
    cards = [f"{d.get('index', '')} {d.get('name', '')}".strip() for d in report.get("devices") or [] if isinstance(d, dict)]
    ranks = (f"GPUs {devices.get('gpus')}" if devices.get("gpus") is not None else f"{devices.get('cpu_ranks')} CPU ranks")
    dirty = " (with local changes)" if harness.get("dirty") else ""
    return [
        ("run id", manifest.get("run_id")),
        ("recipe", f"{recipe.get('name')} ({recipe.get('config')}, {recipe.get('arch')})"
                   + (" smoke" if manifest.get("smoke") else "")),
        ("status", f"{manifest.get('status')}; started {manifest.get('started')}, ended {manifest.get('ended')}"),
        ("upstream commit", upstream_name(upstream)),
        ("upstream source", upstream.get("archive") or upstream.get("url") or upstream.get("path")),
        ("patches", "; ".join(patches) or "none"),
        ("local changes", ", ".join(upstream.get("local_changes") or []) or "none"),
        ("dataset", dataset.get("root")),
        ("dataset fingerprint", data),
        ("platform", f"{platform.get('name')}: {platform.get('description')} ({platform.get('device')})"),
        ("devices", f"{ranks} x {devices.get('nnodes', 1)} node(s), world size {devices.get('world_size')}"
                    + (f"; {', '.join(cards)}" if cards else f"; {report.get('note')}" if report.get("note") else "")),
        ("paddle", paddle.get("version")),
        ("seed", f"{seed.get('value')} ({seed.get('source')})" if seed else None),
        ("harness commit", f"{harness.get('commit')}{dirty} (repro {harness.get('version')})"
                           if harness.get("commit") else harness.get("note")),
        ("host", f"{host.get('hostname')}: {host.get('os')}, {host.get('cpu_count')} CPUs, Python {host.get('python')}"),
        ("deviations", "; ".join(verdict.deviations) or "none"),
        ("logs", logs),
    ]


def _alarms(run: RunLogs) -> tuple[list[dict[str, Any]], str | None]:
    if run.files.manifest_path is None:
        return [], "no alarms.jsonl: plain upstream logs (repro train and repro watch record alarms)"
    path = RunDir(run.files.manifest_path.parent).alarms
    if not path.is_file():
        return [], f"no alarm raised ({path.name} absent)"
    return AlarmLog(path).alarms(), None


def build_page(run: RunLogs, verdict: Verdict, band: Band | None, band_line: str,
               curves_uri: str, throughput_uri: str | None, throughput: pd.DataFrame, steady: Throughput) -> H.HtmlPage:
    page = H.HtmlPage(title=f"repro report: {run.name}")
    rest = verdict.headline[len(verdict.status):].lstrip(" ,")  # the run, the reason, the deviations
    page.verdict(verdict.status, verdict_number(verdict), rest if verdict.value is not None or verdict.deviations else "")
    if verdict.detail_lines:
        page.add("Verdict details", H.bullets(verdict.detail_lines))
    page.add("Provenance", H.key_value_table(provenance_rows(run, verdict)))
    evals = standalone_evals(run)
    marked = ("target (red) over the pass line (orange, dashed)" if _pass_line_differs(verdict)
              else "target (red)" if verdict.target is not None else "no target")
    caption = (f"Eval accuracy with the {marked}; {band_line if band else band_line + ' (none drawn)'}; "
               f"standalone evals as purple stars ({len(_evals_to_mark(evals, verdict.metric or 'top1'))}); "
               "loss on a log scale with the learning rate.")
    page.add("Curves", H.image(curves_uri, f"curves of {run.name}", caption))

    alarms, why_none = _alarms(run)
    columns = ["time", "alarm", "epoch", "value", "expected", "detail"]
    page.add("Alarms", H.table(columns, [[a.get(c) for c in columns] for a in alarms]) if alarms
             else H.paragraph(why_none or "none", True))

    page.add("Eval history", _eval_history(run, band) + _standalone_table(evals, top5_meaningful(run)))
    body = H.image(throughput_uri, "throughput", "Rank 0's logged images/s per device; steady state leaves out "
                   "upstream's warm-up lines (repro.judge.throughput).") if throughput_uri else ""
    if steady.per_device is not None:
        body += H.paragraph(f"steady state {steady.per_device:.4g} images/s per device, data wait "
                            f"{steady.data_wait_share:.1%} of step time ({steady.lines} logged lines, "
                            f"{steady.excluded_lines} warm-up lines left out); training time "
                            f"{run.train_seconds / 3600:.2f} h")
    else:
        body += H.paragraph(f"no steady-state throughput: {steady.reason}", True)
    if not throughput.empty:
        names = {"logged_ips": "logged ips (last line)", "steady_ips": "steady images/s", "data_wait": "data wait share"}
        columns = list(throughput.columns)
        body += H.table(["epoch", *(names[c] for c in columns)],
                        [[int(e), *(_percent(row[c]) if c == "data_wait" else row[c] for c in columns)]
                         for e, row in throughput.iterrows()])
    page.add("Throughput", body)
    page.footer = "Written by repro report; self-contained (no network needed). Files beside it: " + ", ".join(REPORT_FILES)
    return page


def _percent(value: float) -> str:
    return f"{value:.2%}" if isinstance(value, float) and math.isfinite(value) else ""


def _eval_history(run: RunLogs, band: Band | None) -> str:
    evaluated = run.evaluated
    if evaluated.empty:
        return H.paragraph("no epoch was evaluated", True)
    columns = [c for c in ("top1", "top5", "eval_loss") if c in evaluated.columns and (c != "top5" or top5_meaningful(run))]
    header = ["epoch", *columns] + (["band lower limit", "band mean"] if band is not None else [])
    rows = []
    for epoch, row in evaluated[columns].apply(pd.to_numeric, errors="coerce").iterrows():
        limit = band.limit("top1", int(epoch)) if band is not None else None
        bounds = [limit[0], band.top1[int(epoch)]["mean"]] if limit else [None, None]
        rows.append([int(epoch), *row, *(bounds if band is not None else [])])
    return H.table(header, rows)


def _standalone_table(evals: list[dict[str, Any]], top5: bool) -> str:
    if not evals:
        return H.paragraph("no standalone eval (repro eval RUN evaluates the true best's weights)", True)
    metrics = ["top1", "top5"] if top5 else ["top1"]
    return H.paragraph("Standalone evals (repro eval, tools/eval.py):") + H.table(
        ["checkpoint", "epoch", "status", *metrics, "loss", "images", "sha256"],
        [[e.get("checkpoint"), e.get("epoch"), e.get("status"), *(e.get(m) for m in metrics), e.get("loss"),
          e.get("eval_set_size"), str(e.get("sha256") or "")[:12]] for e in evals])


# -- the files -----------------------------------------------------------------------------------
def epochs_csv(run: RunLogs) -> str:
    return run.epochs.drop(columns=["nonfinite_train", "nonfinite_eval"], errors="ignore").to_csv()


def summary_markdown(run: RunLogs, verdict: Verdict) -> str:
    table = run.epochs[[c for c in SUMMARY_COLUMNS if c in run.epochs.columns and (c != "top5" or top5_meaningful(run))]]
    lines = [f"# {verdict.status}: {run.name}", "", f"**{verdict.headline}**", ""]
    lines += [f"- {line.strip()}" for line in verdict.lines[1:]]
    lines += ["", f"![curves]({CURVES_PNG})", "", f"The full page: [{INDEX_HTML}]({INDEX_HTML})", "",
              "## Epochs", "", _markdown_table(table)]
    return "\n".join(lines) + "\n"


def _markdown_table(table: pd.DataFrame) -> str:
    header = ["epoch"] + list(table.columns)
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for epoch, row in table.iterrows():
        cells = [str(epoch)] + [H.format_value(value) for value in row]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def write_report(run: RunLogs, verdict: Verdict, out: Path, *, own_place: bool,
                 run_path: Path) -> dict[str, Any]:
    """Render everything first, then write each file atomically, ``report.json`` (returned) last."""
    identity = run_identity(run)
    out = claim_report_dir(Path(out), identity, own_place, run_path)
    band, band_line = run_band(run)
    curves = H.figure_png(plot_curves(run, verdict, band, standalone_evals(run)))
    throughput, steady = throughput_table(run), run_throughput(run)
    figure = plot_throughput(run, throughput, steady)
    throughput_png = H.figure_png(figure) if figure is not None else None
    page = build_page(run, verdict, band, band_line, H.png_data_uri(curves),
                      H.png_data_uri(throughput_png) if throughput_png else None, throughput, steady)
    files = {name: str(write_bytes_atomic(out / name, data)) for name, data in (
        (EPOCHS_CSV, epochs_csv(run).encode("utf-8")), (SUMMARY_MD, summary_markdown(run, verdict).encode("utf-8")),
        (CURVES_PNG, curves), (INDEX_HTML, page.render().encode("utf-8")))}
    report = {"kind": REPORT_KIND, "schema": REPORT_SCHEMA, "run": run.name, "path": str(run.files.root),
              "out": str(out), "files": {**files, REPORT_JSON: str(out / REPORT_JSON)}, "identity": identity,
              "band": band_line if band is not None else f"none: {band_line}", "verdict": verdict.to_dict()}
    write_text_atomic(out / REPORT_JSON, json.dumps(report, indent=1, sort_keys=True, default=str) + "\n")
    return report
