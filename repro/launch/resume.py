"""``repro train --resume RUN_DIR``: the same command again, from the newest complete checkpoint.

Nothing is re-derived from current files or options: the argv, working directory and environment
changes come from the manifest, so a resumed segment runs what the first one ran, plus
``-o Global.checkpoints=<output>/<checkpoint>`` (upstream's resume form: the prefix, no extension).
Logs are appended (upstream and the launcher open them in append mode; our console log too).
A resume runs no full pre-flight, but re-checks what the manifest pins outside the run directory:
the dataset it trained on and the upstream checkout's commit and patches.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import click
import yaml

from repro.core.files import open_regular_file, read_text_bounded
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_PREFLIGHT, ReproError
from repro.logs import patterns as P
from repro.run.rundir import K_TRUE_BEST, K_WRITTEN, STATUS_COMPLETED, STATUS_RUNNING, Manifest, RunDir, open_run_dir
from repro.run.lock import holder, is_active
from repro.run.checkpoints import (DEFAULT_KEEP, EPOCH_NAME, Checkpoint, changed_file_message, changed_files,
                                   find_checkpoints, resume_point)
from repro.launch.command import EnvChanges, LaunchCommand, print_dry_run
from repro.launch.nodes import NodePlan, checkpoint_dir, node_watch_for, patch_set, wait_for_master
from repro.launch.runner import run_segment, say
from repro.launch.truebest import detach_true_best
from repro.upstream.state import inspect_checkout
from repro.launch.preflight import check_upstream
from repro.dataset.fingerprint import fingerprint


@dataclass
class ResumePlan:
    run: RunDir
    manifest: Manifest
    command: LaunchCommand
    env: EnvChanges
    checkpoint: Checkpoint | None
    skipped: list[Checkpoint]  # incomplete checkpoints passed over, for the user and the manifest


def plan_resume(path: Path) -> ResumePlan:
    run = open_run_dir(path)
    manifest = Manifest.load(run.manifest)
    data = manifest.data
    if data.get("status") == STATUS_COMPLETED:
        raise ReproError(f"{run.path} completed already: nothing to resume; start a new run instead", EXIT_CONFLICT)
    if "command" not in data or "env" not in data:
        raise ReproError(f"manifest {run.manifest} has no command to resume: it was not written by `repro train`", EXIT_BAD_INPUT)
    command = LaunchCommand.from_manifest(data["command"])
    if not Path(command.python).exists():
        raise ReproError(f"the run used {command.python}, which no longer exists: recreate that environment (make "
                         "setup) to resume", EXIT_BAD_INPUT)
    saved = checkpoint_dir(run, data)  # node 0's output on the other nodes of a multi-node run
    checkpoint = resume_point(saved)
    skipped = [c for c in find_checkpoints(saved) if not c.complete and c.kind in ("latest", "epoch")]
    if checkpoint is not None:
        command = command.with_override("Global.checkpoints", str(checkpoint.prefix))
    return ResumePlan(run, manifest, command, EnvChanges.from_manifest(data["env"]), checkpoint, skipped)


def resume_problems(plan: ResumePlan) -> list[str]:
    """What changed under the run since it started, one line with its fix each (empty: go on)."""
    data = plan.manifest.data
    problems = _dataset_problems(plan)
    upstream = plan.command.cwd
    recorded = data.get("upstream") or {}
    if not upstream.is_dir():
        return problems + [f"the upstream checkout the run used, {upstream}, is gone: fetch it there again "
                           f"(`repro upstream fetch` with REPRO_UPSTREAM_DIR={upstream}), then resume"]
    # the run started with pre-flight: the same checks, same lines
    if data.get("preflight") == "passed" and (same_as_new_run := check_upstream(upstream)):
        return problems + same_as_new_run
    if not ("commit" in recorded or "patches" in recorded):
        return problems
    now = inspect_checkout(upstream).to_manifest()
    if now.get("commit") != recorded.get("commit"):
        problems.append(f"upstream {upstream} is now at {str(now.get('commit'))[:12]}, the run started at "
                        f"{str(recorded.get('commit'))[:12]}: check out that commit "
                        f"(`git -C {upstream} checkout {recorded.get('commit')}`), then resume")
    if patch_set(now) != patch_set(recorded):
        names = ", ".join(name for name, _, applied in patch_set(recorded) if applied) or "none"
        problems.append(f"the patches in {upstream} differ from the run's (applied then: {names}): restore them "
                        "(`repro upstream apply-patches`), then resume")
    return problems


def _dataset_problems(plan: ResumePlan) -> list[str]:
    """The dataset the relaunch would read (the config's path, through the link as it is now) must be
    the one the run trained on: same root, same fingerprint (lists, counts)."""
    dataset = plan.manifest.data.get("dataset") or {}
    recorded = dataset.get("root")
    if not recorded or dataset.get("note") == "not a directory":  # as record.dataset_record says
        return []
    if not Path(recorded).is_dir():
        return [f"the dataset the run trained on, {recorded}, is gone; restore or remount it at that path, then resume"]
    now = _dataset_root_now(plan)
    if now is not None and now != Path(recorded):
        return [f"the config's dataset path now leads to {now}, but the run trained on {recorded}; "
                f"relink it (`repro dataset link --force {recorded}`), or start a new run on the new data"]
    before = dataset.get("fingerprint")
    if isinstance(before, dict):
        after = fingerprint(Path(recorded))
        changed = [key for key in ("train_list", "val_list", "classes") if before.get(key) != after.get(key)]
        if changed:
            return [f"the dataset at {recorded} changed since the run started ({', '.join(changed)} differ); "
                    "restore it, or start a new run on the new data"]
    return []


def _dataset_root_now(plan: ResumePlan) -> Path | None:
    """Where the run's recorded config (``config.yaml``) now leads for the training images."""
    try:
        config = yaml.safe_load(read_text_bounded(plan.run.config, what="run config")) or {}
        image_root = config["DataLoader"]["Train"]["dataset"]["image_root"]
    except (OSError, yaml.YAMLError, KeyError, TypeError, ReproError):
        return None
    return Path(os.path.realpath(plan.command.cwd / str(image_root)))


def progress(run: RunDir, data: dict) -> tuple[int, bool]:
    """(the last epoch the run closed, whether it ever completed a save): from its ``train.log``
    (``[Train][Epoch N/M][Avg]``, upstream's ``Already save model in``) and the checkpoints the harness
    recorded (written, deleted, the true best's)."""
    epochs, saved = [0], False
    # no log (yet), or not a regular file: the manifest's records still count
    with contextlib.suppress(OSError, ReproError), open_regular_file(run.train_log) as handle:
        for raw in handle:  # streamed: a 300-epoch log is ~160k lines
            if b"[Avg]" in raw:
                match = P.TRAIN_AVG.search(raw.decode("utf-8", "replace"))
                epochs += [int(match.group("epoch"))] if match else []
            elif b"Already save" in raw:
                saved = saved or P.SAVED_BYTES.search(raw) is not None
    written = data.get(K_WRITTEN) if isinstance(data.get(K_WRITTEN), dict) else {}
    names = [*written, *(data.get("checkpoints_deleted") or [])]
    epochs += [int(m.group(1)) for m in (EPOCH_NAME.match(str(n).split(".", 1)[0]) for n in names) if m]
    best = data.get(K_TRUE_BEST)
    if isinstance(best, dict) and isinstance(best.get("epoch"), int):
        epochs.append(best["epoch"])
    return max(epochs), saved or bool(names)


def saved_unrecorded(path: Path, data: dict) -> bool:
    """Whether ``path`` was rewritten while the manifest's last segment ran and never closed (harness killed,
    disk full): training's own save, which the resumed segment adopts (``adopt_unrecorded``), not a file put
    there by hand; without this a resume after a full disk was refused forever."""
    segments = data.get("segments") or []
    last = segments[-1] if segments and isinstance(segments[-1], dict) else {}
    if last.get("status") != STATUS_RUNNING or last.get("ended"):
        return False
    try:
        started = dt.datetime.fromisoformat(str(last.get("started"))).timestamp()
        return path.stat().st_mtime >= started - 2.0  # ``started`` is to the second
    except (OSError, ValueError):
        return False


def refuse_lost_progress(plan: ResumePlan) -> int:
    """A resume never quietly trains again from epoch 1 once the run saved a checkpoint (pruned or
    deleted since), nor from a file whose bytes differ from what training wrote: the reason, one line.
    Returns the last epoch the run closed. A run that never completed a save starts again, as it must."""
    data, where = plan.manifest.data, plan.run.path
    written = data.get(K_WRITTEN) if isinstance(data.get(K_WRITTEN), dict) else {}
    done, saved = progress(plan.run, data)
    if plan.checkpoint is not None:
        changed = [path for path in changed_files(plan.checkpoint.files(), written)
                   if not saved_unrecorded(path, data)]
        if changed:
            raise ReproError(changed_file_message(changed[0], f"put back the file training wrote, or move "
                                                  f"{plan.checkpoint.name}.* out of {changed[0].parent} to resume "
                                                  f"from the newest other checkpoint (`repro train --resume {where}`)"),
                             EXIT_BAD_INPUT)
    elif saved:
        raise ReproError(f"{where} trained through epoch {done} and saved checkpoints, but no complete one is left in "
                         f"{plan.run.output} (pruned, deleted or incomplete), so a resume would train again from "
                         f"epoch 1 into the same logs; start a new run with the options in {plan.run.manifest}, or "
                         "put a complete checkpoint back there", EXIT_BAD_INPUT)
    return done


def refuse_problems(plan: ResumePlan) -> None:
    """The resume's checks (``resume_problems``): each problem on a line, then the refusal (exit 4)."""
    problems = resume_problems(plan)
    if problems:
        for line in problems:
            click.echo(f"resume check: {line}", err=True)
        raise ReproError(f"cannot resume {plan.run.path}: {len(problems)} problem(s) (listed above)", EXIT_PREFLIGHT)


def announce(plan: ResumePlan, done: int) -> None:
    """Where the resume starts: said only once every check passed (never before a refusal)."""
    for checkpoint in plan.skipped:
        say(f"not using {checkpoint.name}: incomplete ({checkpoint.reason})")
    if plan.checkpoint is None:
        say("no complete checkpoint yet: the run starts again from epoch 1 (logs are appended)")
    else:
        epoch = f" (epoch {plan.checkpoint.epoch})" if plan.checkpoint.epoch is not None else ""
        kind = "" if plan.checkpoint.kind in ("latest", "epoch") else (
            ", the newest complete state: latest and epoch_N are older or incomplete")
        behind = (f"; the run had trained through epoch {done}, so epochs {plan.checkpoint.epoch + 1}-{done} are "
                  "trained again" if plan.checkpoint.epoch is not None and done > plan.checkpoint.epoch else "")
        say(f"resuming from {plan.checkpoint.prefix}{epoch}{kind}{behind}")


def resume_run(resume_dir: Path, keep: int | None, dry_run: bool, as_json: bool = False,
               verbose: bool = False) -> None:
    """Relaunch the run in ``resume_dir``; ``keep`` None keeps the run's own ``--keep-checkpoints``.
    ``dry_run`` makes the resume's checks (passing where the resume refuses would mislead) and writes nothing."""
    plan = plan_resume(resume_dir)
    done = refuse_lost_progress(plan)
    if dry_run:
        if is_active(plan.run.path):
            raise ReproError(f"{plan.run.path} is in use ({holder(plan.run.lock)} holds {plan.run.lock}); "
                             "a resume now would be refused", EXIT_CONFLICT)
        refuse_problems(plan)
        announce(plan, done)
        print_dry_run(plan.command, plan.env, plan.run.path, None, as_json)
        return
    if keep is None:  # not given: the run's own setting
        keep = int(plan.manifest.data.get("keep_checkpoints") or DEFAULT_KEEP)
    nodes = NodePlan.from_manifest(plan.manifest.data)
    if nodes is not None and nodes.node_rank > 0:
        wait_for_master(nodes, say)

    def before_launch() -> None:  # under the lock: a resume refused as "in use" says that first
        # What ran since the plan was made (a segment ending in between) is read again, never overwritten.
        fresh = plan_resume(resume_dir)
        if fresh.checkpoint != plan.checkpoint:
            raise ReproError(f"{plan.run.path} changed while this resume started (another segment ended); "
                             f"run `repro train --resume {plan.run.path}` again", EXIT_CONFLICT)
        plan.manifest.reload()
        refuse_problems(plan)
        announce(plan, done)
        # true_best independent of files the new segment may rewrite
        plan.manifest.update(keep_checkpoints=keep,
                             true_best=detach_true_best(plan.run, plan.manifest.data.get(K_TRUE_BEST)))

    segment = {"kind": "resume", "argv": plan.command.argv,
               "resumed_from": str(plan.checkpoint.prefix) if plan.checkpoint else None,
               "resumed_from_epoch": plan.checkpoint.epoch if plan.checkpoint else None,
               "skipped_incomplete": [c.name for c in plan.skipped]}
    run_segment(run=plan.run, manifest=plan.manifest, command=plan.command, env=plan.env, keep=keep,
                segment=segment, before_launch=before_launch, node_watch=node_watch_for(plan.run, plan.manifest, say),
                verbose=verbose)
