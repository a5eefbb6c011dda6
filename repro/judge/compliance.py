"""Compliance: did the run use the reference run's setup, as upstream itself echoed it at start-up?
Where each value is read from: docs/ARCHITECTURE.md, "Compliance". A smoke run is held to its smoke rules.

The eval must score every val image once. ``DistributedBatchSampler`` pads the index list to a
multiple of the world size with the list's first images and cuts it into per-rank batches in list
order; upstream's eval gathers the batches in that order and trims the gathered tail to the dataset
size (``ppcls/engine/evaluation/classification.py`` at the pin; an older PaddleClas counted the
padding twice). From the eval's ``[Iter: i/n]`` lines, its batch size, ``drop_last``/``shuffle`` and
the world size, the padded (duplicated) and never-scored list lines are named.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from repro.dataset.layout import VAL_LIST
from repro.logs.parse import LaunchWorld, RunLogs
from repro.logs.scan import Segment
from repro.recipes.catalog import ComplianceRules, Recipe, compliance_rules
from repro.upstream.pin import load_pin
from repro.core.dotted import lookup
from repro.core.errors import ReproError
from repro.core.files import read_text_bounded

COMPLIANT, NONCOMPLIANT, NOT_SHOWN = "COMPLIANT", "NONCOMPLIANT", "NOT SHOWN"
COVERAGE = "eval coverage"  # its check is explained by the eval lines, not a line of its own
EVAL_BATCH_KEY = "DataLoader.Eval.sampler.batch_size"
EVAL_SAMPLER_KEY = "DataLoader.Eval.sampler"
TRAIN_SAMPLER_KEY = "DataLoader.Train.sampler"
# How many duplicated or missing list lines are named (the count is always given).
NAMED_SAMPLES = 5
VAL_LIST_LIMIT = 64 << 20  # ImageNet's val list is ~2 MB


@dataclass(frozen=True)
class RuleCheck:
    """One rule: the reference's value, the run's (None: the logs cannot say), agreeing (None: not checkable)."""

    rule: str
    expected: str
    found: str | None
    ok: bool | None
    detail: str = ""

    @property
    def line(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        if self.ok is False:
            return f"NONCOMPLIANT {self.rule} {self.found} != {self.expected}{detail}"
        if self.ok is None:
            return f"unknown {self.rule}: the reference's is {self.expected}{detail}"
        return f"ok {self.rule} {self.found}{detail}"


@dataclass
class Compliance:
    variant: str
    smoke: bool
    devices_source: str
    checks: list[RuleCheck] = field(default_factory=list)
    eval_lines: list[str] = field(default_factory=list)  # how the eval covered the val set
    note: str = ""

    @property
    def violations(self) -> list[RuleCheck]:
        return [check for check in self.checks if check.ok is False]

    @property
    def unknown(self) -> list[RuleCheck]:
        return [check for check in self.checks if check.ok is None]

    @property
    def status(self) -> str:
        if self.violations:
            return NONCOMPLIANT
        return NOT_SHOWN if self.unknown or not self.checks else COMPLIANT

    @property
    def headline(self) -> str:
        whose = f"the {self.variant} variant's rules (a smoke run: not the reference setup)" if self.smoke \
            else f"recipe {self.variant}'s reference rules"
        if self.status == COMPLIANT:
            return f"COMPLIANT with {whose}: {len(self.checks)} rules; devices from {self.devices_source}"
        if self.status == NOT_SHOWN:
            what = ", ".join(check.rule for check in self.unknown) or "no rule"
            return f"compliance NOT SHOWN for {whose}: {what} cannot be read from these logs; devices from {self.devices_source}"
        return f"NONCOMPLIANT with {whose}: {len(self.violations)} of {len(self.checks)} rules; devices from {self.devices_source}"

    @property
    def lines(self) -> list[str]:
        """The block check-accuracy prints: the headline, each violated or unknown rule, the eval."""
        return [self.note or self.headline, *(f"  {check.line}" for check in self.checks
                                              if check.ok is not True and check.rule != COVERAGE),
                *(f"  {line}" for line in self.eval_lines)]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "variant": self.variant, "smoke": self.smoke,
                "devices_source": self.devices_source, "note": self.note, "eval": list(self.eval_lines),
                "checks": [asdict(check) for check in self.checks], "lines": self.lines,
                "violations": [check.line for check in self.violations if check.rule != COVERAGE]
                + [line for line in self.eval_lines if line.startswith(NONCOMPLIANT)]}


# -- reading values --------------------------------------------------------------------------------
def same_value(expected: Any, found: str) -> bool:
    """Echo text against a YAML value: numbers numerically, booleans by Python's spelling, else text."""
    if isinstance(expected, bool):
        return found == str(expected)
    if isinstance(expected, (int, float)):
        try:
            return math.isclose(float(found), float(expected), rel_tol=1e-9, abs_tol=1e-12)
        except ValueError:
            return False
    return found.strip() == str(expected)


