"""``repro band build`` and ``repro band check``: convergence bands from several runs (repro.judge.band)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from repro.core.numeric_options import BoundedFloat
from repro.judge.band import MAX_K, MIN_RUNS, Band, build_band, build_hint, run_facts, run_series, shipped_band_path
from repro.core.cli_wiring import command, group, json_option
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_FAILED, EXIT_OK, ReproError
from repro.judge.health import health_settings
from repro.logs.parse import parse_run, refuse_duplicate_runs
from repro.recipes.catalog import DEFAULT_RECIPE, load_recipe


@group("band", exits={})
def band() -> None:
    """Convergence bands: per-epoch top-1 (and train loss) of good runs, as data."""


@command("build", parent=band, exits={EXIT_BAD_INPUT: "bad input: fewer than 3 runs, or runs that are not completed or differ",
                                     EXIT_CONFLICT: "--out exists (pass --force)"})
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Band file to write (YAML).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def band_build(runs: tuple[Path, ...], out: Path, force: bool) -> None:
    """Build a band from N >= 3 completed runs of one recipe (run directories made by repro train)."""

    if len(runs) < MIN_RUNS:
        raise ReproError(f"a band needs >= {MIN_RUNS} completed runs, got {len(runs)}; pass more run directories",
                         EXIT_BAD_INPUT)
    parsed = [parse_run(path) for path in runs]
    refuse_duplicate_runs(parsed, "band build")  # a copy (or one run twice) would make a 3-run band of 2
    facts = [run_facts(run) for run in parsed]
    for run, fact in zip(parsed, facts):
        configured = run.epochs_configured
        if fact["status"] not in (None, "completed") or configured is None or run.epochs_completed < configured:
            raise ReproError(f"{fact['path']} is not a completed run (status {fact['status']}, "
                             f"{run.epochs_completed} of {configured} epochs); pass only completed runs", EXIT_BAD_INPUT)
    for key in ("recipe", "smoke", "epochs", "class_num", "platform", "upstream_commit"):  # the last two: a note
        values = sorted({str(f[key]) for f in facts})
        if len(values) > 1 and key in ("platform", "upstream_commit"):
            click.echo(f"band: note: the runs differ in {key} ({', '.join(values)}); recorded per run", err=True)
        elif len(values) > 1:
            raise ReproError(f"the runs differ in {key} ({', '.join(values)}); a band is of one recipe and config: "
                             "pass runs of one", EXIT_BAD_INPUT)
    recipe = load_recipe(str(facts[0]["recipe"] or DEFAULT_RECIPE))
    smoke = facts[0]["smoke"]
    settings = health_settings(recipe.data, smoke).band
    top1 = [run_series(run, "top1") for run in parsed]
    loss = [run_series(run, "train_loss") for run in parsed]
    for fact, series, losses in zip(facts, top1, loss):
        fact["top1"] = {int(e): round(v, 6) for e, v in sorted(series.items())}
        fact["train_loss"] = {int(e): round(v, 6) for e, v in sorted(losses.items())}
    built = build_band(recipe, smoke, int(facts[0]["epochs"]), facts[0]["class_num"], settings, top1, loss,
                       [{k: v for k, v in f.items() if k != "status"} for f in facts])
    built.write(out, force=force)
    click.echo(f"band: wrote {out}: {len(parsed)} runs, epochs {min(built.top1)}-{max(built.top1)}, k = {settings.k:g}")
    for epoch, stats in sorted(built.top1.items()):
        click.echo(f"  epoch {epoch:>3}: top1 mean {stats['mean']:.4f} std {stats['std']:.4f} "
                   f"[{stats['min']:.4f}, {stats['max']:.4f}] olympic {stats['olympic_mean']:.4f}")


@command("check", parent=band, exits={EXIT_OK: "within the band", EXIT_FAILED: "outside the band",
                                     EXIT_BAD_INPUT: "no band for the run, or bad input"})
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--band", "band_path", type=click.Path(path_type=Path), default=None,
              help="Band file (default: the band shipped for the run's recipe, if any).")
@click.option("--k", type=BoundedFloat(0, MAX_K, low_open=True), default=None, help="Standard deviations (default: the band's).")
@json_option("the result")
@click.pass_context
def band_check(ctx: click.Context, run_path: Path, band_path: Path | None, k: float | None, as_json: bool) -> None:
    """Report the first epoch where RUN leaves the band: exit 0 within, 1 outside, 2 no band."""

    run = parse_run(run_path)
    fact = run_facts(run)
    if band_path is None:
        recipe = fact["recipe"] or "resnest50"
        path = shipped_band_path(recipe, fact["smoke"])
        if not path.is_file():
            raise ReproError(f"no convergence band ships for recipe {recipe}{' (smoke)' if fact['smoke'] else ''} "
                             f"(no set of >= {MIN_RUNS} runs exists yet); {build_hint(fact['smoke'])}, "
                             f"then repro band check {run_path} --band band.yaml", EXIT_BAD_INPUT)
        band_path = path
    loaded = Band.load(band_path)
    if run.epochs_configured and run.epochs_configured != loaded.epochs:
        raise ReproError(f"{band_path} is a band for {loaded.epochs} epochs, {run_path} is configured for "
                         f"{run.epochs_configured}; build a band from runs of this config", EXIT_BAD_INPUT)
    used_k = loaded.settings.k if k is None else k
    top1 = run_series(run, "top1")
    loss = run_series(run, "train_loss")
    breach = loaded.first_breach(top1, loss, used_k)
    outside = loaded.first_outside_range(top1)
    checked = sorted(set(top1) & set(loaded.top1))
    result = {"run": str(run_path), "band": str(band_path), "k": used_k, "epochs_checked": checked,
              "within": breach is None, "breach": breach.to_dict() if breach else None,
              "outside_range": dict(zip(("epoch", "value", "min", "max"), outside)) if outside else None}
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(f"band: {loaded.describe()}")
        click.echo(f"band: {run_path}: {len(checked)} epoch(s) checked, k = {used_k:g} "
                   "(wider early: the std used is at least the floor of its epoch)")
        for epoch in checked:
            limit = loaded.limit("top1", epoch, used_k)
            lower = f"{limit[0]:.4f}" if limit else "-"
            line = f"  epoch {epoch:>3}: top1 {top1[epoch]:.4f} (band >= {lower}, mean {loaded.top1[epoch]['mean']:.4f})"
            upper = loaded.limit("train_loss", epoch, used_k)
            if epoch in loss and upper:
                line += f"  train loss {loss[epoch]:.4f} (band <= {upper[0]:.4f})"
            click.echo(line)
        if breach is None:
            click.echo(f"band: WITHIN the band at every epoch checked ({len(checked)} of {loaded.epochs})")
        else:
            click.echo(f"band: OUTSIDE THE BAND first at {breach.describe(used_k)}")
        if outside:
            click.echo(f"band: note: epoch {outside[0]} top1 {outside[1]:.4f} is outside the range "
                       f"[{outside[2]:.4f}, {outside[3]:.4f}] of the band's runs (a note, not a failure: "
                       f"a good run leaves the range of n runs with probability 2/(n+1) per epoch)")
    ctx.exit(0 if breach is None else EXIT_FAILED)
