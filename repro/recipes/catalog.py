"""Recipes: what to train and what accuracy proves it, as YAML data in ``repro/recipes/``, so the launcher,
the pre-flight and the verdict read the same numbers and a new recipe is a file, not ``if`` branches."""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from repro.core.files import open_regular_file, read_text_bounded
from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.core.dotted import lookup
from repro.core.paths import package_dir

DEFAULT_RECIPE = "resnest50"
LAUNCH_MODULE = "paddle.distributed.launch"
DEVICE_KEY = "Global.device"
# Traps a recipe may declare; anything else in ``traps`` is a typo and refused at load.
TRAP_KINDS = ("expect", "list_prefix", "note")


@dataclass(frozen=True)
class Target:
    """A published accuracy and everything needed to judge a run against it honestly."""

    metric: str
    value: float
    eval_set_size: int
    judged: str = "best"
    # A fixed margin below ``value``. None (published numbers) means: judge with the eval set's
    # sampling error; a threshold the harness chose itself (the smoke's) sets 0.
    tolerance: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Target":
        known = {"metric", "value", "eval_set_size", "judged", "tolerance"}
        tolerance = data.get("tolerance")
        return cls(
            metric=str(data["metric"]),
            value=float(data["value"]),
            eval_set_size=int(data["eval_set_size"]),
            judged=str(data.get("judged", "best")),
            tolerance=None if tolerance is None else float(tolerance),
            provenance={k: v for k, v in data.items() if k not in known},
        )


def parse_targets(raw: Any) -> tuple[Target, ...]:
    """``target:`` as one mapping (one metric), a list of them, or a per-metric mapping
    (``{top1: {...}, top5: {...}}``, the key being the metric); the first is the recipe's main target."""
    if isinstance(raw, dict) and "metric" not in raw and raw and all(isinstance(v, dict) for v in raw.values()):
        return tuple(Target.from_dict({**value, "metric": metric}) for metric, value in raw.items())
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ValueError("target: is an empty list")
    return tuple(Target.from_dict(item) for item in items)


@dataclass(frozen=True)
class Launch:
    """The README's launch line, parsed: what the reference tokens of ``repro train`` must be."""

    command: str  # verbatim, line continuations joined
    env: dict[str, str] = field(default_factory=dict)  # what the README exports before it
    launcher: tuple[str, ...] = ("python", "-m", LAUNCH_MODULE)
    devices_flag: bool = True  # the README passes --gpus=LIST (else only CUDA_VISIBLE_DEVICES picks devices)
    device_override: bool = True  # the README passes -o Global.device=gpu itself
    config_arg: str = ""
    overrides: tuple[str, ...] = ()  # the README's -o values, in order, Global.device excluded

    @property
    def tokens(self) -> list[str]:
        """The README command as a shell splits it (``--gpus="0,1"`` is the token ``--gpus=0,1``)."""
        return shlex.split(self.command)

    @property
    def exports_flags(self) -> bool:
        return any(name.startswith("FLAGS_") for name in self.env)

    @classmethod
    def parse(cls, command: str, env: Mapping[str, Any], entry: str) -> "Launch":
        """Split ``python3 [-u] -m paddle.distributed.launch [--gpus=L] ENTRY -c CFG [-o K=V]...``."""
        tokens = shlex.split(command)
        if LAUNCH_MODULE not in tokens or entry not in tokens:
            raise ValueError(f"reference.command must launch {entry} with python -m {LAUNCH_MODULE}: {command!r}")
        start = tokens.index(LAUNCH_MODULE) + 1
        at_entry = tokens.index(entry)
        flags = tokens[start:at_entry]
        if any(not flag.startswith("--gpus=") for flag in flags) or len(flags) > 1:
            raise ValueError(f"reference.command has launcher flags the harness does not model: {flags}")
        args = tokens[at_entry + 1:]
        if len(args) < 2 or args[0] != "-c" or len(args) % 2:
            raise ValueError(f"reference.command must pass -c CONFIG then -o KEY=VALUE pairs: {args}")
        if any(flag != "-o" for flag in args[2::2]):
            raise ValueError(f"reference.command has options other than -c and -o: {args}")
        values = args[3::2]
        device = [value for value in values if value.split("=", 1)[0] == DEVICE_KEY]
        return cls(
            command=command,
            env={str(k): str(v) for k, v in (env or {}).items()},
            launcher=tuple(tokens[:start]),
            devices_flag=bool(flags),
            device_override=bool(device),
            config_arg=args[1],
            overrides=tuple(value for value in values if value not in device),
        )


