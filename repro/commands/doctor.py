"""``repro doctor``: one screen that says whether this machine can start the reference training, each
check a line with the fix beside each problem. It reads and reports only; it never changes the machine."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from repro.core.cli_wiring import command, json_option
from repro.core.errors import EXIT_FAILED, EXIT_OK
from repro.platform.devices import PaddleInfo, probe_paddle, query_device_tool
from repro.core.paths import DEFAULT_LOGS, resolve_upstream_dir, with_upstream
from repro.platform.profiles import (Profile, available_profiles, default_platform, gpu_profiles, load_profile,
                                     setup_command)
from repro.recipes.catalog import DEFAULT_RECIPE, load_recipe
from repro.upstream.state import inspect_checkout
from repro.upstream.shadowing import ppcls_shadowing_problem
from repro.launch.config import resolve_config
from repro.launch.preflight import check_dataset_ready, dataset_paths
from repro.run.checkpoints import DEFAULT_KEEP, disk_problem

OK, WARN, FAIL = "ok", "warn", "FAIL"


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


def _install(profile: Profile) -> str:
    """How to get this profile's Paddle: the vendor's steps where pip cannot, then the venv command."""
    return profile.paddle["install"] if profile.vendor_paddle else setup_command(profile.name)


def check_paddle(profile: Profile, info: PaddleInfo) -> list[Finding]:
    if not info.importable:
        return [Finding("paddle", FAIL, f"cannot import paddle ({info.error})", _install(profile))]
    findings = [Finding("paddle", OK, f"{info.version} build={info.build} commit={(info.commit or '?')[:10]}")]
    expected = profile.paddle["expected_build"]
    rejected = [name for name in info.custom_devices if name in profile.paddle.get("rejected_custom_devices", ())]
    if expected == "cuda" and rejected and not info.cuda_build:
        # A build that exposes a custom device instead of CUDA (the profile lists which) cannot run
        # the reference command: PaddleClas 2.6 knows only Global.device=gpu.
        findings.append(Finding(
            "paddle", FAIL, f"this Paddle exposes the custom device {rejected[0]}, not CUDA: PaddleClas 2.6 "
            "accepts only Global.device=gpu, which this build cannot serve", _install(profile)))
    elif expected == "cuda" and not info.cuda_build:
        findings.append(Finding("paddle", FAIL, f"profile {profile.name} needs a GPU build; this Paddle is CPU-only",
                                _install(profile)))
    elif expected == "cuda":
        findings.append(Finding("paddle", OK, f"a CUDA-compatible build ({info.build}): Global.device=gpu works"))
    if expected == "cpu" and info.cuda_build:
        findings.append(Finding("paddle", WARN, "a GPU build of Paddle under the cpu profile",
                                f"use --platform with one of {', '.join(gpu_profiles())}"))
    pinned = profile.paddle.get("version")
    if pinned and info.version != str(pinned):
        findings.append(Finding("paddle", WARN, f"version {info.version}, profile pins {pinned}", _install(profile)))
    if info.sklearn_crash:
        findings.append(Finding("sklearn", FAIL, info.sklearn_crash + " (upstream imports it after paddle)",
                                "pip install scikit-learn==1.3.2"))
    elif info.sklearn_version:
        findings.append(Finding("sklearn", OK, f"{info.sklearn_version} imports after paddle"))
    return findings


def check_devices(profile: Profile, info: PaddleInfo, gpus_wanted: int) -> list[Finding]:
    if not profile.uses_gpus:
        return [Finding("devices", OK, f"CPU ranks on {os.cpu_count()} cores (Global.device=cpu)")]
    findings: list[Finding] = []
    if info.gpu_count == 0:
        tool = profile.device_query.tool if profile.device_query else "the vendor tool"
        findings.append(Finding("devices", FAIL, "Paddle sees no GPU",
                                f"check the driver with {tool} and {profile.visible_devices_var}"))
    elif info.gpu_count < gpus_wanted:
        findings.append(Finding("devices", WARN, f"Paddle sees {info.gpu_count} GPU(s); the recipe's reference uses "
                                f"{gpus_wanted}", "train with --gpus listing what exists; the global batch changes "
                                "(repro train says how)"))
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
            summary = ", ".join(f"{d['index']}: {d['name']}" + (f" {d['memory_total_mib']} MiB, driver {d['driver']}"
                                                               if "driver" in d else "") for d in report.devices)
            findings.append(Finding("driver", OK, f"{report.tool}: {summary or ' | '.join(report.first_lines(2))}"))
    return findings


def check_upstream(upstream_dir: Path) -> list[Finding]:
    state = inspect_checkout(upstream_dir)
    if problems := state.problems():
        return [_finding("upstream", problem) for problem in problems]
    # Warnings (unknown archive commit, a pin other than the one our patches were verified on)
    # do not block training but belong on the screen beside the checkout line.
    return [Finding("upstream", OK, state.summary_line())] + [
        Finding("upstream", WARN, warning, "see `repro upstream status`") for warning in state.warnings()
    ]


def _finding(topic: str, line: str) -> Finding:
    """A pre-flight line ("problem; fix") as a FAIL finding with its fix beside it."""
    detail, sep, fix = line.rpartition("; ")
    return Finding(topic, FAIL, detail, fix) if sep else Finding(topic, FAIL, line, "see `repro train --dry-run`")


def check_ppcls(upstream_dir: Path) -> list[Finding]:
    """Training's ``import ppcls`` must reach the checkout, not a package installed in the venv."""
    if not (upstream_dir / "ppcls").is_dir():
        return []
    if (problem := ppcls_shadowing_problem(upstream_dir)) is None:
        return [Finding("ppcls", OK, f"training imports ppcls from {upstream_dir / 'ppcls'}")]
    return [_finding("ppcls", problem)]


