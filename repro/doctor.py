"""``repro doctor``: one screen that says whether this machine can start the reference training.

A 300-epoch run that fails an hour in costs a day; every check here is something that has to be
true before launch, printed as one line, with the fix beside each problem. Doctor reads and
reports only; it never changes the machine.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from repro.errors import EXIT_FAILED, EXIT_OK
from repro.machine import PaddleInfo, probe_paddle, query_device_tool
from repro.paths import resolve_upstream_dir
from repro.profiles import Profile, available_profiles, default_platform, load_profile
from repro.recipes import DEFAULT_RECIPE, load_recipe

OK, WARN, FAIL = "ok", "warn", "FAIL"
# Checkpoints kept at once by default: latest, best_model, the harness's true-best copy and 3 epochs.
CHECKPOINTS_KEPT = 6


@dataclass
class Finding:
    """One line of the doctor's screen; ``fix`` is set on every warn/FAIL."""

    topic: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.topic:<10} {self.detail}"
        return f"{text} -> {self.fix}" if self.fix else text


def check_python() -> Finding:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 8):
        return Finding("python", FAIL, version, "paddlepaddle 2.6 needs Python 3.8-3.12")
    return Finding("python", OK, f"{version} ({sys.executable})")


def check_paddle(profile: Profile, info: PaddleInfo) -> list[Finding]:
    if not info.importable:
        return [Finding("paddle", FAIL, f"cannot import paddle ({info.error})", profile.paddle["install"])]
    findings = [Finding("paddle", OK, f"{info.version} build={info.build} commit={(info.commit or '?')[:10]}")]
    expected = profile.paddle["expected_build"]
    if expected == "cuda" and not info.cuda_build:
        findings.append(
            Finding("paddle", FAIL, f"profile {profile.name} needs a GPU build; this Paddle is CPU-only", profile.paddle["install"])
        )
    if expected == "cpu" and info.cuda_build:
        findings.append(
            Finding("paddle", WARN, "a GPU build of Paddle under the cpu profile", "use --platform nvidia-cuda or an ixuca profile")
        )
    pinned = profile.paddle.get("version")
    if pinned and info.version != str(pinned):
        findings.append(
            Finding("paddle", WARN, f"version {info.version}, profile pins {pinned}", f"make setup PLATFORM={profile.name}")
        )
    if info.sklearn_crash:
        findings.append(
            Finding("sklearn", FAIL, info.sklearn_crash + " (upstream imports it after paddle)", "pip install scikit-learn==1.3.2")
        )
    elif info.sklearn_version:
        findings.append(Finding("sklearn", OK, f"{info.sklearn_version} imports after paddle"))
    return findings


def check_devices(profile: Profile, info: PaddleInfo, gpus_wanted: int) -> list[Finding]:
    if not profile.uses_gpus:
        import os

        return [Finding("devices", OK, f"CPU ranks on {os.cpu_count()} cores (Global.device=cpu)")]
    findings: list[Finding] = []
    if info.gpu_count == 0:
        findings.append(
            Finding("devices", FAIL, "Paddle sees no GPU", f"check the driver with {profile.device_query.tool if profile.device_query else 'the vendor tool'} and {profile.visible_devices_var}")
        )
    elif info.gpu_count < gpus_wanted:
        findings.append(
            Finding("devices", WARN, f"Paddle sees {info.gpu_count} GPU(s); the recipe's reference uses {gpus_wanted}", "train with --gpus listing what exists; the global batch changes (repro train says how)")
        )
    else:
        names = ", ".join(sorted(set(info.gpu_names))) or "unnamed"
        findings.append(Finding("devices", OK, f"{info.gpu_count} GPU(s): {names}"))
    report = query_device_tool(profile.device_query)
    if report is not None:
        if not report.found:
            findings.append(Finding("driver", WARN, f"{report.tool} not on PATH", f"install the vendor driver/SDK tools for {profile.description}"))
        elif report.returncode != 0:
            findings.append(Finding("driver", FAIL, f"{report.tool} failed: {' '.join(report.first_lines(1))}", "check the driver installation"))
        else:
            findings.append(Finding("driver", OK, f"{report.tool}: {' | '.join(report.first_lines(2))}"))
    return findings


def check_upstream(upstream_dir: Path) -> list[Finding]:
    from repro.upstream.state import inspect_checkout

    state = inspect_checkout(upstream_dir)
    problems = state.problems()
    if problems:
        return [Finding("upstream", FAIL, *_split_fix(problem)) for problem in problems]
    # Warnings (unknown archive commit, a pin other than the one our patches were verified on)
    # do not block training but belong on the screen beside the checkout line.
    return [Finding("upstream", OK, state.summary_line())] + [
        Finding("upstream", WARN, *_split_fix(warning)) for warning in state.warnings()
    ]