def precision_of(config: dict[str, str]) -> str:
    """FP32, or "AMP O1"/"AMP O2", as ``Engine._init_amp`` decides: an AMP block turns AMP on unless
    ``use_amp`` is False (a missing ``use_amp`` means True), its level defaulting to O1."""
    amp_keys = [key for key in config if key.startswith("AMP.")]
    if not amp_keys or config.get("AMP.use_amp", "True") != "True":
        return "FP32"
    return f"AMP {config.get('AMP.level', 'O1')}"


def world_of(manifest: dict[str, Any] | None, launched: LaunchWorld | None) -> tuple[int | None, int | None, str]:
    """Ranks and nodes, with where they were read: the manifest, else the launcher's files or upstream's
    warning (:func:`repro.logs.parse.launcher_world`), else unknown (never guessed)."""
    world = lookup(manifest or {}, "devices.world_size")[1]
    if isinstance(world, int) and world > 0:
        return world, int(lookup(manifest, "devices.nnodes")[1] or 1), "manifest.json"
    if launched is not None and launched.world:
        return launched.world, launched.nodes, launched.source
    return None, None, "nowhere: the device count is unknown (no manifest, launcher env log or upstream warning)"


def _list_lines(manifest: dict[str, Any] | None, split: str) -> int | None:
    lines = lookup(manifest or {}, f"dataset.fingerprint.{split}_list.lines")[1]
    return lines if isinstance(lines, int) else None


def _int(text: str | None) -> int | None:
    try:
        return int(str(text))
    except ValueError:
        return None


# -- the sampler's arithmetic ----------------------------------------------------------------------
def batches_per_rank(images: int, world: int, batch: int, drop_last: bool) -> int:
    """``len(DistributedBatchSampler)``: ceil(images / world) samples a rank, in batches of ``batch``."""
    per_rank = math.ceil(images / world)
    return per_rank // batch if drop_last else math.ceil(per_rank / batch)


def images_for(batches: int, world: int, batch: int, drop_last: bool) -> tuple[int, int]:
    """The dataset sizes (lowest, highest) for which the sampler gives ``batches`` a rank."""
    if drop_last:
        low_rank, high_rank = batches * batch, (batches + 1) * batch - 1
    else:
        low_rank, high_rank = (batches - 1) * batch + 1, batches * batch
    return (low_rank - 1) * world + 1, high_rank * world


@dataclass(frozen=True)
class EvalCoverage:

    images: int
    world: int
    batch: int
    batches: int
    drop_last: bool
    shuffle: bool
    padded: int  # list lines 1..padded are drawn twice (the sampler's padding)
    missing: int  # list lines images-missing+1..images are never drawn (drop_last)

    @classmethod
    def of(cls, images: int, world: int, batch: int, drop_last: bool, shuffle: bool) -> "EvalCoverage":
        per_rank = math.ceil(images / world)
        batches = batches_per_rank(images, world, batch, drop_last)
        drawn = min(per_rank * world, batches * batch * world)  # gathered in list order, padding last
        return cls(images, world, batch, batches, drop_last, shuffle, max(0, drawn - images), max(0, images - drawn))


