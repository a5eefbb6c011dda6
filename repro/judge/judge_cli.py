"""``repro check-accuracy`` and ``repro report``. check-accuracy's exit code is the contract CI and ``make
smoke`` rely on (``VERDICT_EXITS``); several runs are each judged alone and the worst code wins.
"""

from __future__ import annotations

import json
from functools import reduce
from itertools import combinations
from pathlib import Path

import click

from repro.core.numeric_options import BoundedFloat, BoundedInt
from repro.core.cli_wiring import command, json_option
from repro.core.dotted import lookup
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_FAILED, EXIT_OK, ReproError
from repro.logs.discover import RunFiles, discover, latest_run
from repro.logs.parse import RunLogs, UnreadableRun, final_epoch, parse_run, read_run, run_identity, same_run
from repro.judge.targets import choose_target, validate_options
from repro.judge.verdict import (FAIL, INCOMPLETE, LOSS_FALLS, PASS, UNREADABLE, Verdict, apply_deviations, judge,
                                 judge_loss_falls, reference_deviations)
from repro.recipes.catalog import load_recipe
from repro.run.rundir import K_NODES, group_node0, where_node0_is
from repro.judge.aggregate import aggregate as pool
from repro.judge.run_report import INDEX_HTML, default_report_dir, run_band, write_report
from repro.judge.compliance import check_compliance, world_of
from repro.judge.health import Pace

_target_options = [
    click.option("--target", type=BoundedFloat(0, 100), default=None, help="Target value (default: run manifest's, else the recipe's 0.7677)."),
    click.option("--tolerance", type=BoundedFloat(0, 1, high_open=True), default=None, help="Margin below the target that still passes (default: 2 sampling standard errors)."),
    click.option("--metric", default=None, help="Eval metric to judge (default: the target's, top1)."),
    click.option("--eval-set-size", type=BoundedInt(1, 10**9), default=None, help="Images in the eval set, for the default margin (default: the target's)."),
    click.option("--recipe", default=None, help="Recipe whose target and model apply (default: the manifest's, else resnest50)."),
    click.option("--final", is_flag=True, help="Judge the last epoch instead of the best one."),
    click.option("--allow-incomplete", is_flag=True, help="Judge a run that has not finished its configured epochs."),
    click.option("--strict", is_flag=True,
                 help="FAIL (exit 1) a run that deviates from the reference (overrides, GPU count, platform, upstream "
                      "commit, skipped pre-flight, smoke), is NONCOMPLIANT with the recipe's rules, or has no "
                      "manifest: for release gates."),
]


VERDICT_EXITS = {EXIT_OK: "PASS", EXIT_FAILED: "FAIL", EXIT_BAD_INPUT: "INCOMPLETE or UNREADABLE, or bad input"}


def target_options(function):
    return reduce(lambda decorated, option: option(decorated), reversed(_target_options), function)


def check_options(options: dict) -> None:
    validate_options(options["target"], options["tolerance"], options["eval_set_size"])
    if options["recipe"] is not None:
        load_recipe(options["recipe"])  # an unknown --recipe is bad input (one line naming the recipes), not a verdict


def judge_run(run: RunLogs, options: dict) -> Verdict:
    """One run judged as the options say, with its deviations from the reference and its compliance
    with the recipe's rules (under ``--strict`` a NONCOMPLIANT run is a deviation, so it FAILs):
    against its accuracy target, or by the loss check when it is a loss-check smoke."""
    choice = choose_target(run, options["target"], options["metric"], options["eval_set_size"], options["recipe"])
    deviations = reference_deviations(run, choice.recipe, options["strict"])
    compliance = check_compliance(run, choice.recipe)
    if options["strict"] and compliance is not None and compliance.violations:
        deviations.append(f"NONCOMPLIANT ({', '.join(check.rule for check in compliance.violations)})")
    if choice.check == LOSS_FALLS:
        verdict = judge_loss_falls(run)
    else:
        verdict = judge(run, choice.target, options["tolerance"], options["final"], options["allow_incomplete"],
                        expect_arch=choice.expect_arch, expect_class_num=choice.expect_class_num,
                        require_eval=options.get("require_eval", False))
    apply_deviations(verdict, deviations, options["strict"])
    verdict.compliance = compliance.to_dict() if compliance is not None else None
    verdict.warnings += node_mismatches(run)
    return verdict


def pace_lines(run: RunLogs) -> list[str]:
    """The run's steady speed, ETA (0 when done) and whole-run device-hours, and the shipped band's
    final range from its last eval: the report's time-and-cost lines."""
    world, _, source = world_of(run.manifest, run.launch_world)
    lines = [Pace.of_run(run).line(world, source if world else "")]
    band, _ = run_band(run)
    last = final_epoch(run)
    if band is not None and last is not None and last[0] < band.epochs:
        lines.append(band.final_range(last[0], last[1], run.epochs_configured))
    return lines