@dataclass(frozen=True)
class MarkedOverride:
    """A ``-o`` the harness adds to the README's command on purpose (shown as ``[harness: ...]``)."""

    option: str
    why: str

    @property
    def key(self) -> str:
        return self.option.split("=", 1)[0]


# -- compliance: the rules of the reference run (repro.judge.compliance checks them) -------------
@dataclass(frozen=True)
class ConfigRule:
    """One value the reference ran with, read from upstream's config echo by its dotted ``key``."""

    name: str
    key: str
    value: Any
    absent: Any = None  # what a key missing from the echo means (None: missing is unknown)


@dataclass(frozen=True)
class ComplianceRules:
    """What a run must match to be the reference setup: global batch = per-device batch x devices x
    nodes, learning rate, class count, precision, the dataset sizes, and ``config`` rules (epochs,
    schedule, warm-up, image sizes). ``variant`` names whose rules these are (the recipe, or its smoke)."""

    variant: str
    per_device_batch: int
    batch_key: str
    devices: int  # per node
    nodes: int
    config: tuple[ConfigRule, ...]
    precision: str  # "FP32", or "AMP O1"/"AMP O2" (AMP.use_amp and AMP.level in the echo)
    train_images: int
    val_images: int
    source: str = ""

    @property
    def global_batch(self) -> int:
        return self.per_device_batch * self.devices * self.nodes


def echo_key(config_key: str) -> str:
    """A config edit's key (``LIST[OpName].OpName.size``, ``+KEY``) as upstream's echo spells it: list
    items print without an index, so the op name is the path component (``LIST.OpName.size``)."""
    key = config_key.lstrip("+")
    while "[" in key:
        head, _, rest = key.partition("[")
        name, _, tail = rest.partition("]")
        key = f"{head}.{name}{tail}" if not tail.startswith(f".{name}") else f"{head}{tail}"
    return key


def _compliance(data: dict[str, Any]) -> ComplianceRules | None:
    """The recipe's ``compliance:`` block joined with the fields the launcher already reads (batch,
    devices, learning rate, classes): one truth for each number."""
    block = data.get("compliance")
    if block is None:
        return None
    rules = [ConfigRule("learning rate", data["lr_key"], float(data["base_lr"])),
             ConfigRule("class count", "Arch.class_num", int(data["class_num"]))]
    for name, rule in (block.get("config") or {}).items():
        rules.append(ConfigRule(str(name), str(rule["key"]), rule["value"], rule.get("absent")))
    return ComplianceRules(
        variant=str(data["name"]), per_device_batch=int(data["batch_size_per_gpu"]), batch_key=data["batch_size_key"],
        devices=int(data["reference_gpus"]),
        nodes=int(block.get("nodes", 1)), config=tuple(rules), precision=str(block["precision"]),
        train_images=int(block["train_images"]), val_images=int(block["val_images"]), source=str(block.get("source", "")),
    )


