"""Does a port train like the reference platform? Curves against a band, the final number by TOST, speed.

One run per seed on each side; the questions, outcomes and exit codes are docs/comparing.md's. The
exit is 2 (NOT SHOWN) with the curves inside, like check-accuracy's INCOMPLETE: nothing wrong was
found, nothing was shown either.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from repro.core.cli_wiring import aligned_columns
from repro.core.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, ReproError
from repro.judge.band import Band, Breach, build_band, run_facts, run_series
from repro.judge.equivalence import EQUIVALENT, NOT_EQUIVALENT, NOT_SHOWN, Equivalence, tost
from repro.judge.health import health_settings
from repro.judge.throughput import SideThroughput, Throughput, run_throughput
from repro.judge.verdict import Verdict
from repro.logs.parse import RunLogs
from repro.recipes.catalog import CompareSettings, Recipe

CANDIDATE, REFERENCE = "candidate", "reference"
EXIT_CODES = {EQUIVALENT: EXIT_OK, NOT_EQUIVALENT: EXIT_FAILED, NOT_SHOWN: EXIT_BAD_INPUT}


@dataclass
class ComparedRun:
    """One run (one seed) of either side: its judged number, curves, breach and throughput."""

    name: str
    path: str
    side: str
    facts: dict[str, Any]
    judged: str  # "best" or "final"
    value: float | None
    epoch: int | None
    top1: dict[int, float]
    train_loss: dict[int, float]
    throughput: Throughput | None = None
    breach: Breach | None = None
    status: str = ""  # the check-accuracy verdict against the target, for the record
    compliance: dict[str, Any] | None = None  # the recipe's rules against the run's config echo (judge.compliance)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "side": self.side, "run_id": self.facts.get("run_id"),
                "seed": self.facts.get("seed"), "platform": self.facts.get("platform"), "judged": self.judged,
                "value": self.value, "epoch": self.epoch, "status": self.status, "compliance": self.compliance,
                "top1": self.top1, "train_loss": self.train_loss,
                "throughput": asdict(self.throughput) if self.throughput else None,
                "breach": self.breach.to_dict() if self.breach else None}


def from_verdict(run: RunLogs, verdict: Verdict, side: str) -> ComparedRun:
    """A run as compared: the number is the verdict's (best or final, as the target says)."""
    if verdict.value is None:
        raise ReproError(f"{verdict.path}: no judged {verdict.metric} ({verdict.status}: {verdict.reason}); pass completed "
                         "runs, or add --allow-incomplete to compare what is there", EXIT_BAD_INPUT)
    return ComparedRun(run.name, verdict.path, side, run_facts(run), verdict.judged, verdict.value, verdict.epoch,
                       run_series(run, "top1"), run_series(run, "train_loss"), run_throughput(run), status=verdict.status,
                       compliance=verdict.compliance)


def from_band(band: Band, judged: str) -> list[ComparedRun]:
    """The runs a band file records (per-epoch top-1 and loss), judged best or final like a verdict."""
    runs = []
    for index, record in enumerate(band.runs, 1):
        top1 = {int(e): float(v) for e, v in (record.get("top1") or {}).items() if math.isfinite(float(v))}
        if not top1:
            continue
        # the best epoch's ties go to the later one (repro.logs.parse.best_epoch's rule)
        epoch = max(top1) if judged == "final" else max(top1, key=lambda e: (top1[e], e))
        runs.append(ComparedRun(str(record.get("run_id") or f"band run {index}"), str(record.get("path") or band.source),
                                REFERENCE, dict(record), judged, top1[epoch], epoch, top1,
                                {int(e): float(v) for e, v in (record.get("train_loss") or {}).items()}))
    return runs


def reference_band(recipe: Recipe, smoke: bool, epochs: int, class_num: int | None,
                   references: list[ComparedRun]) -> Band:
    """The band of the reference runs by ``repro.judge.band``'s rule (any number of runs >= 1)."""
    settings = health_settings(recipe.data, smoke).band
    band = build_band(recipe, smoke, epochs, class_num, settings, [r.top1 for r in references],
                      [r.train_loss for r in references], [r.facts for r in references], min_runs=1)
    band.source = f"built from the {len(references)} reference run(s)"
    return band


