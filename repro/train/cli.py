"""``repro train``: validate, launch upstream exactly as the reference does, and record everything.

Options also come from the environment (``REPRO_TRAIN_GPUS``, ``REPRO_TRAIN_OVERRIDE`` ...), which
is how ``make train GPUS=... OVERRIDES=...`` reaches this command without building a shell string.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import click

from repro.errors import EXIT_BAD_INPUT, EXIT_PREFLIGHT, EXIT_UPSTREAM, ReproError
from repro.paths import resolve_upstream_dir
from repro.recipes import DEFAULT_RECIPE, load_recipe
from repro.train.command import LaunchCommand, build_command
from repro.train.environment import EnvChanges, environment_changes
from repro.train.manifest import Manifest
from repro.train.retention import DEFAULT_KEEP
from repro.train.rundir import create_run_dir, plan_run_dir
from repro.train.runner import run_segment, say

DEFAULT_CPU_RANKS = 2
# Keys the harness owns: a user override of one would break the run directory, resume or seeding.
HARNESS_KEYS = {
    "Global.output_dir": "--run-dir",
    "Global.checkpoints": "--resume",
    "Global.seed": "--seed",
    "Global.device": "--platform",
}


def parse_gpus(text: str | None) -> list[int] | None:
    if text is None or not text.strip():
        return None
    try:
        gpus = [int(part) for part in text.replace(" ", "").split(",") if part != ""]
    except ValueError:
        raise ReproError(f"--gpus {text!r} is not a comma-separated list of GPU ids: use e.g. --gpus 0,1,2,3", EXIT_BAD_INPUT)
    if not gpus or len(set(gpus)) != len(gpus) or min(gpus) < 0:
        raise ReproError(f"--gpus {text!r} must list distinct non-negative GPU ids, e.g. --gpus 0,1,2,3", EXIT_BAD_INPUT)
    return gpus


def split_overrides(values: tuple[str, ...]) -> list[str]:
    """``-o`` values; from the environment (make OVERRIDES="a=1 b=2") click already split on spaces."""
    out: list[str] = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        if "=" not in value:
            raise ReproError(f"override {value!r} is not KEY=VALUE: write e.g. -o Global.epochs=120", EXIT_BAD_INPUT)
        key = value.split("=", 1)[0]
        if key in HARNESS_KEYS:
            raise ReproError(f"-o {key} is set by the harness: use {HARNESS_KEYS[key]} instead", EXIT_BAD_INPUT)
        out.append(value)
    return out


def _check_master(master: str | None, nnodes: int | None) -> None:
    if (nnodes or 1) > 1 and not master:
        raise ReproError("--nnodes N > 1 needs --master HOST:PORT (the same on every node)", EXIT_BAD_INPUT)
    if master:
        host, _, port = master.rpartition(":")
        if not host or not port.isdigit():
            raise ReproError(f"--master {master!r} is not HOST:PORT, e.g. --master 10.0.0.1:8090", EXIT_BAD_INPUT)


@click.command("train")
@click.option("--gpus", help="GPU ids, e.g. 0,1,2,3 (GPU platforms; default: the recipe's 4 GPUs).")
@click.option("--cpu-ranks", type=click.IntRange(min=1), help="Number of CPU ranks (cpu platform; default 2).")
@click.option("--platform", help="Platform profile (environments/<name>); default: the one the venv was built for.")
@click.option("--recipe", default=DEFAULT_RECIPE, show_default=True, help="Recipe (repro/recipes/<name>.yaml).")
@click.option("-o", "--override", "override", multiple=True, metavar="KEY=VALUE",
              help="Upstream config override, checked against the config (repeatable).")
@click.option("--run-dir", type=click.Path(path_type=Path), help="Run directory (default: LOGS_DIR/<UTC time>).")
@click.option("--logs-dir", type=click.Path(path_type=Path), default=Path("logs"), show_default=True)
@click.option("--nnodes", type=click.IntRange(min=1), help="Number of nodes (passed to paddle.distributed.launch).")
@click.option("--master", metavar="HOST:PORT", help="Rendezvous of a multi-node run (same on every node).")
@click.option("--seed", type=int, help="Set Global.seed (upstream's config sets none).")
@click.option("--scale-lr", is_flag=True, help="Scale the learning rate linearly with the device count.")
@click.option("--keep-checkpoints", type=click.IntRange(min=1), default=DEFAULT_KEEP, show_default=True,
              help="How many epoch_N checkpoints to keep (latest, best_model and true_best are always kept).")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), metavar="RUN_DIR",
              help="Continue RUN_DIR from its newest complete checkpoint.")
@click.option("--upstream", type=click.Path(path_type=Path), help="Upstream PaddleClas checkout.")
@click.option("--dry-run", is_flag=True, help="Print the command, directory and environment; start nothing.")
@click.option("--smoke", is_flag=True, help="Use the recipe's smoke variant (small crops, few epochs).")
@click.option("--skip-preflight", is_flag=True, help="Skip the pre-flight checks (tests, experts); recorded.")
def train(
    gpus: str | None,
    cpu_ranks: int | None,
    platform: str | None,
    recipe: str,
    override: tuple[str, ...],
    run_dir: Path | None,
    logs_dir: Path,
    nnodes: int | None,
    master: str | None,
    seed: int | None,
    scale_lr: bool,
    keep_checkpoints: int,
    resume_dir: Path | None,
    upstream: Path | None,
    dry_run: bool,
    smoke: bool,
    skip_preflight: bool,
) -> None:
    """Train the recipe with upstream's tools/train.py, exactly as the reference runs it."""
    if resume_dir is not None:
        keep_given = click.get_current_context().get_parameter_source("keep_checkpoints")
        keep = keep_checkpoints if keep_given not in (None, click.core.ParameterSource.DEFAULT) else None
        _resume(resume_dir, keep, dry_run, gpus, cpu_ranks, override, run_dir, seed, scale_lr, smoke)
        return
    _start(
        gpus=gpus, cpu_ranks=cpu_ranks, platform=platform, recipe_name=recipe, override=override,
        run_dir=run_dir, logs_dir=logs_dir, nnodes=nnodes, master=master, seed=seed, scale_lr=scale_lr,
        keep=keep_checkpoints, upstream=upstream, dry_run=dry_run, smoke=smoke, skip_preflight=skip_preflight,
    )


