"""``repro runs``: the run directories under logs/ (status, recipe, verdict, size), and ``repro runs
prune``, which frees the disk their checkpoints take.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from repro.core.cli_wiring import aligned_columns, command, group, json_option
from repro.run import rundir
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, ReproError
from repro.core.filesystem_errors import describe_os_error
from repro.core.paths import DEFAULT_LOGS, fix_for_not_a_run
from repro.run.rundir import K_TRUE_BEST, K_WRITTEN, MANIFEST, STATUS_COMPLETED, group_node0, is_smoke, recipe_name
from repro.run.rundir import OUTPUT_DIR as OUTPUT
from repro.run.checkpoints import CHECKPOINT_NAME, changed_files, find_checkpoints, is_ours, resume_point
from repro.launch.truebest import TRUE_BEST
from repro.run.lock import held, is_active
from repro.judge.judge_cli import judge_run
from repro.logs.parse import parse_run


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path``, links not followed."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


@dataclass
class RunInfo:
    path: Path
    manifest: dict[str, Any]
    running: bool
    problem: str = ""  # why the run could not be opened (listed as unreadable, never pruned)

    @property
    def status(self) -> str:
        return ("unreadable" if self.problem else "running" if self.running
                else str(self.manifest.get("status") or "unknown"))

    @property
    def recipe(self) -> str:
        return recipe_name(self.manifest) or "?"

    @property
    def smoke(self) -> bool:
        return is_smoke(self.manifest)


def open_run(path: Path) -> RunInfo:
    if not (path / MANIFEST).is_file():
        raise ReproError(f"{path} is not a repro run directory (no {MANIFEST}); {fix_for_not_a_run(path)}",
                         EXIT_BAD_INPUT)
    try:
        manifest = rundir.read_manifest(path / MANIFEST)
    except ReproError:
        raise ReproError(f"{path / MANIFEST} is not readable JSON; nothing there is pruned (fix or remove the run by "
                         "hand)", EXIT_BAD_INPUT) from None
    return RunInfo(path, manifest, is_active(path))


def runs_under(logs_dir: Path) -> list[RunInfo]:
    """Every run directory one level under ``logs_dir`` (a multi-node group as its node 0's), each
    opened on its own: one that cannot be opened is listed as unreadable, never dropped, and never
    stops the others."""
    if not logs_dir.is_dir():
        raise ReproError(f"{logs_dir} is not a directory; pass the directory holding your runs: --logs-dir DIR",
                         EXIT_BAD_INPUT)
    found = []
    for child in sorted(logs_dir.iterdir()):
        try:
            if not child.is_dir() or child.is_symlink():
                continue
            path = child if (child / MANIFEST).is_file() else group_node0(child)
            if path is None:
                continue
            found.append(open_run(path))
        except ReproError as error:
            found.append(RunInfo(child, {}, False, error.message))
        except OSError as error:
            found.append(RunInfo(child, {}, False, describe_os_error(error)))
    return found


def verdict_word(run: RunInfo) -> str:
    """check-accuracy's status for the run with default options ("-" while it runs); a run that cannot
    be read or judged is UNREADABLE on its own."""
    if run.running:
        return "-"
    if run.problem:
        return "UNREADABLE"
    options = {"target": None, "metric": None, "eval_set_size": None, "recipe": None, "tolerance": None,
               "final": False, "allow_incomplete": False, "strict": False}
    try:
        return judge_run(parse_run(run.path), options).status
    except (ReproError, OSError):
        return "UNREADABLE"


# What the verdict's weights need once a run is over: the weights and the state naming their epoch
# (``repro eval`` reads these); the optimizer state (``.pdopt``, as big as the weights) only serves a resume.
JUDGED_PARTS = (".pdparams", ".pdstates", ".pdema")


def needed_files(run: RunInfo) -> dict[Path, str]:
    """The files a resume or the verdict still needs, each with why: the newest complete state (while
    the run can be resumed) and the judged weights (``true_best``, else the checkpoint of its epoch)."""
    output = run.path / OUTPUT
    needed: dict[Path, str] = {}
    finished = run.status == STATUS_COMPLETED
    point = None if finished else resume_point(output)
    if point is not None:
        epoch = f", epoch {point.epoch}" if point.epoch is not None else ""
        needed.update({path: f"the resume point{epoch}" for path in point.files()})
    best = run.manifest.get(K_TRUE_BEST)
    epoch = best.get("epoch") if isinstance(best, dict) else None
    checkpoints = {c.name: c for c in find_checkpoints(output)}
    judged = checkpoints.get(TRUE_BEST)
    if judged is None and isinstance(epoch, int):
        judged = next((c for name in (f"epoch_{epoch}", "best_model") if (c := checkpoints.get(name)) is not None
                       and c.epoch == epoch), None)
    if judged is not None:
        label = f", epoch {epoch}" if isinstance(epoch, int) else ""
        for path in judged.files():
            if not finished or path.name.endswith(JUDGED_PARTS):
                needed.setdefault(path, f"the judged weights{label}")
    return needed


@dataclass
class PrunePlan:
    delete: list[Path]
    kept: dict[str, str]  # checkpoint name -> why it stays (a resume or the verdict needs it)
    changed: list[Path]  # recorded, but its bytes differ from what training wrote: not ours to delete


def plan_prune(run: RunInfo, including: frozenset[str] = frozenset()) -> PrunePlan:
    """What pruning ``run`` deletes: the files training recorded that are still its own
    (:func:`repro.run.checkpoints.is_ours`, then their digests), except those a resume or the verdict
    needs unless their checkpoint is named in ``including``."""
    plan = PrunePlan([], {}, [])
    written = run.manifest.get(K_WRITTEN)
    output = run.path / OUTPUT
    if not isinstance(written, dict) or not output.is_dir() or output.is_symlink():
        return plan
    needed = needed_files(run)
    for name, record in sorted(written.items()):
        if not isinstance(name, str) or "/" in name or name in ("", ".", "..") or not isinstance(record, dict):
            continue
        path, checkpoint = output / name, name.split(".", 1)[0].removesuffix("_student")
        if not is_ours(path, written):
            if path.is_file() and not path.is_symlink():  # recorded, but changed since: not ours to delete
                plan.changed.append(path)
        elif path in needed and checkpoint not in including:
            plan.kept.setdefault(checkpoint, needed[path])
        elif changed_files([path], written):
            plan.changed.append(path)
        else:
            plan.delete.append(path)
    plan.changed.sort()
    return plan


@group("runs", exits={}, invoke_without_command=True)
@click.option("--logs-dir", type=click.Path(path_type=Path), default=DEFAULT_LOGS, show_default=True,
              help="Directory holding the run directories.")
@json_option("the runs (logs_dir, runs: path, status, recipe, smoke, verdict, bytes)")
@click.pass_context
def runs(ctx: click.Context, logs_dir: Path, as_json: bool) -> None:
    """List run directories: status, recipe, verdict and size on disk (`repro runs prune` frees it)."""
    ctx.obj = logs_dir
    if ctx.invoked_subcommand is not None:
        return
    found = runs_under(logs_dir)
    if as_json:
        click.echo(json.dumps({"logs_dir": str(logs_dir), "runs": [
            {"path": str(r.path), "status": r.status, "recipe": r.recipe, "smoke": r.smoke, "verdict": verdict_word(r),
             "bytes": tree_bytes(r.path)} for r in found]}, indent=2))
        return
    if not found:
        click.echo(f"no runs in {logs_dir}")
        return
    rows = [(str(r.path), r.status, r.recipe + (" (smoke)" if r.smoke else ""), verdict_word(r), human(tree_bytes(r.path)))
            for r in found]
    header = ("run", "status", "recipe", "verdict", "size")
    for line in aligned_columns([header, *rows]):
        click.echo(line)


@command("prune", parent=runs, exits={EXIT_CONFLICT: "a run named is running"})
@click.argument("run_dirs", metavar="[RUN]...", nargs=-1, type=click.Path(path_type=Path))
@click.option("--smoke", "smoke", is_flag=True, help="Prune every completed smoke run under --logs-dir.")
@click.option("--including", "including", multiple=True, metavar="CHECKPOINT",
              help="Delete this checkpoint too (latest, true_best, best_model, epoch_N) though a resume or the "
                   "verdict needs it; repeatable.")
@click.option("--dry-run", is_flag=True, help="List every file that would be deleted; delete nothing.")
@json_option("what was (or would be) deleted (dry_run, runs: path, files, bytes, kept, changed; freed_bytes)")
@click.pass_obj
def prune(logs_dir: Path, run_dirs: tuple[Path, ...], smoke: bool, including: tuple[str, ...], dry_run: bool,
          as_json: bool) -> None:
    """Delete the checkpoints the harness wrote (manifest's checkpoints_written) of the runs named,
    or with --smoke of completed smoke runs; never a log, a copied-in or changed checkpoint, a running
    run, nor what a resume or the verdict needs (the resume point, the judged weights) unless named
    with --including."""
    if not run_dirs and not smoke:
        raise ReproError("name the runs to prune (repro runs prune logs/RUN) or pass --smoke for completed smoke runs",
                         EXIT_BAD_INPUT)
    for name in including:
        if not CHECKPOINT_NAME.match(name):
            raise ReproError(f"--including {name!r} is not a checkpoint name: use latest, true_best, best_model or "
                             "epoch_N (e.g. epoch_6)", EXIT_BAD_INPUT)
    chosen = [open_run(path) for path in run_dirs]
    running = [str(r.path) for r in chosen if r.running]
    if running:
        raise ReproError(f"{', '.join(running)} is running (its .lock is held); prune it after it ends", EXIT_CONFLICT)
    if smoke:
        chosen += [r for r in runs_under(logs_dir) if r.smoke and r.status == STATUS_COMPLETED
                   and r.path not in {c.path for c in chosen}]
    named = frozenset(including)
    freed = 0
    verb = "would delete" if dry_run else "deleted"
    report = []
    failed: list[ReproError] = []
    for run in chosen:  # each run on its own: one that cannot be pruned never stops the others
        try:
            plan = plan_prune(run, named)
            size = sum(path.lstat().st_size for path in plan.delete)
            report.append({"path": str(run.path), "files": [path.name for path in plan.delete], "bytes": size,
                           "kept": plan.kept, "changed": [path.name for path in plan.changed]})
            if not as_json:
                click.echo(f"{run.path}: {verb} {len(plan.delete)} checkpoint file(s), {human(size)}")
                if dry_run:
                    for path in plan.delete:
                        click.echo(f"  {path}")
                for name, why in plan.kept.items():
                    click.echo(f"  kept {name}.*: {why} (`--including {name}` deletes it too)")
                for path in plan.changed:
                    click.echo(f"  kept {path.name}: changed since training wrote it (size, mtime or sha256), so it is "
                               "not the harness's to delete")
            if not dry_run and plan.delete:
                with held(run.path):
                    for path in plan_prune(run, named).delete:  # again, under the lock
                        path.unlink(missing_ok=True)
            freed += size
        except (ReproError, OSError) as error:
            if isinstance(error, OSError):
                error = ReproError(describe_os_error(error), EXIT_BAD_INPUT)
            failed.append(error)
            click.echo(f"{run.path}: error: {failed[-1].message}", err=True)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "runs": report, "freed_bytes": freed}, indent=2))
    else:
        click.echo(f"{'would free' if dry_run else 'freed'} {human(freed)} in {len(chosen)} run(s)")
    if failed:
        raise ReproError(f"{len(failed)} of {len(chosen)} run(s) could not be pruned (said above); the others were",
                         max(error.exit_code for error in failed))