def _name_lines(first: int, last: int, listed: list[str] | None) -> str:
    """``list line 1 (val/x.JPEG)``, or a range; at most NAMED_SAMPLES named."""
    numbers = list(range(first, last + 1))
    shown = numbers[:NAMED_SAMPLES]
    names = [f"{n} ({listed[n - 1].split(' ')[0]})" if listed and n <= len(listed) else str(n) for n in shown]
    more = f" and {len(numbers) - len(shown)} more" if len(numbers) > len(shown) else ""
    return f"list line{'s' if len(numbers) > 1 else ''} {', '.join(names)}{more}"


def _read_val_list(manifest: dict[str, Any] | None) -> list[str] | None:
    root = lookup(manifest or {}, "dataset.root")[1]
    if not isinstance(root, str):
        return None
    try:
        return read_text_bounded(Path(root) / VAL_LIST, VAL_LIST_LIMIT, what="val list").splitlines()
    except (OSError, ReproError):
        return None  # the lines are then named by number only


def _upstream_trims(manifest: dict[str, Any] | None) -> bool | None:
    """Whether the run's upstream trims the eval padding: yes at the pin (checked in its source), unknown otherwise."""
    commit = lookup(manifest or {}, "upstream.commit")[1]
    try:
        return bool(commit) and commit == load_pin().commit or None
    except ReproError:
        return None


def eval_coverage_lines(coverage: EvalCoverage, trims: bool | None, listed: list[str] | None,
                        source: str) -> tuple[list[str], bool | None]:
    """What the eval scored, and whether every val image counted exactly once (None: unknown)."""
    setup = (f"{coverage.world} rank(s) x {coverage.batches} batches of {coverage.batch}"
             f"{', drop_last' if coverage.drop_last else ''}{', shuffled' if coverage.shuffle else ''}")
    lines: list[str] = []
    ok: bool | None = True
    if coverage.padded:
        dup = _name_lines(1, coverage.padded, None if coverage.shuffle else listed)
        if coverage.shuffle:
            lines.append(f"eval: the sampler pads {coverage.images} val images to {coverage.images + coverage.padded} "
                         f"and shuffles: upstream's trim of the gathered tail then drops other images than the "
                         f"{coverage.padded} duplicates, so up to {coverage.padded} are counted twice and as many "
                         "never (set DataLoader.Eval.sampler.shuffle False)")
            ok = False
        elif trims:
            lines.append(f"eval: {dup} drawn twice (the sampler pads {coverage.images} to a multiple of {coverage.world} "
                         "ranks); upstream at the pin trims the padding before scoring, so each counts once")
        else:
            lines.append(f"eval: {dup} drawn twice (the sampler pads {coverage.images} to a multiple of {coverage.world} "
                         "ranks): counted once if the run's upstream trims the padding (the pinned one does; "
                         "PaddleClas before that fix counted them twice); which upstream ran is not recorded")
            ok = None
    if coverage.missing:
        first = coverage.images - coverage.missing + 1
        lines.append(f"eval: {_name_lines(first, coverage.images, listed)} never scored: drop_last drops each rank's "
                     "last, partial batch (set DataLoader.Eval.sampler.drop_last False)")
        ok = False
    if not lines:
        lines.append(f"eval: each of the {coverage.images} val images scored once ({setup}; {source})")
    else:
        lines[-1] += f" [{setup}; {source}]"
    return lines, ok


