"""The picture and tables a person looks at first: epochs.csv, summary.md, curves.png.

Only files this module names are written (never anything else in the output directory), so pointing
``--out`` at a run directory cannot clobber a log or checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from repro.core.errors import EXIT_CONFLICT, ReproError  # noqa: E402
from repro.logs.parse import RunLogs  # noqa: E402
from repro.judge.verdict import Verdict  # noqa: E402
from repro.recipes.catalog import Target  # noqa: E402

SUMMARY_COLUMNS = ["segment", "train_loss", "lr", "ips", "top1", "top5", "eval_loss"]


def _out_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise ReproError(f"--out {out} is a file; give a directory for epochs.csv, summary.md and curves.png", EXIT_CONFLICT)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_epochs_csv(run: RunLogs, path: Path) -> Path:
    run.epochs.drop(columns=["nonfinite_train", "nonfinite_eval"], errors="ignore").to_csv(path)
    return path


def write_summary(run: RunLogs, verdict: Verdict, path: Path) -> Path:
    table = run.epochs[[c for c in SUMMARY_COLUMNS if c in run.epochs.columns]]
    lines = [f"# {verdict.status}: {run.name}", "", f"**{verdict.headline}**", ""]
    lines += [f"- {line.strip()}" for line in verdict.lines[1:]]
    lines += ["", "![curves](curves.png)", "", "## Epochs", "", _markdown_table(table)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _markdown_table(table: pd.DataFrame) -> str:
    header = ["epoch"] + list(table.columns)
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for epoch, row in table.iterrows():
        cells = [str(epoch)] + [_cell(value) for value in row]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.5g}"
    return "" if value is None else str(value)


def plot_curves(run: RunLogs, verdict: Verdict, target: Target | None, path: Path) -> Path:
    """Accuracy with the target and pass line above; train loss with lr (second axis) below."""
    epochs = run.epochs
    fig, (acc_ax, loss_ax) = plt.subplots(2, 1, figsize=(10, 8), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    evaluated = run.evaluated
    for metric, style in (("top1", "o-"), ("top5", "s--")):
        if metric in evaluated.columns:
            series = pd.to_numeric(evaluated[metric], errors="coerce").dropna()
            acc_ax.plot(series.index, series.values, style, markersize=3, label=metric)
    if target is not None:  # a loss-check smoke has none
        acc_ax.axhline(target.value, color="tab:red", linewidth=1.2, label=f"target {target.metric} {target.value:g}")
    if verdict.threshold is not None:
        acc_ax.axhline(verdict.threshold, color="tab:red", linestyle=":", linewidth=1, label=f"passes at {verdict.threshold:.4f}")
    if verdict.best_epoch is not None:
        acc_ax.annotate(f"best {verdict.best_value:.4f} @ {verdict.best_epoch}", (verdict.best_epoch, verdict.best_value),
                        textcoords="offset points", xytext=(-60, 10), arrowprops={"arrowstyle": "->"})
    for number, segment in enumerate(run.segments[1:]):
        first = run.primary.train_epochs[run.primary.train_epochs["segment"] == segment.index]["epoch"]
        if not first.empty:
            label = "resumed" if number == 0 else None  # one legend entry for every resume line
            acc_ax.axvline(int(first.min()) - 0.5, color="grey", linestyle="--", linewidth=0.8, label=label)
            loss_ax.axvline(int(first.min()) - 0.5, color="grey", linestyle="--", linewidth=0.8)
    acc_ax.set_ylabel("eval accuracy")
    acc_ax.set_title(f"{run.name}: {verdict.status} ({verdict.judged} {verdict.metric} vs target)")
    acc_ax.grid(alpha=0.3)
    acc_ax.legend(loc="lower right")

    if "train_loss" in epochs.columns:
        loss = pd.to_numeric(epochs["train_loss"], errors="coerce")
        loss_ax.plot(loss.index, loss.values, "o-", markersize=3, color="tab:blue", label="train loss (epoch avg)")
    if "eval_loss" in epochs.columns:
        loss = pd.to_numeric(epochs["eval_loss"], errors="coerce")
        loss_ax.plot(loss.index, loss.values, ".:", color="tab:cyan", label="eval loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.grid(alpha=0.3)
    lr_ax = loss_ax.twinx()
    iters = run.train_iters
    if not iters.empty and "lr" in iters.columns:
        x = iters["epoch"] - 1 + (iters["iter"] + 1) / iters["iters"]
        lr_ax.plot(x, iters["lr"], color="tab:orange", linewidth=1, label="lr")
    elif "lr" in epochs.columns:
        lr_ax.plot(epochs.index, pd.to_numeric(epochs["lr"], errors="coerce"), color="tab:orange", label="lr")
    lr_ax.set_ylabel("learning rate", color="tab:orange")
    handles = loss_ax.get_legend_handles_labels()
    lr_handles = lr_ax.get_legend_handles_labels()
    loss_ax.legend(handles[0] + lr_handles[0], handles[1] + lr_handles[1], loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run: RunLogs, verdict: Verdict, target: Target | None, out: Path) -> list[Path]:
    out = _out_dir(Path(out))
    return [
        write_epochs_csv(run, out / "epochs.csv"),
        write_summary(run, verdict, out / "summary.md"),
        plot_curves(run, verdict, target, out / "curves.png"),
    ]
