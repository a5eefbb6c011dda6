"""Starting a new run: config, device plan, pre-flight and manifest in a fresh run directory, all before
upstream is launched; what a failed start wrote is removed again (an empty ``--run-dir`` the user made stays)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Sequence

import click

from repro.core.errors import EXIT_BAD_INPUT, EXIT_PREFLIGHT, EXIT_UPSTREAM, ReproError
from repro.platform.devices import probe_paddle
from repro.core.paths import resolve_upstream_dir, with_upstream
from repro.platform.profiles import Profile, default_platform, gpu_profiles, load_profile
from repro.recipes.catalog import Recipe, launch_env, load_recipe, marked_overrides
from repro.run.rundir import (K_LOGGING, K_NODES, Manifest, create_node_run_dir, create_run_dir, discard_run_dir,
                              plan_node_run_dir, plan_run_dir)
from repro.launch.command import LaunchCommand, build_command, environment_changes, print_dry_run
from repro.launch.config import ResolvedConfig, plan_scaling, resolve_config
from repro.launch.nodes import DEFAULT_STALL_TIMEOUT, NodePlan, node0_problems, node_watch_for, wait_for_master
from repro.launch.provenance import start_fields
from repro.launch.runner import run_segment, say
from repro.launch.preflight import run_preflight
from repro.upstream.pin import load_pin

DEFAULT_CPU_RANKS = 2
# Upstream's engine writes VisualDL records into Global.output_dir on rank 0 (ppcls/engine/engine.py).
VISUALDL_ON = "Global.use_visualdl=True"


def start_run(*, gpus: list[int] | None, cpu_ranks: int | None, platform: str | None, recipe_name: str,
              user_overrides: Sequence[str], run_dir: Path | None, logs_dir: Path, nnodes: int | None,
              master: str | None, seed: int | None, node_rank: int | None = None,
              stall_timeout: float = DEFAULT_STALL_TIMEOUT, scale_lr: bool, keep: int, upstream: Path | None,
              dry_run: bool, smoke: bool, skip_preflight: bool, as_json: bool = False, visualdl: bool = False,
              verbose: bool = False, data_dir: Path | None = None) -> None:
    """Validate, record and launch a new run (or, for ``dry_run``, print what would run). ``data_dir`` and
    ``visualdl`` say where the data lies and how to look at the run, not how the model trains: harness
    overrides, never listed as deviations from the reference."""
    profile = load_profile(platform or default_platform())
    recipe = load_recipe(recipe_name)
    gpu_list, ranks = _devices(profile, recipe, gpus, cpu_ranks)
    upstream_dir = resolve_upstream_dir(upstream)
    if not (upstream_dir / recipe.entry).is_file():
        raise ReproError(f"no upstream checkout at {upstream_dir} ({recipe.entry} missing): run "
                         f"`{with_upstream('repro upstream fetch', upstream_dir)}`, or point --upstream / "
                         "REPRO_UPSTREAM_DIR at a PaddleClas checkout", EXIT_UPSTREAM)
    nodes = NodePlan(nnodes, node_rank or 0, master, stall_timeout) if (nnodes or 1) > 1 and master else None
    per_node = len(gpu_list) if gpu_list is not None else ranks
    total = per_node * (nnodes or 1)

    kind = "GPU" if gpu_list is not None else "CPU rank"
    fixed = marked_overrides(recipe, user_overrides)  # the recipe's own marked -o (e.g. AMP off)
    for item in recipe.harness_overrides:  # a user's -o on the same key wins: never silently
        if item.option not in fixed:
            theirs = [o for o in user_overrides if o.split("=", 1)[0].lstrip("+").strip() == item.key]
            say(f"warning: -o {theirs[-1] if theirs else item.key} replaces the recipe's safeguard {item.option} "
                f"({item.why}); the run no longer reproduces the recipe's target as stated")
    harness_options = [*([VISUALDL_ON] if visualdl else []), *(dataset_overrides(data_dir) if data_dir else [])]

    scaling = None if smoke else plan_scaling(recipe, total, scale_lr, user_overrides=user_overrides, kind=kind)
    scaled = scaling.overrides if scaling else []

    def resolve(where: Path, write: bool) -> ResolvedConfig:
        return resolve_config(upstream_dir, recipe, user_overrides, device=profile.device, smoke=smoke, run_dir=where,
                              seed=seed, extra_overrides=[*fixed, *scaled, *harness_options], write=write)

    def command_for(run_path: Path, config_arg: str, resolved: ResolvedConfig) -> LaunchCommand:
        launch = recipe.launch
        return build_command(
            upstream_dir=upstream_dir, entry=recipe.entry, config_arg=config_arg, reference_config=recipe.config,
            reference_overrides=recipe.reference_overrides, device=profile.device, run_dir=run_path, gpus=gpu_list,
            cpu_ranks=ranks, devices_flag=profile.launcher_devices_flag, extra_overrides=list(resolved.overrides),
            harness_overrides=[*scaled, *harness_options], seed=seed,
            nnodes=nnodes, master=master, node_rank=node_rank, fixed_overrides=list(fixed),
            **({} if launch is None else {"launcher": launch.launcher, "devices_flag_in_reference": launch.devices_flag,
                                          "device_in_reference": launch.device_override}),
        )

    env = environment_changes(launch_env(recipe, profile.env), profile.visible_devices_var, gpu_list)
    if dry_run:
        load_pin()  # the harness's own pin, read as the real start reads it: a corrupt one fails the dry run too
        planned = plan_node_run_dir(logs_dir, run_dir, nodes.node_rank) if nodes else plan_run_dir(logs_dir, run_dir)
        with tempfile.TemporaryDirectory(prefix="repro-dry-run-") as staging:
            resolved = resolve(Path(staging), write=False)
            config_arg = resolved.config_arg.replace(staging, str(planned))
        print_dry_run(command_for(planned, config_arg, resolved), env, planned, scaling, as_json)
        return

    existed = run_dir is not None and run_dir.expanduser().resolve().is_dir()
    run = create_node_run_dir(logs_dir, run_dir, nodes.node_rank) if nodes else create_run_dir(logs_dir, run_dir)
    try:
        resolved = resolve(run.path, write=True)
        for note in (scaling.notes if scaling else []):
            say(note)
        # One probe serves the pre-flight and the manifest. The visible-devices variable is left out so
        # that the count is of the machine's GPUs, not of a leftover CUDA_VISIBLE_DEVICES.
        paddle_info = probe_paddle(with_sklearn=False, env={key: value for key, value in os.environ.items()
                                                           if key != profile.visible_devices_var})
        if not skip_preflight:
            problems = run_preflight(upstream_dir=upstream_dir, profile=profile, recipe=recipe, gpus=gpu_list,
                                     run_dir=run.path, resolved=resolved, keep_checkpoints=keep, smoke=smoke,
                                     cpu_ranks=ranks, paddle_info=paddle_info)
            if nodes is not None and nodes.node_rank == 0:
                problems += node0_problems(nodes)
            for line in getattr(problems, "warnings", []):
                say(f"pre-flight warning: {line}")
            for line in problems:
                click.echo(f"pre-flight: {line}", err=True)
            if problems:
                raise ReproError(f"pre-flight found {len(problems)} problem(s) (listed above); fix them and rerun", EXIT_PREFLIGHT)
        command = command_for(run.path, resolved.config_arg, resolved)
        if nodes is not None and nodes.node_rank > 0:
            wait_for_master(nodes, say)
        fields = start_fields(
            profile=profile, recipe=recipe, upstream_dir=upstream_dir, gpu_list=gpu_list, ranks=ranks, nnodes=nnodes,
            master=master, seed=seed, resolved=resolved, scaling=scaling, user_overrides=list(user_overrides),
            command=command, env=env, keep=keep, smoke=smoke, skip_preflight=skip_preflight, run=run,
            paddle=paddle_info,
        )
        fields[K_LOGGING] = logging_record(run.output, visualdl)
        if nodes is not None:
            fields[K_NODES] = {**nodes.to_manifest(), "world_size": total, "devices_per_node": per_node}
        manifest = Manifest.create(run.manifest, fields)
    except BaseException:
        # Nothing ran: the directory holds only what we just wrote into it, so remove that.
        discard_run_dir(run, keep_directory=existed and nodes is None)
        if nodes is not None and not existed:
            with contextlib.suppress(OSError):  # the group this start made, unless another node uses it already
                run.path.parent.rmdir()
        raise
    say(f"run directory {run.path}")
    run_segment(run=run, manifest=manifest, command=command, env=env, keep=keep,
                segment={"kind": "start", "argv": command.argv, "resumed_from": None},
                node_watch=node_watch_for(run, manifest, say), verbose=verbose)


def _devices(profile: Profile, recipe: Recipe, gpus: list[int] | None,
             cpu_ranks: int | None) -> tuple[list[int] | None, int | None]:
    """(GPU ids, None) on a GPU platform, (None, rank count) on the CPU one; the other is refused."""
    if profile.uses_gpus:
        if cpu_ranks is not None:
            raise ReproError(f"--cpu-ranks needs the cpu platform, not {profile.name}: add --platform cpu", EXIT_BAD_INPUT)
        return (gpus if gpus is not None else list(range(recipe.reference_gpus))), None
    if gpus is not None:
        others = ", ".join(name for name in gpu_profiles() if name != profile.name)
        raise ReproError(
            f"platform {profile.name} has no GPUs: drop --gpus (use --cpu-ranks N), or name a GPU platform with "
            f"--platform (make train ... PLATFORM=): {others}", EXIT_BAD_INPUT)
    return None, cpu_ranks or DEFAULT_CPU_RANKS


def dataset_overrides(root: Path) -> list[str]:
    """``-o`` values pointing both loaders at ``root`` instead of upstream's ``./dataset/ILSVRC2012/``."""
    base = f"{Path(root).expanduser().resolve()}/"
    return [f"DataLoader.Train.dataset.image_root={base}",
            f"DataLoader.Train.dataset.cls_label_path={base}train_list.txt",
            f"DataLoader.Eval.dataset.image_root={base}", f"DataLoader.Eval.dataset.cls_label_path={base}val_list.txt"]


def logging_record(output: Path, visualdl: bool) -> dict:
    """The manifest's ``logging``: how to look at the run besides its logs (options, not deviations)."""
    if not visualdl:
        return {"visualdl": False}
    return {"visualdl": True, "visualdl_logdir": str(output),
            "open_with": f"visualdl --logdir {output} --host 127.0.0.1 --port 8040"}