# -- the check -------------------------------------------------------------------------------------
def _config_checks(rules: ComplianceRules, segments: list[Segment]) -> list[RuleCheck]:
    checks = []
    for rule in rules.config:
        absent = None if rule.absent is None else str(rule.absent)  # what a key missing from the echo means
        seen = [(segment.index, segment.config.get(rule.key, absent)) for segment in segments]
        bad = [(index, value) for index, value in seen if value is not None and not same_value(rule.value, value)]
        known = [value for _, value in seen if value is not None]
        if bad:
            where = f"launch {bad[0][0]}, " if len(segments) > 1 else ""
            checks.append(RuleCheck(rule.name, str(rule.value), bad[0][1], False, f"{where}{rule.key}"))
        elif known:
            checks.append(RuleCheck(rule.name, str(rule.value), known[-1], True, rule.key))
        else:
            checks.append(RuleCheck(rule.name, str(rule.value), None, None, f"{rule.key} not in the echo"))
    precisions = [precision_of(segment.config) for segment in segments]
    wrong = [p for p in precisions if p != rules.precision]
    checks.append(RuleCheck("precision", rules.precision, (wrong or precisions)[0], not wrong,
                            "AMP.use_amp, AMP.level"))
    return checks


def _nodes(count: int) -> str:
    return f"{count} node{'s' if count != 1 else ''}"


def _batch_check(rules: ComplianceRules, segments: list[Segment], world: int | None, nodes: int | None) -> RuleCheck:
    """Per launch: its echoed per-device batch x its world size (upstream's own warning names the
    launch's world when it is not the config's intended one, and wins over the recorded one)."""
    expected = f"{rules.global_batch}"
    reference = f"the reference: {rules.per_device_batch} x {rules.devices} devices x {_nodes(rules.nodes)}"
    checks = []
    for segment in segments:
        batch = _int(segment.config.get(rules.batch_key))
        ranks = segment.world_warned or world
        where = f"launch {segment.index}: " if len(segments) > 1 else ""
        if batch is None or ranks is None:
            why = (f"{rules.batch_key} not in the echo" if batch is None
                   else f"{batch} x ? devices: the device count is unknown")
            checks.append(RuleCheck("global batch", expected, None, None, f"{where}{why}; {reference}"))
            continue
        count = nodes if ranks == world else None
        if count is None:
            detail = f"{batch} x {ranks} devices in all (the node count is not recorded)"
        else:
            per_node = f"{ranks // count}" if ranks % count == 0 else f"{ranks}/{count}"
            detail = f"{batch} x {per_node} devices x {_nodes(count)}"
        if world is not None and ranks != world:
            detail += f"; upstream's warning names {ranks} ranks, the recorded count is {world}"
        found = batch * ranks
        ok = found == rules.global_batch
        checks.append(RuleCheck("global batch", expected, str(found), ok, f"{where}{detail}" + ("" if ok else f"; {reference}")))
    return next((c for c in checks if c.ok is False), None) or next((c for c in checks if c.ok is None), None) or checks[-1]


def _images_check(name: str, expected: int, listed: int | None, batches: int | None, batch: int | None,
                  world: int | None, drop_last: bool) -> RuleCheck:
    """The list's line count (manifest), else whether the logged batches a rank fit ``expected`` images."""
    if listed is not None:
        return RuleCheck(name, str(expected), str(listed), listed == expected, "list file lines (manifest.json)")
    if batches is None or batch is None or world is None:
        why = "no iteration line" if batches is None else "the batch size is not echoed" if batch is None else "the device count is unknown"
        return RuleCheck(name, str(expected), None, None, f"{why}: the logged batches cannot be counted")
    low, high = images_for(batches, world, batch, drop_last)
    setup = f"{batches} batches of {batch} a rank x {world} ranks"
    if low <= expected <= high:
        return RuleCheck(name, str(expected), str(expected), True, f"{setup} fit {low}-{high} images")
    return RuleCheck(name, str(expected), f"{low}-{high}", False, f"{setup}: the dataset read was not the recipe's")


