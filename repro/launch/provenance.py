"""What a new run records about itself in ``manifest.json``: enough to trust and repeat it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Sequence

from repro import __version__
from repro.platform.devices import PaddleInfo, host_summary, query_device_tool
from repro.platform.profiles import Profile
from repro.recipes.catalog import Recipe
from repro.run.rundir import RunDir
from repro.launch.command import EnvChanges, LaunchCommand
from repro.launch.config import ResolvedConfig, ScalingPlan
from repro.core.paths import project_root
from repro.upstream.state import inspect_checkout
from repro.dataset.fingerprint import fingerprint
from repro.launch.preflight import dataset_paths
from repro.core.deadline import run_bounded


def start_fields(*, profile: Profile, recipe: Recipe, upstream_dir: Path, gpu_list: list[int] | None,
                 ranks: int | None, nnodes: int | None, master: str | None, seed: int | None,
                 resolved: ResolvedConfig, scaling: ScalingPlan | None, user_overrides: Sequence[str],
                 command: LaunchCommand, env: EnvChanges, keep: int, smoke: bool, skip_preflight: bool,
                 run: RunDir, paddle: PaddleInfo) -> dict[str, Any]:
    """The manifest of a run about to start (segments, status and exit are added as it runs)."""
    world = (len(gpu_list) if gpu_list is not None else ranks) * (nnodes or 1)
    target = resolved.target
    return {
        "run_id": run.path.name,
        "harness": harness_record(),
        "recipe": {"name": recipe.name, "config": recipe.config, "arch": resolved.arch},
        "smoke": smoke,
        "target": _target_record(target if target is not None else (None if smoke else recipe.target)),
        "platform": {"name": profile.name, "description": profile.description, "device": profile.device},
        "paddle": paddle.to_manifest(),
        "devices": {"gpus": gpu_list, "cpu_ranks": ranks, "nnodes": nnodes or 1, "master": master,
                    "world_size": world, "report": device_report(profile)},
        "upstream": upstream_record(upstream_dir),
        "dataset": dataset_record(upstream_dir, resolved),
        "command": command.to_manifest(),
        "env": env.to_manifest(),
        "overrides": {"reference": list(recipe.reference_overrides), "user": user_overrides,
                      "resolved": list(resolved.overrides)},
        "config": {"file": str(run.config), "epochs": resolved.epochs,
                   "save_interval": resolved.save_interval},
        "scaling": scaling.to_manifest() if scaling else None,
        "seed": _effective_seed(seed, resolved.config, world),
        "keep_checkpoints": keep,
        "preflight": "skipped (--skip-preflight)" if skip_preflight else "passed",
        "true_best": None,
    }


def _effective_seed(seed: int | None, config: dict, world_size: int) -> dict:
    """What seeds the ranks. Upstream's engine reads ``Global.get("seed", False)``: absent means
    unseeded on one rank, and ``paddle.seed(0 + rank)`` in distributed runs (``int(False)``)."""
    per_rank = "seed + rank" if world_size > 1 else "seed"
    if seed is not None:
        return {"value": seed, "source": "--seed (Global.seed)", "per_rank": per_rank}
    configured = (config.get("Global") or {}).get("seed") if isinstance(config, dict) else None
    if configured is not None:
        return {"value": configured, "source": "config Global.seed", "per_rank": per_rank}
    if world_size > 1:
        return {"value": 0, "source": "upstream default: no Global.seed, distributed engine seeds 0 + rank",
                "per_rank": "0 + rank"}
    return {"value": None, "source": "unseeded: no Global.seed and a single rank"}


def _target_record(target) -> dict | None:
    """The target as the manifest stores it (``check-accuracy`` judges the run against it)."""
    if target is None:
        return None
    return {"metric": target.metric, "value": target.value, "eval_set_size": target.eval_set_size,
            "judged": target.judged, "tolerance": target.tolerance, **dict(target.provenance)}


def harness_record() -> dict[str, Any]:
    """The harness that ran: version, and the git commit of this checkout and whether it had local
    changes (a run made with edited harness code says so), with the host it ran on."""
    record: dict[str, Any] = {"name": "repro", "version": __version__, "host": host_summary()}
    root = project_root()

    def git(*args: str) -> str | None:
        try:
            done = run_bounded(["git", "-C", str(root), *args], 20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "--verify", "HEAD")
    if commit is None:
        return {**record, "commit": None,
                "note": f"{root} is not a git checkout (an installed package): no commit to record"}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {**record, "commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def device_report(profile: Profile) -> dict[str, Any]:
    """The platform's device tool report (its profile's ``device_query``), verbatim, for the manifest."""
    report = query_device_tool(profile.device_query)
    return report.to_manifest() if report else {"tool": None, "note": "no device tool for this profile (CPU ranks)"}


def upstream_record(upstream_dir: Path) -> dict[str, Any]:
    try:
        return inspect_checkout(upstream_dir).to_manifest()
    except Exception as error:  # the record must not stop a run the pre-flight let through
        return {"path": str(upstream_dir), "note": f"could not inspect the checkout: {type(error).__name__}: {error}"}


def dataset_record(upstream_dir: Path, resolved: ResolvedConfig) -> dict[str, Any]:
    """The dataset the run's config reads (through the checkout's link, or wherever the config
    points, as the smoke does when real data holds the link), with its list-file fingerprint."""
    root, _ = dataset_paths(resolved, upstream_dir)
    if root is None:
        return {"root": None, "note": "the config names no DataLoader.Train.dataset.image_root"}
    root = Path(os.path.realpath(root))
    if not root.is_dir():
        return {"root": str(root), "note": "not a directory"}
    try:
        return {"root": str(root), "fingerprint": fingerprint(root)}
    except Exception as error:  # the record must not stop a run the pre-flight let through
        return {"root": str(root), "note": f"fingerprint failed: {type(error).__name__}: {error}"}