def check_dataset(upstream_dir: Path, recipe_name: str = DEFAULT_RECIPE, device: str = "gpu") -> Finding:
    """Pre-flight's own dataset check on the recipe's config, so doctor and training agree."""
    recipe = load_recipe(recipe_name)
    if not (upstream_dir / recipe.config).is_file():
        return Finding("dataset", FAIL, f"no upstream checkout with {recipe.config} at {upstream_dir}",
                       f"{with_upstream('repro upstream fetch', upstream_dir)}, then "
                       f"{with_upstream('repro dataset link ROOT', upstream_dir)}")
    with tempfile.TemporaryDirectory(prefix="repro-doctor-") as scratch:
        resolved = resolve_config(upstream_dir, recipe, [], device=device, run_dir=Path(scratch), write=False)
    problems = check_dataset_ready(upstream_dir, resolved, smoke=False)
    if problems:
        return _finding("dataset", problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    root, _ = dataset_paths(resolved, upstream_dir)
    return Finding("dataset", OK, f"{root} -> {Path(root).resolve()} passes pre-flight's check")


def check_disk(logs_dir: Path, checkpoint_mb: int) -> Finding:
    """Pre-flight's disk rule for a full-length run with the default retention."""
    problem, detail = disk_problem(logs_dir, checkpoint_mb, checkpoints=3 + DEFAULT_KEEP + 1)
    return _finding("disk", problem) if problem else Finding("disk", OK, detail)


def diagnose(profile: Profile, upstream_dir: Path, logs_dir: Path, recipe_name: str = DEFAULT_RECIPE) -> list[Finding]:
    recipe = load_recipe(recipe_name)
    info = probe_paddle()
    findings = [Finding("platform", OK, f"{profile.name}: {profile.description}"),
                Finding("python", OK, f"{'.'.join(map(str, sys.version_info[:3]))} ({sys.executable})")]
    findings += check_paddle(profile, info)
    findings += check_devices(profile, info, recipe.reference_gpus)
    findings += check_upstream(upstream_dir)
    findings += check_ppcls(upstream_dir)
    findings.append(check_dataset(upstream_dir, recipe_name, profile.device))
    findings.append(check_disk(logs_dir, recipe.checkpoint_mb))
    return findings


@command("doctor", exits={EXIT_OK: "training can start", EXIT_FAILED: "something must be fixed first"})
@click.option("--platform", "platform_name", default=None, help=f"Platform profile ({', '.join(available_profiles())}); default: the one make setup used.")
@click.option("--upstream", "upstream_option", default=None, help="PaddleClas checkout (default: $REPRO_UPSTREAM_DIR or .upstream/PaddleClas).")
@click.option("--logs-dir", default=DEFAULT_LOGS, show_default=True, type=click.Path(path_type=Path), help="Where runs and checkpoints will be written.")
@json_option("the findings")
def doctor(platform_name: str | None, upstream_option: str | None, logs_dir: Path, as_json: bool) -> None:
    """Say whether this machine can start training, one line per finding, with the fix for each problem."""
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