def compliance_rules(recipe: "Recipe", smoke: bool = False) -> ComplianceRules | None:
    """The rules a run of ``recipe`` is held to: the reference's, or for a smoke run its own variant's
    (the reference's with the smoke's config edits, CPU ranks and tiny dataset): a smoke is compliant
    with what ``make smoke`` is meant to run, never with the reference."""
    rules = recipe.compliance
    if rules is None or not smoke:
        return rules
    smoke_data = recipe.data.get("smoke") or {}
    edits = {echo_key(k): v for k, v in ((smoke_data.get("config") or {}).get("set") or {}).items()}
    dataset = smoke_data.get("dataset") or {}
    classes = int(dataset.get("classes", recipe.class_num))
    config = tuple(ConfigRule(rule.name, rule.key, edits.get(rule.key, rule.value), rule.absent) for rule in rules.config)
    return dataclasses.replace(
        rules, variant=f"{recipe.name} smoke", config=config,
        per_device_batch=int(edits.get(rules.batch_key, rules.per_device_batch)),
        devices=int(smoke_data.get("cpu_ranks", rules.devices)), nodes=1,
        train_images=classes * int(dataset.get("train_per_class", 0)) or rules.train_images,
        val_images=classes * int(dataset.get("val_per_class", 0)) or rules.val_images,
        source=f"the smoke section of recipe {recipe.name} (config edits, cpu_ranks, dataset)",
    )


@dataclass(frozen=True)
class Recipe:
    name: str
    arch: str
    config: str
    entry: str
    reference_overrides: tuple[str, ...]
    reference_gpus: int
    batch_size_per_gpu: int
    batch_size_key: str
    base_lr: float
    lr_key: str
    checkpoint_mb: int
    class_num: int
    # None when the README states no accuracy: check-accuracy then says there is no target.
    target: Target | None
    launch: Launch | None = None
    harness_overrides: tuple[MarkedOverride, ...] = ()
    traps: tuple[dict[str, Any], ...] = ()
    # The raw mapping, for sections only some consumers read (e.g. ``smoke``).
    data: dict[str, Any] = field(default_factory=dict, repr=False)
    targets: tuple[Target, ...] = ()  # every metric's target; a metric without one is not judged
    compliance: ComplianceRules | None = None  # the reference run's rules (None: the recipe states none)


def recipes_dir() -> Path:
    return package_dir() / "recipes"


def available_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def load_recipe(name: str = DEFAULT_RECIPE) -> Recipe:
    path = recipes_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ReproError(
            f"unknown recipe {name!r}; choose one of: {', '.join(available_recipes())}", EXIT_BAD_INPUT
        )
    data = yaml.safe_load(read_text_bounded(path, what="recipe", fix="restore it from the harness repository"))
    try:
        target_data = data["target"]
        stated = not (isinstance(target_data, dict) and "metric" in target_data and target_data.get("value") is None)
        targets = parse_targets(target_data) if stated else ()
        reference = data.get("reference")
        launch = Launch.parse(reference["command"], reference.get("env") or {}, data["entry"]) if reference else None
        recipe = Recipe(
            **{key: data[key] for key in ("name", "arch", "config", "entry", "batch_size_key", "lr_key")},
            **{key: int(data[key]) for key in ("reference_gpus", "batch_size_per_gpu", "checkpoint_mb", "class_num")},
            reference_overrides=tuple(data.get("reference_overrides", [])),
            base_lr=float(data["base_lr"]),
            target=targets[0] if targets else None,
            launch=launch,
            harness_overrides=tuple(
                MarkedOverride(str(item["option"]), str(item["why"])) for item in data.get("harness_overrides") or []
            ),
            traps=tuple(_checked_trap(trap) for trap in data.get("traps") or []),
            data=data,
            targets=targets,
            compliance=_compliance(data),
        )
        _check_consistent(recipe)
        return recipe
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ReproError(f"recipe file {path} is incomplete or malformed ({error}); fix the file", EXIT_BAD_INPUT)


def _checked_trap(trap: dict[str, Any]) -> dict[str, Any]:
    kind = trap.get("kind")
    if kind not in TRAP_KINDS or not trap.get("why"):
        raise ValueError(f"trap {trap!r} needs kind (one of {', '.join(TRAP_KINDS)}) and why")
    return dict(trap)