def check_ppcls(upstream_dir: Path) -> list[Finding]:
    """Training's ``import ppcls`` must reach the checkout, not a package installed in the venv."""
    from repro.upstream.shadowing import ppcls_shadowing_problem

    problem = ppcls_shadowing_problem(upstream_dir)
    if problem is None:
        return [Finding("ppcls", OK, f"training imports ppcls from {upstream_dir / 'ppcls'}")] if (upstream_dir / "ppcls").is_dir() else []
    detail, _, fix = problem.rpartition("; ")
    return [Finding("ppcls", FAIL, detail, fix)]


def check_dataset(upstream_dir: Path) -> Finding:
    from repro.dataset.link import linked_root

    link = upstream_dir / "dataset" / "ILSVRC2012"
    if not upstream_dir.is_dir():
        return Finding("dataset", FAIL, "no upstream checkout to link the dataset into", "repro upstream fetch, then repro dataset link ROOT")
    root = linked_root(upstream_dir)
    if root is None:
        if link.exists():
            return Finding("dataset", WARN, f"{link} is a real directory, not a link made by repro", "check it with repro dataset check")
        return Finding("dataset", FAIL, f"no dataset at {link}", "repro dataset link /path/to/ILSVRC2012")
    missing = [part for part in ("train", "val", "train_list.txt", "val_list.txt") if not (root / part).exists()]
    if missing:
        return Finding("dataset", FAIL, f"{link} -> {root} lacks {', '.join(missing)}", "repro dataset check ROOT, then repro dataset link --force ROOT")
    from repro.dataset.tiny import is_tiny_dataset

    if is_tiny_dataset(root):
        return Finding("dataset", WARN, f"{link} -> {root} is a tiny set from make-tiny (fine for make smoke)",
                       "a real run needs ImageNet: repro dataset link --force /path/to/ILSVRC2012")
    return Finding("dataset", OK, f"{link} -> {root} (full check: repro dataset check {root})")


def check_disk(logs_dir: Path, checkpoint_mb: int) -> Finding:
    probe = logs_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free_gb = shutil.disk_usage(probe).free / 1e9
    need_gb = CHECKPOINTS_KEPT * checkpoint_mb / 1e3 * 1.25
    detail = f"{free_gb:,.1f} GB free at {probe} (checkpoints kept need about {need_gb:.1f} GB)"
    if free_gb < need_gb:
        return Finding("disk", FAIL, detail, "free space or pass --logs-dir on a larger disk")
    return Finding("disk", OK, detail)


def _split_fix(problem: str) -> tuple[str, str]:
    """Upstream's problem lines already carry their fix ('what: run X'); split it off when marked."""
    if " -> " in problem:
        detail, fix = problem.split(" -> ", 1)
        return detail, fix
    return problem, ""


def diagnose(profile: Profile, upstream_dir: Path, logs_dir: Path, recipe_name: str = DEFAULT_RECIPE) -> list[Finding]:
    recipe = load_recipe(recipe_name)
    info = probe_paddle()
    findings = [Finding("platform", OK, f"{profile.name}: {profile.description}"), check_python()]
    findings += check_paddle(profile, info)
    findings += check_devices(profile, info, recipe.reference_gpus)
    findings += check_upstream(upstream_dir)
    findings += check_ppcls(upstream_dir)
    findings.append(check_dataset(upstream_dir))
    findings.append(check_disk(logs_dir, recipe.checkpoint_mb))
    return findings


@click.command()
@click.option("--platform", "platform_name", default=None, help=f"Platform profile ({', '.join(available_profiles())}); default: the one make setup used.")
@click.option("--upstream", "upstream_option", default=None, help="PaddleClas checkout (default: $REPRO_UPSTREAM_DIR or .upstream/PaddleClas).")
@click.option("--logs-dir", default="logs", show_default=True, type=click.Path(path_type=Path), help="Where runs and checkpoints will be written.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(platform_name: str | None, upstream_option: str | None, logs_dir: Path, as_json: bool) -> None:
    """Say whether this machine can start training, one line per finding, with the fix for each problem.

    Exits 0 when training can start, 1 when something must be fixed first.
    """
    profile = load_profile(platform_name or default_platform())
    findings = diagnose(profile, resolve_upstream_dir(upstream_option), logs_dir.resolve())
    failures = [f for f in findings if f.status == FAIL]
    if as_json:
        click.echo(json.dumps({"ready": not failures, "findings": [asdict(f) for f in findings]}, indent=2))
    else:
        for finding in findings:
            click.echo(finding.line())
        verdict = "ready to train" if not failures else f"{len(failures)} problem(s): training cannot start"
        click.echo(f"doctor: {verdict}")
    raise SystemExit(EXIT_OK if not failures else EXIT_FAILED)