def _devices(profile, recipe, gpus_text: str | None, cpu_ranks: int | None) -> tuple[list[int] | None, int | None]:
    gpus = parse_gpus(gpus_text)
    if profile.uses_gpus:
        if cpu_ranks is not None:
            raise ReproError(f"--cpu-ranks needs the cpu platform, not {profile.name}: add --platform cpu", EXIT_BAD_INPUT)
        return (gpus if gpus is not None else list(range(recipe.reference_gpus))), None
    if gpus is not None:
        raise ReproError(f"platform {profile.name} has no GPUs: drop --gpus (use --cpu-ranks N) or pass --platform", EXIT_BAD_INPUT)
    return None, cpu_ranks or DEFAULT_CPU_RANKS


def _start(*, gpus, cpu_ranks, platform, recipe_name, override, run_dir, logs_dir, nnodes, master, seed,
           scale_lr, keep, upstream, dry_run, smoke, skip_preflight) -> None:
    from repro.profiles import default_platform, load_profile
    from repro.train.config import resolve_config
    from repro.train.scaling import plan_scaling

    profile = load_profile(platform or default_platform())
    recipe = load_recipe(recipe_name)
    gpu_list, ranks = _devices(profile, recipe, gpus, cpu_ranks)
    _check_master(master, nnodes)
    if smoke and scale_lr:
        raise ReproError("--scale-lr does not apply to --smoke (the smoke variant sets its own learning rate)", EXIT_BAD_INPUT)
    user_overrides = split_overrides(override)
    upstream_dir = resolve_upstream_dir(upstream)
    if not (upstream_dir / recipe.entry).is_file():
        raise ReproError(
            f"no upstream checkout at {upstream_dir} ({recipe.entry} missing): run `repro upstream fetch`, "
            "or point --upstream / REPRO_UPSTREAM_DIR at a PaddleClas checkout",
            EXIT_UPSTREAM,
        )
    per_node = len(gpu_list) if gpu_list is not None else ranks
    total = per_node * (nnodes or 1)

    kind = "GPU" if gpu_list is not None else "CPU rank"

    def scaling_plan():
        return None if smoke else plan_scaling(recipe, total, scale_lr, user_overrides=user_overrides, kind=kind)

    def resolve(where: Path, write: bool):
        plan = scaling_plan()
        resolved = resolve_config(upstream_dir, recipe, user_overrides, device=profile.device, smoke=smoke,
                                  run_dir=where, seed=seed, extra_overrides=plan.overrides if plan else (), write=write)
        return resolved, plan

    if dry_run:
        planned = plan_run_dir(logs_dir, run_dir)
        with tempfile.TemporaryDirectory(prefix="repro-dry-run-") as staging:
            resolved, scaling = resolve(Path(staging), write=False)
            config_arg = resolved.config_arg.replace(staging, str(planned))
        command = _command(upstream_dir, recipe, profile, planned, gpu_list, ranks, config_arg, resolved,
                           scaling, seed, nnodes, master)
        env = environment_changes(profile.env, profile.visible_devices_var, gpu_list)
        _print_dry_run(command, env, planned, scaling)
        return

    run = create_run_dir(logs_dir, run_dir)
    try:
        resolved, scaling = resolve(run.path, write=True)
        for note in (scaling.notes if scaling else []):
            say(note)
        if not skip_preflight:
            from repro.train.preflight import run_preflight

            problems = run_preflight(upstream_dir=upstream_dir, profile=profile, recipe=recipe, gpus=gpu_list,
                                     run_dir=run.path, resolved=resolved, keep_checkpoints=keep, smoke=smoke,
                                     cpu_ranks=ranks)
            for line in getattr(problems, "warnings", []):
                say(f"pre-flight warning: {line}")
            if problems:
                for line in problems:
                    click.echo(f"pre-flight: {line}", err=True)
                raise ReproError(f"pre-flight found {len(problems)} problem(s) (listed above); fix them and rerun", EXIT_PREFLIGHT)
    except BaseException:
        # Nothing ran: the directory holds only what we just wrote into it, so remove it.
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    command = _command(upstream_dir, recipe, profile, run.path, gpu_list, ranks, resolved.config_arg, resolved,
                       scaling, seed, nnodes, master)
    env = environment_changes(profile.env, profile.visible_devices_var, gpu_list)
    manifest = Manifest.create(run.manifest, _manifest_fields(
        profile, recipe, upstream_dir, gpu_list, ranks, nnodes, master, seed, resolved, scaling, user_overrides,
        command, env, keep, smoke, skip_preflight, run,
    ))
    say(f"run directory {run.path}")
    run_segment(run=run, manifest=manifest, command=command, env=env, keep=keep,
                segment={"kind": "start", "argv": command.argv, "resumed_from": None})