def _check_consistent(recipe: Recipe) -> None:
    """The structured fields must say what the README line says (one truth, checked at load)."""
    launch = recipe.launch
    if launch is None:
        return
    if launch.config_arg != recipe.config:
        raise ValueError(f"config {recipe.config} is not the README's -c {launch.config_arg}")
    if launch.overrides != recipe.reference_overrides:
        raise ValueError(f"reference_overrides {list(recipe.reference_overrides)} are not the README's {list(launch.overrides)}")
    gpus = [t.split("=", 1)[1] for t in launch.tokens if t.startswith("--gpus=")]
    listed = gpus[0] if gpus else launch.env.get("CUDA_VISIBLE_DEVICES", "")
    if listed and len(listed.split(",")) != recipe.reference_gpus:
        raise ValueError(f"reference_gpus {recipe.reference_gpus} is not the README's device list {listed}")


def launch_env(recipe: Recipe, profile_env: Mapping[str, str]) -> dict[str, str]:
    """The profile's variables, less the ``FLAGS_*`` the recipe's README does not export (the GPU profiles
    carry ResNeSt50's cuDNN flags; EfficientNetB0, SE_ResNet50_vd and Xception41's references ran without)."""
    exported = recipe.launch.env if recipe.launch else None
    if exported is None:
        return dict(profile_env)
    return {k: v for k, v in profile_env.items() if not k.startswith("FLAGS_") or k in exported}


def marked_overrides(recipe: Recipe, user_overrides: Sequence[str]) -> list[str]:
    """The recipe's own ``-o`` additions, less any key the user sets explicitly (theirs wins, and
    pre-flight's trap check then says what that changes)."""
    keys = {option.split("=", 1)[0].lstrip("+").strip() for option in user_overrides}
    return [item.option for item in recipe.harness_overrides if item.key not in keys]


def recipe_problems(
    recipe: Recipe, config: Mapping[str, Any], list_heads: Mapping[str, str | None] | None = None
) -> list[str]:
    """The recipe's traps the resolved ``config`` falls into, one line with its fix each (pure, no I/O):
    ``expect`` names keys and the values needed (a missing key is its ``absent_means``), ``list_prefix`` the
    first line of each list file (``list_heads`` from :func:`read_list_heads`: mode -> line, None unreadable)."""
    problems: list[str] = []
    for trap in recipe.traps:
        if trap["kind"] == "expect":
            for key, wanted in (trap.get("values") or {}).items():
                found, value = lookup(config, key)
                if not found:
                    value = (trap.get("absent_means") or {}).get(key)
                if value != wanted:
                    problems.append(
                        f"recipe {recipe.name}: {key} is {value!r}, the reproduction needs {wanted!r} ({trap['why']}); "
                        f"drop the -o that changes it, or see `repro recipes show {recipe.name}`"
                    )
        elif trap["kind"] == "list_prefix" and list_heads is not None:
            for mode, prefix in (trap.get("prefixes") or {}).items():
                head = list_heads.get(mode)
                if head is not None and not head.startswith(prefix):
                    problems.append(
                        f"recipe {recipe.name}: the {mode} list's first entry {head.split()[0] if head.split() else head!r} "
                        f"lacks the {prefix!r} prefix ({trap['why']}); prefix every line, e.g. "
                        f"`sed -i 's#^#{prefix}#' LIST` on a copy of the list"
                    )
    return problems


def read_list_heads(config: Mapping[str, Any], upstream_dir: Path) -> dict[str, str | None]:
    """First line of each loader's ``cls_label_path`` (relative to the checkout, as upstream reads it)."""
    heads: dict[str, str | None] = {}
    for mode in ("Train", "Eval"):
        found, path = lookup(config, f"DataLoader.{mode}.dataset.cls_label_path")
        if not found or not isinstance(path, str):
            continue
        try:
            with open_regular_file(Path(upstream_dir) / path) as handle:
                heads[mode] = handle.readline(4096).decode("utf-8", "replace").strip()
        except (OSError, ReproError):
            heads[mode] = None  # a missing list is pre-flight's dataset check's to report
    return heads


