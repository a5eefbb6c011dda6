"""``repro compare CANDIDATE... --reference REFERENCE...``: a port's runs against a reference platform's,
one run per seed; ``--reference`` may also be one band file (``repro band build``). See docs/comparing.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from repro.core.cli_wiring import command, json_option
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_FAILED, EXIT_OK, ReproError
from repro.core.numeric_options import BoundedFloat
from repro.judge.band import BAND_KIND, Band
from repro.judge.compare import CANDIDATE, REFERENCE, ComparedRun, compare, from_band, from_verdict, reference_band
from repro.judge.compare_page import write_page
from repro.judge.judge_cli import distinct_paths, judge_run, judged_path
from repro.judge.targets import choose_target
from repro.logs.parse import RunLogs, parse_runs, refuse_duplicate_runs
from repro.recipes.catalog import compare_settings

COMPARE_EXITS = {
    EXIT_OK: "EQUIVALENT, and every candidate's curves inside the reference band",
    EXIT_FAILED: "NOT EQUIVALENT, or a candidate's top-1 or train loss leaves the reference band",
    EXIT_BAD_INPUT: "NOT SHOWN (too few seeds for the margin, or one run a side; curves inside the band), or bad "
                    "input: runs of different recipes, epochs or class counts, an unfinished run, a run given twice",
    EXIT_CONFLICT: "--html names a file repro compare did not write",
}


def is_band_file(path: Path) -> bool:
    if not path.is_file() or path.suffix not in (".yaml", ".yml"):
        return False
    with path.open(encoding="utf-8", errors="replace") as handle:
        return f"kind: {BAND_KIND}" in handle.read(4096)


def load_side(paths: tuple[Path, ...], options: dict, side: str) -> list[tuple[RunLogs, ComparedRun]]:
    return [(run, from_verdict(run, judge_run(run, options), side))
            for path in paths for run in parse_runs(judged_path(path))]


def refuse_duplicates(runs: list[RunLogs], band_runs: list[ComparedRun]) -> None:
    """A run given twice (one path twice, a copy, a run and its own workerlog.0) would count one seed
    twice: ``repro.logs.parse.refuse_duplicate_runs`` decides; a band's runs are known by run id."""
    identities = refuse_duplicate_runs(runs, "compare")
    recorded = {str(run.facts.get("run_id")): run for run in band_runs if run.facts.get("run_id")}
    for identity in identities:
        if identity.run_id and identity.run_id in recorded:
            raise ReproError(f"compare: {identity.path} is run {identity.run_id}, one of the band's own runs; a run "
                             "cannot be its own reference: pass another candidate or another band", EXIT_BAD_INPUT)


def same_setup(runs: list[tuple[RunLogs, ComparedRun]]) -> tuple[str, bool, int, int | None]:
    facts = [(str(c.facts.get("recipe") or "-"), bool(c.facts.get("smoke")), r.epochs_configured, r.class_num)
             for r, c in runs]
    for index, what in enumerate(("recipe", "smoke", "configured epochs", "class_num")):
        values = {str(f[index]) for f in facts}
        if len(values) > 1:
            where = ", ".join(f"{c.name}: {f[index]}" for (_, c), f in zip(runs, facts))
            raise ReproError(f"the runs differ in {what} ({where}); compare runs of one recipe and config", EXIT_BAD_INPUT)
    return facts[0]


@command("compare", exits=COMPARE_EXITS)
@click.argument("candidates", metavar="CANDIDATE...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--reference", "references", multiple=True, required=True, type=click.Path(path_type=Path),
              help="A reference run directory or log (repeat per seed), a directory of runs, or one band file.")
@click.option("--margin", type=BoundedFloat(0, 1, low_open=True, high_open=True), default=None,
              help="Equivalence margin on judged top-1, a fraction (0.005 = 0.5 point; default: the recipe's).")
@click.option("--final", is_flag=True, help="Judge every run by its last epoch (default: as the recipe's target says).")
@click.option("--recipe", default=None, help="Recipe whose target, band rule and margin apply (default: the runs').")
@click.option("--allow-incomplete", is_flag=True, help="Compare runs that have not finished their configured epochs.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Also write this page (compare.html): the table and both curves with the band.")
@click.option("-v", "--verbose", is_flag=True, help="Also print every candidate epoch against the band.")
@json_option("one object: outcome, exit_code, equivalence, curves, band, throughput, candidates, references")
@click.pass_context
def compare_command(ctx: click.Context, candidates: tuple[Path, ...], references: tuple[Path, ...], margin: float | None,
                    final: bool, recipe: str | None, allow_incomplete: bool, html_path: Path | None, verbose: bool,
                    as_json: bool) -> None:
    """Compare a port's runs (one per seed) with a reference platform's: curves, final top-1, speed.

    Curves: every candidate epoch against the band of the reference runs (top-1 below it or train loss
    above it is a breach). Final number: a TOST on the difference of mean judged top-1 within the
    margin: EQUIVALENT, NOT EQUIVALENT or NOT SHOWN (with the seeds per side needed). Throughput:
    steady images/s per device, the candidate/reference ratio and the share of each step spent waiting
    for data.
    """
    band_files = [path for path in references if is_band_file(path)]
    if band_files and len(references) > 1:
        raise ReproError("a band file is a whole reference: pass either one band file or reference runs; "
                         f"drop {band_files[0]} or the other --reference paths", EXIT_BAD_INPUT)
    distinct_paths(candidates + tuple(p for p in references if p not in band_files))
    options = {"target": None, "tolerance": None, "metric": None, "eval_set_size": None, "recipe": recipe,
               "final": final, "allow_incomplete": allow_incomplete, "strict": False}
    cands = load_side(candidates, options, CANDIDATE)
    if band_files:
        band = Band.load(band_files[0])
        refs = []
        recipe_name, smoke, epochs, class_num = same_setup(cands)
        if epochs is not None and epochs != band.epochs:
            raise ReproError(f"{band_files[0]} is a band for {band.epochs} epochs, the candidates are configured for "
                             f"{epochs}; build a band from runs of this config", EXIT_BAD_INPUT)
        reference_runs = from_band(band, cands[0][1].judged)
        if not reference_runs:
            raise ReproError(f"{band_files[0]} records no per-run top-1 (built before runs were recorded); rebuild it "
                             "with repro band build, or pass the reference runs", EXIT_BAD_INPUT)
    else:
        refs = load_side(references, options, REFERENCE)
        recipe_name, smoke, epochs, class_num = same_setup(cands + refs)
        reference_runs = [c for _, c in refs]
    refuse_duplicates([r for r, _ in cands + refs], reference_runs if band_files else [])
    chosen = choose_target(cands[0][0], None, None, None, recipe).recipe
    if not band_files:
        band = reference_band(chosen, smoke, int(epochs or max(max(c.top1, default=0) for c in reference_runs)),
                              class_num, reference_runs)
    result = compare([c for _, c in cands], reference_runs, band, compare_settings(chosen, smoke), margin)
    if as_json:
        click.echo(json.dumps(result.to_dict(), sort_keys=True, default=str))
    else:
        click.echo("\n".join(result.lines(verbose)))
    if html_path is not None:
        written = write_page(result, html_path)
        if not as_json:
            click.echo(f"wrote {written}")
    ctx.exit(result.exit_code)
