"""``repro runs``: the run directories under logs/ (status, recipe, verdict, size), and ``repro runs
prune``, which frees the disk their checkpoints take.

A smoke run leaves several hundred MB of checkpoints nobody needs once it has passed. Pruning deletes
only what the harness itself wrote: a file the manifest's ``checkpoints_written`` records, in the
run's ``output/``, still that very file (same size and modification time as recorded, a regular file,
not a link). Never a log, the manifest, a checkpoint someone copied in, nor anything of a run that
is running (its ``.lock`` flock is held, as :mod:`repro.run.lock` holds it for a whole segment).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from repro.core.cli_wiring import command, group, json_option
from repro.run import rundir
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, ReproError
from repro.run.rundir import MANIFEST
from repro.run.rundir import OUTPUT_DIR as OUTPUT
from repro.run.lock import held, is_active
from repro.judge.judge_cli import judge_run
from repro.logs.parse import parse_run


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The run's manifest through the one reader (:mod:`repro.run.rundir`); None if missing or unreadable."""
    try:
        return rundir.read_manifest(run_dir / MANIFEST)
    except ReproError:
        return None


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path``, links not followed."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


@dataclass
class RunInfo:
    path: Path
    manifest: dict[str, Any]
    running: bool

    @property
    def status(self) -> str:
        return "running" if self.running else str(self.manifest.get("status") or "unknown")

    @property
    def recipe(self) -> str:
        recipe = self.manifest.get("recipe")
        return str((recipe.get("name") if isinstance(recipe, dict) else recipe) or "?")

    @property
    def smoke(self) -> bool:
        return self.manifest.get("smoke") is True


def open_run(path: Path) -> RunInfo:
    if not (path / MANIFEST).is_file():
        raise ReproError(f"{path} is not a repro run directory (no {MANIFEST}); pass a directory `repro runs` lists",
                         EXIT_BAD_INPUT)
    manifest = read_manifest(path)
    if manifest is None:
        raise ReproError(f"{path / MANIFEST} is not readable JSON; nothing there is pruned (fix or remove the run by hand)",
                         EXIT_BAD_INPUT)
    return RunInfo(path, manifest, is_active(path))


def runs_under(logs_dir: Path) -> list[RunInfo]:
    if not logs_dir.is_dir():
        raise ReproError(f"{logs_dir} is not a directory; pass the directory holding your runs: --logs-dir DIR",
                         EXIT_BAD_INPUT)
    found = []
    for child in sorted(logs_dir.iterdir()):
        if child.is_dir() and not child.is_symlink() and (child / MANIFEST).is_file():
            try:
                found.append(open_run(child))
            except ReproError:
                continue
    return found


def verdict_word(run: RunInfo) -> str:
    """check-accuracy's status for the run with default options ("-" while it runs)."""
    if run.running:
        return "-"

    options = {"target": None, "metric": None, "eval_set_size": None, "recipe": None, "tolerance": None,
               "final": False, "allow_incomplete": False, "strict": False}
    try:
        return judge_run(parse_run(run.path), options).status
    except ReproError:
        return "UNREADABLE"


def prunable(run: RunInfo) -> list[Path]:
    """The checkpoint files of ``run`` that the harness recorded as written and that are unchanged since."""
    written = run.manifest.get("checkpoints_written")
    output = run.path / OUTPUT
    if not isinstance(written, dict) or not output.is_dir() or output.is_symlink():
        return []
    files = []
    for name, record in sorted(written.items()):
        if not isinstance(name, str) or "/" in name or name in ("", ".", "..") or not isinstance(record, dict):
            continue
        path = output / name
        try:
            info = path.lstat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and record.get("size") == info.st_size and record.get("mtime_ns") == info.st_mtime_ns:
            files.append(path)
    return files


@group("runs", exits={}, invoke_without_command=True)
@click.option("--logs-dir", type=click.Path(path_type=Path), default=Path("logs"), show_default=True,
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
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@command("prune", parent=runs, exits={EXIT_CONFLICT: "a run named is running"})
@click.argument("run_dirs", metavar="[RUN]...", nargs=-1, type=click.Path(path_type=Path))
@click.option("--smoke", "smoke", is_flag=True, help="Prune every finished smoke run under --logs-dir.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@json_option("what was (or would be) deleted (dry_run, runs: path, files, bytes; freed_bytes)")
@click.pass_obj
def prune(logs_dir: Path, run_dirs: tuple[Path, ...], smoke: bool, dry_run: bool, as_json: bool) -> None:
    """Delete the checkpoints the harness wrote (manifest's checkpoints_written) of the runs named,
    or with --smoke of finished smoke runs; never a log, a copied-in checkpoint, or a running run."""
    if not run_dirs and not smoke:
        raise ReproError("name the runs to prune (repro runs prune logs/RUN) or pass --smoke for finished smoke runs",
                         EXIT_BAD_INPUT)
    chosen = [open_run(path) for path in run_dirs]
    running = [str(r.path) for r in chosen if r.running]
    if running:
        raise ReproError(f"{', '.join(running)} is running (its .lock is held); prune it after it ends", EXIT_CONFLICT)
    if smoke:
        chosen += [r for r in runs_under(logs_dir) if r.smoke and not r.running and r.status != "running"
                   and r.path not in {c.path for c in chosen}]
    freed = 0
    report = []
    for run in chosen:
        files = prunable(run)
        size = sum(path.lstat().st_size for path in files)
        freed += size
        verb = "would delete" if dry_run else "deleted"
        after = "" if run.status == "completed" or not files else " (it can no longer be resumed from them)"
        report.append({"path": str(run.path), "files": [path.name for path in files], "bytes": size})
        if not as_json:
            click.echo(f"{run.path}: {verb} {len(files)} checkpoint file(s), {human(size)}{after}")
        if not dry_run and files:
            with held(run.path):
                for path in prunable(run):  # again, under the lock
                    path.unlink(missing_ok=True)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "runs": report, "freed_bytes": freed}, indent=2))
    else:
        click.echo(f"{'would free' if dry_run else 'freed'} {human(freed)} in {len(chosen)} run(s)")