@dataclass
class Comparison:
    """Everything ``repro compare`` reports; ``lines`` is the table, ``to_dict`` the --json object."""

    candidates: list[ComparedRun]
    references: list[ComparedRun]
    band: Band
    equivalence: Equivalence
    settings: CompareSettings
    candidate_speed: SideThroughput
    reference_speed: SideThroughput
    notes: list[str] = field(default_factory=list)

    @property
    def breaches(self) -> list[ComparedRun]:
        return [run for run in self.candidates if run.breach is not None]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.breaches else EXIT_CODES[self.equivalence.outcome]

    @property
    def speed_ratio(self) -> float | None:
        c, r = self.candidate_speed.per_device, self.reference_speed.per_device
        return c / r if c is not None and r else None

    def curves_line(self) -> str:
        if not self.breaches:
            checked = len(set(self.band.top1) | set(self.band.train_loss))
            return f"curves: every candidate inside the reference band ({checked} epochs checked)"
        first = min(self.breaches, key=lambda run: run.breach.epoch)
        return (f"curves: {len(self.breaches)} of {len(self.candidates)} candidate(s) leave the band; first "
                f"{first.name} at {first.breach.describe(self.band.settings.k)}")

    def headline(self) -> str:
        curves = "curves inside the band" if not self.breaches else (
            f"a curve leaves the band (first at epoch {min(r.breach.epoch for r in self.breaches)})")
        speed = f"; throughput {self.speed_ratio:.2f} x reference" if self.speed_ratio is not None else ""
        return f"{self.equivalence.headline()}; {curves}{speed}"

    def lines(self, verbose: bool = False) -> list[str]:
        out = [self.headline(), ""] + self.table_lines() + [""]
        out += self.equivalence_lines() + [self.curves_line(), f"band: {self.band.describe()}"]
        out += self.throughput_lines() + self.compliance_lines(verbose)
        out += [f"note: {note}" for note in self.notes]
        if verbose:
            out += ["", "per epoch (band limits: top-1 >= mean - k x std, train loss <= mean + k x std):"]
            out += self.epoch_lines()
        return out

    def table_lines(self) -> list[str]:
        header = ("run", "side", "seed", "platform", "judged top-1", "first epoch outside band", "img/s/device", "data wait")
        rows = [header]
        for run in self.candidates + self.references:
            speed = run.throughput
            rows.append((
                run.name, run.side, str(run.facts.get("seed") if run.facts.get("seed") is not None else "-"),
                str(run.facts.get("platform") or "-"),
                f"{run.value:.5f} ({run.judged} @ {run.epoch})" if run.value is not None else "-",
                ("-" if run.side == REFERENCE else "none") if run.breach is None else f"{run.breach.epoch} ({run.breach.what})",
                f"{speed.per_device:.2f}" if speed and speed.per_device is not None else "-",
                f"{speed.data_wait_share:.1%}" if speed and speed.data_wait_share is not None else "-",
            ))
        return aligned_columns(rows)

    def equivalence_lines(self) -> list[str]:
        e = self.equivalence
        lines = [f"equivalence: {e.headline()}",
                 f"  judged top-1 ({self.candidates[0].judged} epoch): candidate mean {e.mean_candidate:.5f} over "
                 f"{e.n_candidate} run(s), reference mean {e.mean_reference:.5f} over {e.n_reference}; difference "
                 f"{e.difference * 100:+.2f} pt; margin +-{e.margin * 100:g} pt ({self.settings.margin_source})"]
        if e.interval is not None:
            lines.append(f"  TOST, {e.method}: standard error {e.standard_error * 100:.3f} pt, df {e.df:.1f}, "
                         f"p = {e.p_value:.4f} (alpha {e.alpha:g} per side)")
        lines += [f"  {note}" for note in e.notes]
        return lines

    def throughput_lines(self) -> list[str]:
        c, r = self.candidate_speed, self.reference_speed
        share = self.settings.data_bound_share

        def side(name: str, speed: SideThroughput) -> str:
            if speed.per_device is None:
                why = next((run.reason for run in speed.runs if run.reason), "no iteration lines")
                return f"{name} throughput unknown ({why})"
            bound = f" -- data-bound (> {share:.0%} of each step waits for data)" if speed.data_wait_share > share else ""
            return (f"{name} {speed.per_device:.2f} img/s per device (steady state, {len(speed.runs)} run(s)), "
                    f"data wait {speed.data_wait_share:.1%}{bound}")

        lines = ["throughput: " + side("candidate", c), "throughput: " + side("reference", r)]
        if self.speed_ratio is not None:
            lines.append(f"throughput: candidate / reference = {self.speed_ratio:.2f}")
        for baseline in self.settings.baselines:
            ratio = (f": candidate / baseline = {c.per_device / baseline.per_device:.3f}"
                     if baseline.per_device and c.per_device is not None else "")
            lines.append(f"published baseline: {baseline.describe()}{ratio}")
        if not self.settings.baselines:
            lines.append(f"published baseline: {self.settings.baseline_status}")
        return lines

    def compliance_lines(self, verbose: bool = False) -> list[str]:
        """Each run's compliance with the recipe's rules (check-accuracy's block), reported, not judged
        here: one line when every run is COMPLIANT, else the others' blocks (every block with -v)."""
        runs = [run for run in self.candidates + self.references if (run.compliance or {}).get("lines")]
        compliant = [run for run in runs if run.compliance.get("status") == "COMPLIANT"]
        out = []
        if compliant and not verbose:
            out.append(f"compliance: {len(compliant)} of {len(runs)} run(s) {compliant[0].compliance['lines'][0]}")
        for run in runs if verbose else [run for run in runs if run not in compliant]:
            lines = run.compliance["lines"]
            if verbose:
                out += [f"compliance {run.name}: {lines[0]}"] + [f"  {line.strip()}" for line in lines[1:]]
                continue
            broken = [check["rule"] for check in run.compliance.get("checks") or [] if check.get("ok") is False]
            out.append(f"compliance {run.name}: {lines[0]}" + (f" ({', '.join(broken)}; -v lists them)" if broken else ""))
        return out

    def epoch_lines(self) -> list[str]:
        out = []
        for run in self.candidates:
            out.append(f"  {run.name}:")
            for epoch in sorted(set(run.top1) | set(run.train_loss)):
                parts = [f"    epoch {epoch:>3}:"]
                limit = self.band.limit("top1", epoch)
                if epoch in run.top1:
                    parts.append(f"top1 {run.top1[epoch]:.4f}" + (f" (>= {limit[0]:.4f})" if limit else " (no band)"))
                upper = self.band.limit("train_loss", epoch)
                if epoch in run.train_loss:
                    parts.append(f"train loss {run.train_loss[epoch]:.4f}" + (f" (<= {upper[0]:.4f})" if upper else ""))
                out.append(" ".join(parts))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.equivalence.outcome,
            "exit_code": self.exit_code,
            "message": self.headline(),
            "equivalence": self.equivalence.to_dict(),
            "margin_source": self.settings.margin_source,
            "curves": {"within": not self.breaches, "k": self.band.settings.k, "band_source": self.band.source,
                       "first_breach": {run.name: run.breach.to_dict() for run in self.breaches}},
            "band": self.band.to_dict(),
            "throughput": {"candidate": asdict(self.candidate_speed), "reference": asdict(self.reference_speed),
                           "ratio": self.speed_ratio, "data_bound_share": self.settings.data_bound_share,
                           "baselines": [vars(b) for b in self.settings.baselines],
                           "baseline_status": self.settings.baseline_status},
            "candidates": [run.to_dict() for run in self.candidates],
            "references": [run.to_dict() for run in self.references],
            "notes": self.notes,
        }


def compare(candidates: list[ComparedRun], references: list[ComparedRun], band: Band,
            settings: CompareSettings, margin: float | None = None) -> Comparison:
    if margin is not None:
        settings = dataclasses.replace(settings, margin=margin, margin_source=f"--margin {margin:g}")
    for run in candidates:
        run.breach = band.first_breach(run.top1, run.train_loss)
    equivalence = tost([r.value for r in candidates], [r.value for r in references], settings.margin, settings.alpha)
    notes = []
    runs = len(band.runs) or band.top1_n()
    if runs < 3:
        notes.append(f"the band rests on {runs} reference run(s): its width is mostly the recipe's std floors "
                     "(train 3 or more reference seeds for a band of their own spread)")
    judged = {run.judged for run in candidates + references}
    if len(judged) > 1:
        notes.append(f"the sides were judged differently ({', '.join(sorted(judged))}); pass --final to judge both "
                     "by the last epoch")
    return Comparison(candidates, references, band, equivalence, settings,
                      SideThroughput.of([r.throughput for r in candidates if r.throughput]),
                      SideThroughput.of([r.throughput for r in references if r.throughput]), notes)