def compliance_lines(verdict: Verdict) -> list[str]:
    """check-accuracy's compliance block for one run: after its details, before its verdict line."""
    return [f"  {line}" for line in (verdict.compliance or {}).get("lines", [])]


def distinct_paths(paths: tuple[Path, ...]) -> None:
    """Refuse a path given twice, or one inside another: the same run would be judged twice (a cheap
    check on the paths; a copy elsewhere is one run too: ``repro.logs.parse.refuse_duplicate_runs``)."""
    for (path, real), (other, other_real) in combinations([(p, p.expanduser().resolve()) for p in paths], 2):
        if real == other_real or real in other_real.parents or other_real in real.parents:
            raise ReproError(f"{path} and {other} name the same run (or one holds the other): it would be judged "
                             "twice; pass each run once", EXIT_BAD_INPUT)


def judged_path(path: Path) -> Path:
    """Several nodes: a group directory is judged by node 0's run, which holds every log and checkpoint;
    another node's run directory has neither, so the answer is where node 0's is (one line, exit 2)."""
    message = where_node0_is(path)
    if message:
        raise ReproError(message, EXIT_BAD_INPUT)
    return group_node0(path) or path


def node_mismatches(run: RunLogs) -> list[str]:
    """What node 0 found different on another node (upstream, patches, data), from its manifest."""
    return [f"nodes: MISMATCH {line}" for line in lookup(run.manifest or {}, f"{K_NODES}.mismatches")[1] or []]


def find_runs(paths: tuple[Path, ...], latest: bool) -> list[tuple[int, RunFiles | UnreadableRun]]:
    """Every run under the paths, tagged with the index of the path it came from; a path that holds
    no run is UNREADABLE on its own. Another node's directory given alone is one line (where node 0's is)."""
    found: list[tuple[int, RunFiles | UnreadableRun]] = []
    for index, path in enumerate(paths):
        where = None
        try:
            where = judged_path(path)
            found += [(index, files) for files in discover(where)]
        except ReproError as error:
            if where is None and len(paths) == 1:
                raise  # another node's directory: the one line says where node 0's is
            found.append((index, UnreadableRun(str(path), path, error.message)))
    if latest:
        candidates = [(index, files) for index, files in found if isinstance(files, RunFiles)]
        newest = latest_run([files for _, files in candidates]) if candidates else None
        found = [(index, files) for index, files in candidates if files is newest] or found[-1:]
    return found


def copies(items: list[tuple[int, RunLogs | UnreadableRun]], aggregate: bool) -> dict[int, str]:
    """Runs that are one run (:func:`same_run`): refused when pooled (``--aggregate``) or named by two
    PATHS; found inside one directory, the later is judged with a note. Returns notes by position."""
    runs = [(position, index, run) for position, (index, run) in enumerate(items) if isinstance(run, RunLogs)]
    identities = {position: run_identity(run) for position, _, run in runs} if len(runs) > 1 else {}
    notes: dict[int, str] = {}
    for (i, path_i, _), (j, path_j, _) in combinations(runs, 2):
        first, why = identities[i], same_run(identities[i], identities[j])
        if why and (aggregate or path_i != path_j):
            what = "--aggregate" if aggregate else "check-accuracy"
            raise ReproError(f"{what}: {first.path} and {identities[j].path} are the same run ({why}); a copy "
                             "counts once: pass each run once", EXIT_BAD_INPUT)
        if why:
            notes.setdefault(j, f"the same run as {first.path} ({why}): a copy, not another run")
    return notes


def judge_each(found: list[tuple[int, RunFiles | UnreadableRun]], options: dict, aggregate: bool) -> list[Verdict]:
    """Each run judged on its own: one that cannot be read or judged is UNREADABLE with its reason,
    and never changes another run's verdict."""
    metric, judged = options["metric"] or "top1", "final" if options["final"] else "best"
    items = [(index, read_run(files) if isinstance(files, RunFiles) else files) for index, files in found]
    copy_note = copies(items, aggregate)
    verdicts = []
    for position, (_, item) in enumerate(items):
        if isinstance(item, UnreadableRun):
            verdicts.append(Verdict.unreadable(str(item.path), item.reason, metric, judged, name=item.name))
            continue
        try:
            verdict = judge_run(item, options)
        except ReproError as error:
            verdict = Verdict.unreadable(str(item.files.single_file or item.files.root), error.message, metric,
                                         judged, name=item.name)
        if position in copy_note:
            verdict.notes.append(copy_note[position])
        verdicts.append(verdict)
    return verdicts


def verdicts_for(path: Path, options: dict) -> list[Verdict]:
    """Every run under ``path`` judged on its own (watch's closing verdict)."""
    return judge_each(find_runs((path,), latest=False), options, aggregate=False)


