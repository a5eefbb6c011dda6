"""The launch: the argv handed to ``paddle.distributed.launch``, its environment, and the dry run.

The reference is DeepSparkHub's ResNeSt50 command; the harness's additions are marked token by token.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import click

from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.platform.profiles import visible_devices_vars
from repro.run.rundir import RunDir
from repro.launch.config import ScalingPlan

REFERENCE = "reference"
HARNESS = "harness"
USER = "user"

LAUNCH_MODULE = "paddle.distributed.launch"


@dataclass(frozen=True)
class Token:
    text: str
    source: str  # REFERENCE, HARNESS or USER


@dataclass(frozen=True)
class LaunchCommand:
    tokens: tuple[Token, ...]
    cwd: Path
    python: str = field(default_factory=lambda: sys.executable)

    @property
    def argv(self) -> list[str]:
        """What is executed: ``python`` is this environment's interpreter, the rest verbatim."""
        return [self.python, *(t.text for t in self.tokens[1:])]

    @property
    def reference_tokens(self) -> list[str]:
        return [t.text for t in self.tokens if t.source == REFERENCE]

    def marked_line(self) -> str:
        """The full command, each run of non-reference tokens in ``[harness: ...]``/``[user: ...]``."""
        parts: list[str] = []
        for source, group in itertools.groupby(self.tokens, key=lambda token: token.source):
            texts = [shlex.quote(token.text) for token in group]
            parts += texts if source == REFERENCE else [f"[{source}: {' '.join(texts)}]"]
        return " ".join(parts)

    def to_manifest(self) -> dict:
        return {
            "argv": self.argv,
            "cwd": str(self.cwd),
            "python": self.python,
            "reference": self.reference_tokens,
            "tokens": [{"text": t.text, "source": t.source} for t in self.tokens],
            "display": self.marked_line(),
        }

    @classmethod
    def from_manifest(cls, data: dict) -> "LaunchCommand":
        tokens = tuple(Token(t["text"], t["source"]) for t in data["tokens"])
        return cls(tokens=tokens, cwd=Path(data["cwd"]), python=data["python"])

    def with_override(self, key: str, value: str) -> "LaunchCommand":
        """A copy with ``-o key=value`` as a harness token, replacing an earlier one for ``key`` (two would leave
        the winner to upstream's parsing order)."""
        tokens = self.tokens
        drop = {index for index, (flag, option) in enumerate(zip(tokens, tokens[1:]))
                if flag.text == "-o" and option.text.split("=", 1)[0] == key}
        kept = [token for index, token in enumerate(tokens) if index not in drop and index - 1 not in drop]
        kept += [Token("-o", HARNESS), Token(f"{key}={value}", HARNESS)]
        return LaunchCommand(tokens=tuple(kept), cwd=self.cwd, python=self.python)


def build_command(*, upstream_dir: Path, entry: str, config_arg: str, reference_config: str | None = None,
                  reference_overrides: list[str] | tuple[str, ...], device: str, run_dir: Path,
                  gpus: list[int] | None = None, cpu_ranks: int | None = None, devices_flag: str | None = "--gpus",
                  extra_overrides: list[str] | tuple[str, ...] = (),
                  harness_overrides: list[str] | tuple[str, ...] = (), seed: int | None = None,
                  nnodes: int | None = None, master: str | None = None, node_rank: int | None = None,
                  python: str | None = None, launcher: tuple[str, ...] = ("python3", "-u", "-m", LAUNCH_MODULE),
                  devices_flag_in_reference: bool = True, device_in_reference: bool = True,
                  fixed_overrides: list[str] | tuple[str, ...] = ()) -> LaunchCommand:
    """Assemble the launch command. ``launcher`` and the ``*_in_reference`` flags come from the recipe's README
    line (some pick devices by CUDA_VISIBLE_DEVICES alone, or pass no ``Global.device``). Launcher flags must
    precede the script, so the harness's follow the reference device flag; its ``-o`` come last, where
    upstream's left-to-right override parsing makes them win."""
    tokens: list[Token] = [Token(text, REFERENCE) for text in launcher]
    if gpus is not None:
        # Without the flag the README relies on CUDA_VISIBLE_DEVICES, which the environment sets to the same list.
        if devices_flag_in_reference:
            tokens.append(Token(f"{devices_flag or '--gpus'}={','.join(str(g) for g in gpus)}", REFERENCE))
    elif cpu_ranks is not None:
        # The reference's CPU form (the definition): ``--nproc_per_node N`` starts N CPU ranks
        # (gloo), in the place of the device flag.
        tokens += [Token("--nproc_per_node", REFERENCE), Token(str(cpu_ranks), REFERENCE)]
    else:
        raise ValueError("build_command needs gpus or cpu_ranks")
    if nnodes is not None and nnodes > 1:
        tokens += [Token("--nnodes", HARNESS), Token(str(nnodes), HARNESS)]
    if master:
        tokens += [Token("--master", HARNESS), Token(master, HARNESS)]
    if node_rank is not None and nnodes is not None and nnodes > 1:
        # paddle's node rank (``--rank``): without it, whoever reaches the rendezvous first is node 0.
        tokens += [Token("--rank", HARNESS), Token(str(node_rank), HARNESS)]
    tokens += [Token("--log_dir", HARNESS), Token(str(RunDir(run_dir).launcher), HARNESS)]
    # A derived config (the smoke variant) replaces the reference one: mark it so nobody mistakes it.
    config_source = REFERENCE if reference_config is None or config_arg == reference_config else HARNESS
    tokens += [Token(entry, REFERENCE), Token("-c", REFERENCE), Token(config_arg, config_source)]
    overrides = [(value, REFERENCE) for value in reference_overrides]
    overrides.append((f"Global.device={device}", REFERENCE if device_in_reference else HARNESS))
    overrides += [(value, HARNESS) for value in fixed_overrides] + [(value, USER) for value in extra_overrides]
    overrides += [(value, HARNESS) for value in harness_overrides]
    overrides.append((f"Global.output_dir={RunDir(run_dir).output}", HARNESS))
    overrides += [(f"Global.seed={seed}", HARNESS)] if seed is not None else []
    for value, source in overrides:
        tokens += [Token("-o", source), Token(value, source)]
    return LaunchCommand(tokens=tuple(tokens), cwd=upstream_dir, python=python or sys.executable)