def _last_int(frame, column: str) -> int | None:
    if column not in frame.columns:
        return None
    values = frame[column].dropna()
    return int(values.iloc[-1]) if not values.empty else None


def check_compliance(run: RunLogs, recipe: Recipe | None, smoke: bool | None = None) -> Compliance | None:
    """``recipe``'s rules (its smoke variant's for a smoke run) checked on ``run``; None: the recipe has none."""
    if recipe is None:
        return None
    smoke = bool((run.manifest or {}).get("smoke")) if smoke is None else smoke
    rules = compliance_rules(recipe, smoke)
    if rules is None:
        return None
    world, nodes, source = world_of(run.manifest, run.launch_world)
    result = Compliance(variant=rules.variant, smoke=smoke, devices_source=source)
    segments = [segment for segment in run.segments if segment.has_echo and segment.config]
    if not segments:
        result.note = ("compliance NOT SHOWN: the log has no start-up config echo (its head is missing), so the "
                       "run's setup cannot be read; judge the whole log (workerlog.0 or train.log from the start)")
        return result
    result.checks.append(_batch_check(rules, segments, world, nodes))
    result.checks += _config_checks(rules, segments)
    last = segments[-1].config
    train_batch = _int(last.get(rules.batch_key))
    train = run.primary.train_epochs
    result.checks.append(_images_check("train images", rules.train_images, _list_lines(run.manifest, "train"),
                                       _last_int(train, "iters"), train_batch, world,
                                       last.get(f"{TRAIN_SAMPLER_KEY}.drop_last") == "True"))
    eval_batch, drop_last = _int(last.get(EVAL_BATCH_KEY)), last.get(f"{EVAL_SAMPLER_KEY}.drop_last") == "True"
    eval_batches = _last_int(run.primary.evals, "eval_iters")
    listed_val = _list_lines(run.manifest, "val")
    val_check = _images_check("val images", rules.val_images, listed_val, eval_batches, eval_batch, world, drop_last)
    result.checks.append(val_check)
    if val_check.ok is False:
        return result  # the eval read another val set: its coverage of this one is moot
    result.eval_lines, coverage_ok = _coverage(run, rules, listed_val, eval_batches, eval_batch, world, drop_last,
                                               last.get(f"{EVAL_SAMPLER_KEY}.shuffle") == "True")
    if coverage_ok is False:  # a violated rule is named as one, whichever line explains it
        result.eval_lines = [f"NONCOMPLIANT {line}" for line in result.eval_lines]
    if coverage_ok is not None or result.eval_lines:
        result.checks.append(RuleCheck(COVERAGE, "each val image once",
                                       {True: "each once", False: "not each once", None: None}[coverage_ok],
                                       coverage_ok, "see eval: below" if coverage_ok is not True else ""))
    return result


def _coverage(run: RunLogs, rules: ComplianceRules, listed: int | None, batches: int | None, batch: int | None,
              world: int | None, drop_last: bool, shuffle: bool) -> tuple[list[str], bool | None]:
    if batches is None:
        return [], None
    if batch is None or world is None:
        why = "the eval batch size is not echoed" if batch is None else "the device count is unknown"
        return [f"eval: {batches} batches a rank logged, but {why}: its coverage of the val set cannot be counted"], None
    images = listed if listed is not None else rules.val_images
    coverage = EvalCoverage.of(images, world, batch, drop_last, shuffle)
    if coverage.batches != batches:
        low, high = images_for(batches, world, batch, drop_last)
        return [f"eval: {batches} batches of {batch} a rank x {world} ranks fit a val set of {low}-{high} images, "
                f"not {images}: the eval did not see the val set of the recipe"], False
    source = "list size from manifest.json" if listed is not None else f"the recipe's {images} val images"
    needed = coverage.padded or coverage.missing
    return eval_coverage_lines(coverage, _upstream_trims(run.manifest),
                               _read_val_list(run.manifest) if needed else None, source)