def target_status(recipe: Recipe) -> str:
    """One phrase for listings: the stated number's hardware, or why there is none."""
    info = recipe.data.get("target") or {}
    return str(info.get("status", "no accuracy stated" if recipe.target is None else "stated"))


# -- compare: equivalence margin and throughput baselines (``compare:`` in a recipe) -------------------
DEFAULT_COMPARE_MARGIN = 0.005  # 0.5 point of top-1: ~5 x the final-epoch seed spread of ResNet-50-class runs
DEFAULT_COMPARE_ALPHA = 0.05  # per one-sided test: a 90 % interval
DEFAULT_DATA_BOUND_SHARE = 0.10  # reader_cost / batch_cost above this: the devices wait for data


@dataclass(frozen=True)
class ThroughputBaseline:
    """A published training throughput for this software, with where it was stated."""

    model: str
    device: str
    precision: str
    devices: int
    per_device: float | None  # images/s per device; None when the source's unit is unclear
    source: str
    stated: str = ""  # the figure as the source prints it
    note: str = ""

    def describe(self) -> str:
        figure = f"{self.per_device:g} img/s per device" if self.per_device is not None else f"'{self.stated}' (unit unclear)"
        return f"{self.model}, {self.devices} x {self.device}, {self.precision}: {figure} ({self.source})"


@dataclass(frozen=True)
class CompareSettings:
    """What ``repro compare`` reads from a recipe: the margin, alpha, the data-bound share, baselines."""

    margin: float = DEFAULT_COMPARE_MARGIN
    margin_source: str = f"default {DEFAULT_COMPARE_MARGIN:g}"
    alpha: float = DEFAULT_COMPARE_ALPHA
    data_bound_share: float = DEFAULT_DATA_BOUND_SHARE
    baselines: tuple[ThroughputBaseline, ...] = ()
    baseline_status: str = "the recipe records no published throughput baseline"


def compare_settings(recipe: Recipe, smoke: bool = False) -> CompareSettings:
    """The recipe's ``compare:`` block (``smoke.compare`` on top for smoke runs), defaults otherwise."""
    block = dict(recipe.data.get("compare") or {})
    if smoke:
        block.update((recipe.data.get("smoke") or {}).get("compare") or {})
    where = f"recipe {recipe.name}{' (smoke)' if smoke else ''}"
    try:
        margin = float(block.get("margin", DEFAULT_COMPARE_MARGIN))
        alpha = float(block.get("alpha", DEFAULT_COMPARE_ALPHA))
        share = float(block.get("data_bound_share", DEFAULT_DATA_BOUND_SHARE))
        baselines = tuple(
            ThroughputBaseline(model=str(item["model"]), device=str(item["device"]), precision=str(item["precision"]),
                               devices=int(item["devices"]),
                               per_device=None if item.get("per_device") is None else float(item["per_device"]),
                               source=str(item["source"]), stated=str(item.get("stated", "")), note=str(item.get("note", "")))
            for item in block.get("throughput_baselines") or [])
    except (KeyError, TypeError, ValueError) as error:
        raise ReproError(f"{where}: compare block is malformed ({error}); fix repro/recipes/{recipe.name}.yaml",
                         EXIT_BAD_INPUT) from None
    if not 0 < margin < 1 or not 0 < alpha < 0.5 or not 0 < share < 1:
        raise ReproError(f"{where}: compare margin {margin}, alpha {alpha}, data_bound_share {share} must be in (0, 1), "
                         f"(0, 0.5), (0, 1); fix repro/recipes/{recipe.name}.yaml", EXIT_BAD_INPUT)
    status = str(block.get("throughput_baseline_status") or CompareSettings.baseline_status)
    source = f"{where} ({block['margin_why']})" if "margin" in block and block.get("margin_why") else (
        where if "margin" in block else f"default {DEFAULT_COMPARE_MARGIN:g} (0.5 point)")
    return CompareSettings(margin, source, alpha, share, baselines, status)