# Launcher flags the harness sets whose environment twins would override them.
# PADDLE_RANK and PADDLE_TRAINER_ID both override --rank (``parse_args`` in args_envs.py).
OVERRIDING_LAUNCH_VARS = ("PADDLE_MASTER", "PADDLE_DEVICES", "PADDLE_NNODES", "PADDLE_NPROC_PER_NODE", "PADDLE_LOG_DIR",
                          "PADDLE_RUN_MODE", "PADDLE_RANK", "PADDLE_TRAINER_ID")


@dataclass(frozen=True)
class EnvChanges:
    set: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()

    def apply(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        base = os.environ if base is None else base
        return {**{name: value for name, value in base.items() if name not in self.unset}, **self.set}

    def to_manifest(self) -> dict:
        return {"set": dict(self.set), "unset": list(self.unset)}

    @classmethod
    def from_manifest(cls, data: dict) -> "EnvChanges":
        return cls(set=dict(data.get("set", {})), unset=tuple(data.get("unset", ())))


def environment_changes(profile_env: Mapping[str, str], visible_devices_var: str | None, gpus: list[int] | None,
                        current: Mapping[str, str] | None = None) -> EnvChanges:
    """What to add and remove, given the profile and the devices; ``unset`` lists only vars present now."""
    current = os.environ if current is None else current
    additions = {str(k): str(v) for k, v in profile_env.items()}
    removals: list[str] = [name for name in OVERRIDING_LAUNCH_VARS if name in current]
    if gpus is not None and visible_devices_var:
        additions[visible_devices_var] = ",".join(str(g) for g in gpus)
    elif gpus is None:
        removals += [name for name in visible_devices_vars() if name in current and name not in additions]
    return EnvChanges(set=additions, unset=tuple(removals))


def print_dry_run(command: LaunchCommand, env: EnvChanges, planned: Path, scaling: ScalingPlan | None,
                  as_json: bool = False) -> None:
    if as_json:
        click.echo(json.dumps({"run_dir": str(planned), "command": command.to_manifest(), "env": env.to_manifest(),
                               "notes": list(scaling.notes if scaling else [])}, indent=2))
        return
    additions = [*(f"{k}={v}" for k, v in env.set.items()), *(f"unset {k}" for k in env.unset)] or ["(none)"]
    click.echo("\n".join([
        "reference command:", f"  {shlex.join(command.reference_tokens)}",
        "command to run ([harness: ...] and [user: ...] mark additions to the reference):",
        f"  {command.marked_line()}", f"python: {command.python}", f"working directory: {command.cwd}",
        f"run directory: {planned} (not created: dry run)",
        "environment additions:", *(f"  {line}" for line in additions),
        *(f"note: {note}" for note in (scaling.notes if scaling else []))]))


def parse_gpus(text: str | None) -> list[int] | None:
    """``--gpus 0,1,2,3`` as distinct ids (None when not given); anything else is refused in one line."""
    if text is None or not text.strip():
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() for part in parts):  # "0,,1", "١,٢", "+1", "1_0"
        raise ReproError(f"--gpus {text!r} is not a comma-separated list of GPU ids: use e.g. --gpus 0,1,2,3", EXIT_BAD_INPUT)
    gpus = [int(part) for part in parts]
    if len(set(gpus)) != len(gpus):
        raise ReproError(f"--gpus {text!r} must list distinct non-negative GPU ids, e.g. --gpus 0,1,2,3", EXIT_BAD_INPUT)
    return gpus