def summary_line(verdicts: list[Verdict]) -> str:
    counts = ", ".join(f"{sum(v.status == status for v in verdicts)} {status}"
                       for status in (PASS, FAIL, INCOMPLETE, UNREADABLE) if any(v.status == status for v in verdicts))
    code = max(v.exit_code for v in verdicts)
    return f"summary: {len(verdicts)} runs: {counts}; exit {code} (the worst verdict among them)"


@command("check-accuracy", exits=VERDICT_EXITS)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@target_options
@click.option("--require-eval", is_flag=True,
              help="A PASS needs an agreeing standalone eval (`repro eval`) of the judged epoch, of weights whose "
                   "sha256 training recorded: missing is INCOMPLETE, disagreeing FAIL.")
@click.option("--latest", is_flag=True, help="Judge only the newest run under the paths (by its manifest's start time).")
@click.option("--aggregate", is_flag=True,
              help="Also judge the runs together: n, mean, std, min, max, olympic mean, 95% t-interval; the exit "
                   "code is the aggregate verdict's (mean >= threshold). A copy of a run is refused.")
@click.option("--mixed", is_flag=True, help="With --aggregate: pool runs of different recipes, targets, platforms "
                                            "or upstream commits.")
@click.option("-v", "--verbose", is_flag=True, help="With several runs: each run's details too, not only its verdict line.")
@json_option("one object per run, one a line (stable keys), for CI")
@click.pass_context
def check_accuracy(ctx: click.Context, paths: tuple[Path, ...], as_json: bool, aggregate: bool, mixed: bool,
                   latest: bool, verbose: bool, **options) -> None:
    """Judge runs' logs against the target.

    Each run is also checked against its recipe's rules (global batch, epochs, learning rate and
    schedule, warm-up, precision, classes, image sizes, dataset sizes, eval coverage) from upstream's
    config echo: COMPLIANT, NONCOMPLIANT with each violated rule, or NOT SHOWN; with --strict a
    NONCOMPLIANT run that would PASS is a FAIL (exit 1).

    PATH is a run directory, a log file (workerlog.0, train.log) or a directory of runs (each run one
    level down, a multi-node group as one). Each run is judged on its own: one verdict line per run,
    starting with the verdict and its number, then a summary; a run that cannot be read is
    UNREADABLE alone. With several runs the exit code is the worst among them (2 if any is
    INCOMPLETE or UNREADABLE, else 1 if any FAILs, else 0); --latest judges only the newest run.
    A loss-check smoke (no accuracy target at smoke scale) is judged by its falling loss.
    """
    check_options(options)
    if mixed and not aggregate:
        raise ReproError("--mixed only applies with --aggregate; add --aggregate or drop --mixed", EXIT_BAD_INPUT)
    verdicts = judge_each(find_runs(paths, latest), options, aggregate)
    pooled = pool(verdicts, mixed) if aggregate else None  # refused before anything is printed when not comparable
    several = len(verdicts) > 1
    for verdict in verdicts:
        if as_json:
            click.echo(json.dumps(verdict.to_dict(), sort_keys=True, default=str))
        elif several and not verbose:
            click.echo(f"{verdict.headline} -- {verdict.run}")
        else:
            click.echo("\n".join(verdict.lines + compliance_lines(verdict)))
    if several and not as_json:
        click.echo(summary_line(verdicts))
    if pooled is not None:
        click.echo(json.dumps(pooled.to_dict(), sort_keys=True, default=str) if as_json else "\n".join(pooled.lines))
        ctx.exit(pooled.exit_code)
    ctx.exit(max(verdict.exit_code for verdict in verdicts))


@command("report", exits={EXIT_OK: "report written (whatever the verdict, which it prints)",
                          EXIT_CONFLICT: "--out is a file, or holds another run's report or files no report wrote"})
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Directory for the report (default: RUN/report; for a loose log file LOG, LOG.report beside it).")
@target_options
@json_option("the object report.json holds (kind, schema, run, path, out, files: name -> path, identity, band, "
             "verdict: check-accuracy's object)")
def report(run_path: Path, out: Path | None, as_json: bool, **options) -> None:
    """Write RUN's report: index.html (one self-contained page), curves.png, epochs.csv, summary.md, report.json."""
    check_options(options)
    run_path = judged_path(run_path)
    run = parse_run(run_path)
    verdict = judge_run(run, options)
    verdict.details += [line.strip() for line in compliance_lines(verdict)] + pace_lines(run)
    default_out, own_place = default_report_dir(run)
    out = out or default_out
    own_place = own_place and out.expanduser().resolve() == default_out.resolve()
    written = write_report(run, verdict, out, own_place=own_place, run_path=run_path)
    if as_json:
        click.echo(json.dumps(written, sort_keys=True, default=str))
        return
    click.echo(verdict.headline)
    others = ", ".join(name for name in written["files"] if name != INDEX_HTML)
    click.echo(f"report: {Path(written['out']) / INDEX_HTML} (and {others})")
