"""``compare.html``: the comparison's verdict, table and curves with the reference band, self-contained
(:mod:`repro.judge.html_page`). Only a page this module wrote (its title starts with ``MARKER``) is replaced.
"""

from __future__ import annotations

from pathlib import Path

from repro.core.files import open_regular_file
from repro.core.errors import EXIT_CONFLICT, ReproError
from repro.judge import html_page as H
from repro.judge.compare import Comparison

MARKER = "<title>repro compare"


def draw(comparison: Comparison):
    """Top-1 and train loss per epoch: the band (mean -/+ k x std used), reference runs grey, candidates coloured."""
    band, k = comparison.band, comparison.band.settings.k
    plt = H.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in ((axes[0], "top1"), (axes[1], "train_loss")):
        epochs, lower, means, upper = band.edges(metric)
        if epochs:
            axis.fill_between(epochs, lower, upper, color="tab:blue", alpha=0.15,
                              label=f"reference band (mean +- {k:g} x std)")
            axis.plot(epochs, means, color="tab:blue", linewidth=1, label="reference mean")
        for run in comparison.references:
            series = getattr(run, metric)
            axis.plot(sorted(series), [series[e] for e in sorted(series)], color="grey", linewidth=0.8, alpha=0.7)
        for run in comparison.candidates:
            series = getattr(run, metric)
            line, = axis.plot(sorted(series), [series[e] for e in sorted(series)], marker=".", label=run.name)
            if run.breach is not None and run.breach.what == metric:
                axis.plot([run.breach.epoch], [run.breach.value], "x", color=line.get_color(), markersize=10)
        axis.set(xlabel="epoch", ylabel="eval top-1" if metric == "top1" else "train loss")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _page_head(path: Path) -> str:
    """The first 4 KiB of an existing file at ``--html`` (a FIFO or a device there is refused, never read)."""
    with open_regular_file(path) as handle:
        return handle.read(4096).decode("utf-8", "replace")


def write_page(comparison: Comparison, path: Path) -> Path:
    path = Path(path)
    if path.exists() and (path.is_dir() or MARKER not in _page_head(path)):
        raise ReproError(f"{path} exists and is not a page repro compare wrote; choose another --html path",
                         EXIT_CONFLICT)
    curves = H.figure_data_uri(draw(comparison))
    equivalence = comparison.equivalence
    page = H.HtmlPage(title=f"repro compare: {len(comparison.candidates)} candidate(s) vs "
                            f"{len(comparison.references)} reference run(s)")
    page.verdict(equivalence.outcome, " " + comparison.headline()[len(equivalence.outcome):].lstrip(":"),
                 comparison.curves_line())
    page.add("Curves", H.image(curves, "top-1 and train loss per epoch with the reference band",
                               "Shaded: the reference band; grey: reference runs; x: a candidate's first epoch outside."))
    page.add("Runs", "<pre class='mono'>" + H.escape("\n".join(comparison.table_lines())) + "</pre>")
    page.add("Equivalence of the final number", H.bullets(comparison.equivalence_lines()))
    page.add("Throughput", H.bullets(comparison.throughput_lines()))
    page.add("Band", H.bullets([comparison.band.describe()] + comparison.notes))
    page.add("Per epoch, candidates against the band", "<pre class='mono'>" + H.escape("\n".join(comparison.epoch_lines()))
             + "</pre>")
    page.footer = "written by repro compare (repro.judge.compare_page)"
    return page.write(path)