def _command(upstream_dir, recipe, profile, run_path, gpu_list, ranks, config_arg, resolved, scaling, seed, nnodes,
             master) -> LaunchCommand:
    extra = list(resolved.overrides) + list(scaling.overrides if scaling else [])
    return build_command(
        upstream_dir=upstream_dir, entry=recipe.entry, config_arg=config_arg, reference_config=recipe.config,
        reference_overrides=recipe.reference_overrides, device=profile.device, run_dir=run_path, gpus=gpu_list,
        cpu_ranks=ranks, devices_flag=profile.launcher_devices_flag, extra_overrides=extra, seed=seed,
        nnodes=nnodes, master=master,
    )


def _effective_seed(seed: int | None, config: dict, world_size: int) -> dict:
    """What seeds the ranks. Upstream's engine reads ``Global.get("seed", False)``: absent means
    unseeded on one rank, and ``paddle.seed(0 + rank)`` in distributed runs (``int(False)``)."""
    if seed is not None:
        return {"value": seed, "source": "--seed (Global.seed)", "per_rank": "seed + rank" if world_size > 1 else "seed"}
    configured = (config.get("Global") or {}).get("seed") if isinstance(config, dict) else None
    if configured is not None:
        return {"value": configured, "source": "config Global.seed", "per_rank": "seed + rank" if world_size > 1 else "seed"}
    if world_size > 1:
        return {"value": 0, "source": "upstream default: no Global.seed, distributed engine seeds 0 + rank",
                "per_rank": "0 + rank"}
    return {"value": None, "source": "unseeded: no Global.seed and a single rank"}


