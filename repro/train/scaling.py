"""What changes when a run uses another number of devices than the reference, said before launch.

Upstream's batch size is per device, so 2 GPUs instead of 4 silently halve the global batch (64 x 2
instead of 256) while the learning rate stays the one tuned for 256: a different experiment. The
harness does not change that on its own (the reference command is the reference), but it says so,
and ``--scale-lr`` applies the linear scaling rule (lr x N / reference) as a visible override that
the manifest records. CPU ranks are devices for this purpose: each rank takes its own batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from repro.errors import EXIT_BAD_INPUT, ReproError
from repro.recipes import Recipe


@dataclass
class ScalingPlan:
    """Notes to print before launch and the ``-o`` values (if any) that implement ``--scale-lr``."""

    n_devices: int
    reference_devices: int
    batch_size_per_device: int
    reference_lr: float
    lr: float
    scale_lr: bool
    notes: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)

    @property
    def global_batch(self) -> int:
        return self.batch_size_per_device * self.n_devices

    @property
    def reference_global_batch(self) -> int:
        return self.batch_size_per_device * self.reference_devices

    @property
    def differs(self) -> bool:
        return self.n_devices != self.reference_devices

    def iterations_note(self) -> str:
        ratio = self.reference_global_batch / self.global_batch
        return f"each epoch takes {ratio:g} x the reference's iterations"

    def to_manifest(self) -> dict[str, Any]:
        return {
            "devices": self.n_devices,
            "reference_devices": self.reference_devices,
            "batch_size_per_device": self.batch_size_per_device,
            "global_batch": self.global_batch,
            "reference_global_batch": self.reference_global_batch,
            "reference_lr": self.reference_lr,
            "lr": self.lr,
            "scale_lr": self.scale_lr,
            "overrides": list(self.overrides),
            "notes": list(self.notes),
        }


def _format_lr(value: float) -> str:
    """Shortest text that ``eval``s back to the same float (upstream evals -o values)."""
    return repr(float(value))


def plan_scaling(
    recipe: Recipe,
    n_devices: int,
    scale_lr: bool,
    *,
    user_overrides: Sequence[str] = (),
    kind: str = "GPU",
) -> ScalingPlan:
    """Describe the change from ``recipe.reference_gpus`` devices to ``n_devices``.

    ``user_overrides`` are only inspected: a user ``-o`` of the batch size or the learning rate
    changes what the notes must say, and together with ``--scale-lr`` the lr would be set twice
    (the later silently winning), so that combination is refused. ``kind`` names the devices in the
    notes ("GPU" or "CPU rank").
    """
    if n_devices < 1:
        raise ReproError(f"the number of devices must be at least 1, got {n_devices}", EXIT_BAD_INPUT)
    keys = {option.split("=", 1)[0].lstrip("+").strip() for option in user_overrides}
    user_sets_lr = recipe.lr_key in keys
    user_sets_batch = recipe.batch_size_key in keys
    if scale_lr and user_sets_lr:
        raise ReproError(
            f"--scale-lr and -o {recipe.lr_key}=... both set the learning rate: drop one of them",
            EXIT_BAD_INPUT,
        )
    reference = recipe.reference_gpus
    per_device = recipe.batch_size_per_gpu
    plan = ScalingPlan(
        n_devices=n_devices,
        reference_devices=reference,
        batch_size_per_device=per_device,
        reference_lr=recipe.base_lr,
        lr=recipe.base_lr,
        scale_lr=scale_lr,
    )
    plural = "s" if n_devices != 1 else ""
    if plan.differs:
        plan.notes.append(
            f"{n_devices} {kind}{plural} instead of the reference {reference}: global batch "
            f"{per_device} x {n_devices} = {plan.global_batch} instead of {plan.reference_global_batch} "
            f"({recipe.batch_size_key}={per_device} is per {kind}), and {plan.iterations_note()}"
        )
        if scale_lr:
            plan.lr = recipe.base_lr * n_devices / reference
            plan.overrides.append(f"{recipe.lr_key}={_format_lr(plan.lr)}")
            plan.notes.append(
                f"--scale-lr: learning rate {recipe.base_lr} x {n_devices}/{reference} = {_format_lr(plan.lr)} "
                f"(-o {plan.overrides[-1]}); the result is no longer the reference recipe's"
            )
        elif not user_sets_lr:
            plan.notes.append(
                f"the learning rate stays {recipe.base_lr} (tuned for a global batch of "
                f"{plan.reference_global_batch}); --scale-lr would use {_format_lr(recipe.base_lr * n_devices / reference)}"
            )
    elif scale_lr:
        plan.notes.append(f"--scale-lr: {n_devices} {kind}{plural} is the reference count; the learning rate stays {recipe.base_lr}")
    if user_sets_batch:
        plan.notes.append(
            f"-o {recipe.batch_size_key} changes the per-{kind} batch: the global batch above assumes {per_device}"
        )
    return plan

