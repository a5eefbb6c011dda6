"""Environment changes for the launch: the profile's FLAGS_*, the visible devices, and nothing stray.

How ``--gpus`` meets ``CUDA_VISIBLE_DEVICES`` (paddle 2.6 ``distributed/launch/context/device.py``):
the launcher takes its device labels from ``CUDA_VISIBLE_DEVICES`` when set (else ``0..count-1``) and
maps each ``--gpus`` entry to its *index* in those labels (``labels.index(d)``), which becomes the
rank's ``FLAGS_selected_gpus``. So ``--gpus=4,5`` with ``CUDA_VISIBLE_DEVICES=4,5`` gives ranks
devices 0 and 1 of the visible set, i.e. physical 4 and 5; but a user's leftover
``CUDA_VISIBLE_DEVICES=0,1`` with ``--gpus=4,5`` crashes the launcher (``'4' is not in list``). We set
the variable to exactly the ``--gpus`` list: physical ids in both places, always consistent.

On the CPU profile a stray ``CUDA_VISIBLE_DEVICES`` would make the launcher believe it drives GPUs
(``Device.parse_device``) and skip the gloo backend, so it is removed. Likewise the ``PADDLE_*``
variables that paddle's launcher lets override its command-line flags (``env_args_mapping`` in
``context/args_envs.py``): left in the environment they would silently replace our ``--log_dir``,
``--nnodes``, ``--master`` or device list, so they are removed and the removal is reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

# Launcher flags the harness sets whose environment twins would override them.
OVERRIDING_LAUNCH_VARS = (
    "PADDLE_MASTER",
    "PADDLE_DEVICES",
    "PADDLE_NNODES",
    "PADDLE_NPROC_PER_NODE",
    "PADDLE_LOG_DIR",
    "PADDLE_RUN_MODE",
)
DEVICE_VISIBILITY_VARS = ("CUDA_VISIBLE_DEVICES", "XPU_VISIBLE_DEVICES")


@dataclass(frozen=True)
class EnvChanges:
    set: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()

    def apply(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        for name in self.unset:
            env.pop(name, None)
        env.update(self.set)
        return env

    def to_manifest(self) -> dict:
        return {"set": dict(self.set), "unset": list(self.unset)}

    @classmethod
    def from_manifest(cls, data: dict) -> "EnvChanges":
        return cls(set=dict(data.get("set", {})), unset=tuple(data.get("unset", ())))

    def lines(self) -> list[str]:
        out = [f"{k}={v}" for k, v in self.set.items()]
        out += [f"unset {k}" for k in self.unset]
        return out


def environment_changes(
    profile_env: Mapping[str, str],
    visible_devices_var: str | None,
    gpus: list[int] | None,
    current: Mapping[str, str] | None = None,
) -> EnvChanges:
    """What to add and remove, given the profile and the devices; ``unset`` lists only vars present now."""
    current = os.environ if current is None else current
    additions = {str(k): str(v) for k, v in profile_env.items()}
    removals: list[str] = [name for name in OVERRIDING_LAUNCH_VARS if name in current]
    if gpus is not None and visible_devices_var:
        additions[visible_devices_var] = ",".join(str(g) for g in gpus)
    elif gpus is None:
        removals += [name for name in DEVICE_VISIBILITY_VARS if name in current and name not in additions]
    return EnvChanges(set=additions, unset=tuple(removals))