def _manifest_fields(profile, recipe, upstream_dir, gpu_list, ranks, nnodes, master, seed, resolved, scaling,
                     user_overrides, command, env, keep, smoke, skip_preflight, run) -> dict:
    from repro.train import provenance

    world = (len(gpu_list) if gpu_list is not None else ranks) * (nnodes or 1)
    target = getattr(resolved, "target", None)
    return {
        "run_id": run.path.name,
        "harness": provenance.harness_record(),
        "recipe": {"name": recipe.name, "config": recipe.config, "arch": getattr(resolved, "arch", recipe.arch)},
        "smoke": smoke,
        "target": _target_record(target if target is not None else (None if smoke else recipe.target)),
        "platform": {"name": profile.name, "description": profile.description, "device": profile.device},
        "paddle": provenance.paddle_record(),
        "devices": {"gpus": gpu_list, "cpu_ranks": ranks, "nnodes": nnodes or 1, "master": master,
                    "world_size": world, "report": provenance.device_report(profile)},
        "upstream": provenance.upstream_record(upstream_dir),
        "dataset": provenance.dataset_record(upstream_dir),
        "command": command.to_manifest(),
        "env": env.to_manifest(),
        "overrides": {"reference": list(recipe.reference_overrides), "user": user_overrides,
                      "resolved": list(resolved.overrides)},
        "config": {"file": str(run.config), "epochs": getattr(resolved, "epochs", None),
                   "save_interval": getattr(resolved, "save_interval", None)},
        "scaling": scaling.to_manifest() if scaling else None,
        "seed": _effective_seed(seed, getattr(resolved, "config", {}) or {}, world),
        "keep_checkpoints": keep,
        "preflight": "skipped (--skip-preflight)" if skip_preflight else "passed",
        "true_best": None,
    }


def _target_record(target) -> dict | None:
    if target is None:
        return None
    if isinstance(target, dict):
        return target
    return {"metric": target.metric, "value": target.value, "eval_set_size": target.eval_set_size,
            "judged": target.judged, "tolerance": target.tolerance, **dict(target.provenance)}


def _print_dry_run(command: LaunchCommand, env: EnvChanges, planned: Path, scaling) -> None:
    click.echo("reference command:")
    click.echo(f"  {command.reference_line()}")
    click.echo("command to run ([harness: ...] and [user: ...] mark additions to the reference):")
    click.echo(f"  {command.marked_line()}")
    click.echo(f"python: {command.python}")
    click.echo(f"working directory: {command.cwd}")
    click.echo(f"run directory: {planned} (not created: dry run)")
    click.echo("environment additions:")
    for line in env.lines() or ["(none)"]:
        click.echo(f"  {line}")
    for note in (scaling.notes if scaling else []):
        click.echo(f"note: {note}")


def _resume(resume_dir, keep, dry_run, gpus, cpu_ranks, override, run_dir, seed, scale_lr, smoke) -> None:
    from repro.train.resume import plan_resume, prepare_segment

    changed = [name for name, value in (("--gpus", gpus), ("--cpu-ranks", cpu_ranks), ("-o", override),
                                        ("--run-dir", run_dir), ("--seed", seed), ("--scale-lr", scale_lr),
                                        ("--smoke", smoke)) if value]
    if changed:
        raise ReproError(
            f"--resume reuses the run's own command; drop {', '.join(changed)} (start a new run to change them)",
            EXIT_BAD_INPUT,
        )
    plan = plan_resume(resume_dir)
    for checkpoint in plan.skipped:
        say(f"not using {checkpoint.name}: incomplete ({checkpoint.reason})")
    if plan.checkpoint is None:
        say("no complete checkpoint yet: the run starts again from epoch 1 (logs are appended)")
    else:
        epoch = f" (epoch {plan.checkpoint.epoch})" if plan.checkpoint.epoch is not None else ""
        say(f"resuming from {plan.checkpoint.prefix}{epoch}")
    if dry_run:
        _print_dry_run(plan.command, plan.env, plan.run.path, None)
        return
    if keep is None:  # not given: the run's own setting
        keep = int(plan.manifest.data.get("keep_checkpoints") or DEFAULT_KEEP)

    def before_launch() -> None:
        plan.manifest.data["keep_checkpoints"] = keep
        prepare_segment(plan)

    segment = {
        "kind": "resume",
        "argv": plan.command.argv,
        "resumed_from": str(plan.checkpoint.prefix) if plan.checkpoint else None,
        "resumed_from_epoch": plan.checkpoint.epoch if plan.checkpoint else None,
        "skipped_incomplete": [c.name for c in plan.skipped],
    }
    run_segment(run=plan.run, manifest=plan.manifest, command=plan.command, env=plan.env, keep=keep,
                segment=segment, before_launch=before_launch)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train())
