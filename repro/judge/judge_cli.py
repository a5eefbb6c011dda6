"""``repro check-accuracy``, ``repro report`` and ``repro watch``.

check-accuracy's exit code is the contract CI and ``make smoke`` rely on (``VERDICT_EXITS``); with
several paths the worst code wins.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from repro.core.numeric_options import BoundedFloat, BoundedInt
from repro.core.cli_wiring import command, json_option
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_FAILED, EXIT_OK, ReproError
from repro.logs.parse import RunLogs, parse_runs
from repro.judge.targets import choose_target, validate_options
from repro.judge.verdict import Verdict, judge, reference_deviations
from repro.run.rundir import K_NODES, MANIFEST, group_node0, read_manifest, where_node0_is
from repro.judge.aggregate import aggregate as pool
from repro.logs.parse import parse_run
from repro.judge.run_report import INDEX_HTML, default_report_dir, write_report
from repro.judge.compliance import check_compliance

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
    for option in reversed(_target_options):
        function = option(function)
    return function


def judge_run(run: RunLogs, options: dict) -> Verdict:
    """One run judged as the options say, with its deviations from the reference and its compliance
    with the recipe's rules (under ``--strict`` a NONCOMPLIANT run is a deviation, so it FAILs)."""
    choice = choose_target(run, options["target"], options["metric"], options["eval_set_size"], options["recipe"])
    deviations = reference_deviations(run, choice.recipe, options["strict"])
    compliance = check_compliance(run, choice.recipe)
    if options["strict"] and compliance is not None and compliance.violations:
        deviations.append(f"NONCOMPLIANT ({', '.join(check.rule for check in compliance.violations)})")
    verdict = judge(run, choice.target, options["tolerance"], options["final"], options["allow_incomplete"],
                    expect_arch=choice.expect_arch, expect_class_num=choice.expect_class_num,
                    deviations=deviations, strict=options["strict"], require_eval=options.get("require_eval", False))
    verdict.compliance = compliance.to_dict() if compliance is not None else None
    return verdict


def compliance_lines(verdict: Verdict) -> list[str]:
    """check-accuracy's compliance block for one run: after its details, before its verdict line."""
    return [f"  {line}" for line in (verdict.compliance or {}).get("lines", [])]


def distinct_paths(paths: tuple[Path, ...]) -> None:
    """Refuse a path given twice, or one inside another: the same run would be judged twice."""
    resolved = [(path, path.expanduser().resolve()) for path in paths]
    for i, (path, real) in enumerate(resolved):
        for other, other_real in resolved[i + 1:]:
            if real == other_real or real in other_real.parents or other_real in real.parents:
                raise ReproError(
                    f"{path} and {other} name the same run (or one holds the other): it would be judged twice; "
                    "pass each run once",
                    EXIT_BAD_INPUT,
                )


def judged_path(path: Path) -> Path:
    """Several nodes: a group directory is judged by node 0's run, which holds every log and checkpoint;
    another node's run directory has neither, so the answer is where node 0's is (one line, exit 2)."""
    message = where_node0_is(path)
    if message:
        raise ReproError(message, EXIT_BAD_INPUT)
    return group_node0(path) or path


def node_mismatches(path: Path) -> list[str]:
    """What node 0 found different on another node (upstream, patches, data), from its manifest."""
    try:
        record = read_manifest(Path(path) / MANIFEST).get(K_NODES) or {}
    except ReproError:
        return []
    return [f"nodes: MISMATCH {line}" for line in record.get("mismatches") or []]


def verdicts_for(path: Path, options: dict) -> list[Verdict]:
    """Every run under ``path`` judged; an unreadable path becomes an UNREADABLE verdict, not an abort."""
    try:
        runs = parse_runs(path)
        verdicts = []
        for run in runs:
            verdicts.append(judge_run(run, options))
        return verdicts
    except ReproError as error:
        return [Verdict.unreadable(str(path), error.message, options["metric"] or "top1", "final" if options["final"] else "best")]


@command("check-accuracy", exits=VERDICT_EXITS)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@target_options
@click.option("--require-eval", is_flag=True,
              help="A PASS needs an agreeing standalone eval (`repro eval`) of the judged epoch, of weights whose "
                   "sha256 training recorded: missing is INCOMPLETE, disagreeing FAIL.")
@click.option("--aggregate", is_flag=True,
              help="Also judge the runs together: n, mean, std, min, max, olympic mean, 95% t-interval; the exit "
                   "code is the aggregate verdict's (mean >= threshold).")
@click.option("--mixed", is_flag=True, help="With --aggregate: pool runs of different recipes, targets, platforms "
                                            "or upstream commits.")
@json_option("one object per run, one a line (stable keys), for CI")
@click.pass_context
def check_accuracy(ctx: click.Context, paths: tuple[Path, ...], as_json: bool, aggregate: bool, mixed: bool,
                   **options) -> None:
    """Judge runs' logs against the target.

    Each run is also checked against its recipe's rules (global batch, epochs, learning rate and
    schedule, warm-up, precision, classes, image sizes, dataset sizes, eval coverage) from upstream's
    config echo: COMPLIANT, NONCOMPLIANT with each violated rule, or NOT SHOWN; with --strict a
    NONCOMPLIANT run that would PASS is a FAIL (exit 1).

    PATH is a run directory, a log file (workerlog.0, train.log) or a directory of runs.
    """
    validate_options(options["target"], options["tolerance"], options["eval_set_size"])
    if mixed and not aggregate:
        raise ReproError("--mixed only applies with --aggregate; add --aggregate or drop --mixed", EXIT_BAD_INPUT)
    distinct_paths(paths)
    judged = [judged_path(path) for path in paths]
    verdicts = [verdict for path in judged for verdict in verdicts_for(path, options)]
    pooled = None
    if aggregate:

        pooled = pool(verdicts, mixed)  # refused before anything is printed when the runs are not comparable
    for verdict in verdicts:
        if as_json:
            click.echo(json.dumps(verdict.to_dict(), sort_keys=True, default=str))
        else:
            click.echo("\n".join(verdict.lines[:-1] + compliance_lines(verdict) + verdict.lines[-1:]))
    for path in judged:
        for line in node_mismatches(path):
            click.echo(line, err=as_json)
    if len(verdicts) > 1 and not as_json:
        click.echo("verdicts:")
        for verdict in verdicts:
            click.echo(f"  {verdict.headline}")
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
    validate_options(options["target"], options["tolerance"], options["eval_set_size"])
    run_path = judged_path(run_path)
    run = parse_run(run_path)
    choice = choose_target(run, options["target"], options["metric"], options["eval_set_size"], options["recipe"])
    verdict = judge_run(run, options)
    default_out, own_place = default_report_dir(run)
    out = out or default_out
    own_place = own_place and out.expanduser().resolve() == default_out.resolve()
    written = write_report(run, verdict, choice.target, out, own_place=own_place, run_path=run_path)
    if as_json:
        click.echo(json.dumps(written.to_dict(), sort_keys=True, default=str))
        return
    click.echo(verdict.headline)
    click.echo(f"report: {written.out / INDEX_HTML} (and {', '.join(n for n in written.files if n != INDEX_HTML)})")
