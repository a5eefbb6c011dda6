"""Pre-flight: everything that would make a days-long run fail later, checked before any process starts,
each problem one line naming the fix, all reported at once so a user fixes them in one pass."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from repro.platform.devices import PaddleInfo
from repro.core.paths import DATASET_LINK
from repro.platform.profiles import setup_command
from repro.launch.config import ResolvedConfig
from repro.run.checkpoints import disk_problem
from repro.upstream.shadowing import ppcls_shadowing_problem
from repro.upstream.state import inspect_checkout
from repro.dataset.check import check_dataset
from repro.dataset.link import linked_root
from repro.dataset.tiny import is_tiny_dataset
from repro.recipes.catalog import Recipe, read_list_heads, recipe_problems

class PreflightProblems(list):
    """The blocking problems (a plain list of lines), with non-blocking ``warnings`` beside them."""

    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []


def check_upstream(upstream_dir: Path) -> list[str]:
    """The checkout at the pin with our patches, and the code training imports really its own
    (``tools/train.py`` appends the checkout to ``sys.path``: an installed ``ppcls`` would win)."""
    problems = list(inspect_checkout(Path(upstream_dir)).problems())
    if (Path(upstream_dir) / "ppcls").is_dir() and (shadowed := ppcls_shadowing_problem(Path(upstream_dir))):
        problems.append(shadowed)
    return problems


def dataset_paths(resolved: ResolvedConfig, upstream_dir: Path) -> tuple[Path | None, list[Path]]:
    """The training image root and every list file the config names, resolved like upstream does
    (relative to the checkout, the launch's working directory)."""
    loaders = resolved.config.get("DataLoader", {}) or {}
    root: Path | None = None
    lists: list[Path] = []
    for mode in ("Train", "Eval"):
        dataset = ((loaders.get(mode) or {}).get("dataset")) or {}
        image_root = dataset.get("image_root")
        label_path = dataset.get("cls_label_path")
        if isinstance(image_root, str) and root is None:
            root = Path(upstream_dir) / image_root
        if isinstance(label_path, str):
            lists.append(Path(upstream_dir) / label_path)
    return root, lists


def check_dataset_ready(upstream_dir: Path, resolved: ResolvedConfig, smoke: bool) -> list[str]:
    root, lists = dataset_paths(resolved, upstream_dir)
    if root is None:
        return ["the config names no DataLoader.Train.dataset.image_root; fix the recipe or the -o overrides"]
    how = "run `make smoke` (it makes and links the tiny set)" if smoke else "run `repro dataset link /path/to/ILSVRC2012`"
    if os.path.normpath(root) == os.path.normpath(Path(upstream_dir) / DATASET_LINK):
        target = linked_root(Path(upstream_dir))
        if target is None:
            return [f"dataset not linked: {Path(upstream_dir) / DATASET_LINK} is absent; {how}"]
        if not Path(target).is_dir():
            return [f"dataset link {Path(upstream_dir) / DATASET_LINK} points to {target}, which does not exist; {how} again"]
        root = Path(target)
    if not smoke and is_tiny_dataset(root):  # after `make smoke` the link may lead to the tiny set
        return [f"dataset at {root} is a tiny set made by `repro dataset make-tiny`, not ImageNet; "
                "run `repro dataset link /path/to/ILSVRC2012`"]
    report = check_dataset(root, class_num=resolved.class_num, expect="any")
    first = report.first_error() or "see the report"
    problems = [] if report.ok else [f"dataset at {root} fails the check: {first}; run `repro dataset check {root}` "
                                     "for all problems"]
    return problems + [f"list file {path} named by the config does not exist: {how}" for path in lists
                       if not path.is_file()]


def check_gpus(gpus: list[int], paddle_info: PaddleInfo, profile: Any) -> list[str]:
    if not paddle_info.importable:
        return []  # reported once, by the import check
    count = paddle_info.gpu_count
    if count == 0:
        why = "paddle here is a CPU build" if not paddle_info.cuda_build else "paddle sees no GPU"
        return [f"GPUs {','.join(map(str, gpus))} asked for but {why}; install the {profile.name} paddle "
                f"(`{setup_command(profile.name)}`) or use --cpu-ranks N"]
    # Distinct, non-negative ids are guaranteed by the command line (``command.parse_gpus``).
    missing = [g for g in gpus if g >= count]
    return [f"GPU {','.join(map(str, missing))} does not exist: paddle sees {count} GPU(s) (ids 0..{count - 1}); "
            "pass --gpus within that range"] if missing else []


def checkpoints_needed(resolved: ResolvedConfig, keep_checkpoints: int) -> int:
    """How many checkpoints sit on disk at the worst moment: ``latest``, ``best_model``, ``true_best``, the
    kept ``epoch_N`` and one more written before retention deletes the oldest."""
    epoch_saves = resolved.epochs // resolved.save_interval if resolved.save_interval > 0 else 0
    return 3 + min(keep_checkpoints + 1, epoch_saves)


def run_preflight(*, upstream_dir: Path, profile: Any, recipe: Recipe, gpus: list[int] | None, run_dir: Path,
                  resolved: ResolvedConfig, keep_checkpoints: int, smoke: bool, paddle_info: PaddleInfo,
                  cpu_ranks: int | None = None) -> PreflightProblems:
    """Every blocking problem, one line with its fix each; empty means ready to launch."""
    problems = PreflightProblems()
    upstream_dir = Path(upstream_dir)
    problems.extend(check_upstream(upstream_dir))
    if upstream_dir.is_dir():
        problems.extend(check_dataset_ready(upstream_dir, resolved, smoke))

    if not paddle_info.importable:
        problems.append(f"paddle cannot be imported: {paddle_info.error}; run `make setup` (then `repro doctor`)")
    if gpus is not None:
        problems.extend(check_gpus(gpus, paddle_info, profile))
    elif cpu_ranks is not None:
        cores = os.cpu_count() or 1
        if cpu_ranks > cores:
            problems.warnings.append(f"{cpu_ranks} CPU ranks on {cores} core(s): ranks will share cores and run slower")
    disk, _ = disk_problem(run_dir, recipe.checkpoint_mb, checkpoints_needed(resolved, keep_checkpoints))
    problems.extend([disk] if disk else [])
    problems.extend(recipe_problems(recipe, resolved.config, read_list_heads(resolved.config, upstream_dir)))
    return problems
