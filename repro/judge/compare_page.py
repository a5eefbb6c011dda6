"""``compare.html``: the comparison's verdict, its table and both curves with the reference band drawn.

One self-contained file (the figure is an embedded PNG), so it can be attached to a CI job or mailed.
Only a file this module wrote before is ever replaced: it starts with ``MARKER``.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training servers
import matplotlib.pyplot as plt  # noqa: E402

from repro.core.errors import EXIT_CONFLICT, ReproError  # noqa: E402
from repro.core.files import write_text_atomic  # noqa: E402
from repro.judge.compare import Comparison  # noqa: E402

MARKER = "<!-- repro compare page -->"


def figure_png(comparison: Comparison) -> bytes:
    """Top-1 and train loss per epoch: the band (mean -/+ k x std used), reference runs grey, candidates coloured."""
    band, k = comparison.band, comparison.band.settings.k
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric, table, limit in ((axes[0], "top1", band.top1, band.top1_limit),
                                       (axes[1], "train_loss", band.train_loss, band.loss_limit)):
        epochs = sorted(table)
        if epochs:
            widths = [limit(epoch, k)[1] * k for epoch in epochs]
            means = [table[epoch]["mean"] for epoch in epochs]
            axis.fill_between(epochs, [m - w for m, w in zip(means, widths)], [m + w for m, w in zip(means, widths)],
                              color="tab:blue", alpha=0.15, label=f"reference band (mean +- {k:g} x std)")
            axis.plot(epochs, means, color="tab:blue", linewidth=1, label="reference mean")
        for run in comparison.references:
            series = getattr(run, metric)
            axis.plot(sorted(series), [series[e] for e in sorted(series)], color="grey", linewidth=0.8, alpha=0.7)
        for run in comparison.candidates:
            series = getattr(run, metric)
            line, = axis.plot(sorted(series), [series[e] for e in sorted(series)], marker=".", label=run.name)
            if run.breach is not None and run.breach.what == metric:
                axis.plot([run.breach.epoch], [run.breach.value], "x", color=line.get_color(), markersize=10)
        axis.set_xlabel("epoch")
        axis.set_ylabel("eval top-1" if metric == "top1" else "train loss")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_page(comparison: Comparison, path: Path) -> Path:
    path = Path(path)
    if path.exists() and (path.is_dir() or not path.read_text(encoding="utf-8", errors="replace").startswith(MARKER)):
        raise ReproError(f"{path} exists and is not a page repro compare wrote; choose another --html path",
                         EXIT_CONFLICT)
    image = base64.b64encode(figure_png(comparison)).decode("ascii")
    lines = comparison.lines(verbose=True)
    body = [
        MARKER, "<!doctype html>", "<meta charset='utf-8'>", "<title>repro compare</title>",
        f"<h1>{html.escape(comparison.headline())}</h1>",
        f"<img alt='top-1 and train loss per epoch with the reference band' src='data:image/png;base64,{image}'>",
        "<pre>" + html.escape("\n".join(lines[2:])) + "</pre>",
    ]
    return write_text_atomic(path, "\n".join(body) + "\n")
