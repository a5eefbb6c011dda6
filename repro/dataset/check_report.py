"""The result of a dataset check, for people (summary lines) and machines (``to_dict``, JSON).

The text is for a person deciding whether to launch: a short table and each problem kind with its
first examples. The JSON (sorted keys, schema number) is for scripts and the run manifest, so its
keys never depend on what was found.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from repro.dataset.problems import ERROR, Problem
from repro.core.errors import one_line

EXIT_CLEAN = 0
EXIT_PROBLEMS = 1
EXIT_NOT_A_DATASET = 2

# Bump when a key of to_dict() changes meaning, so manifests stay comparable.
SCHEMA_VERSION = 1


@dataclass
class DatasetReport:
    """What ``check_dataset`` found.

    ``exit_code`` is the CLI's: 0 clean (warnings allowed), 1 problems found, 2 not a dataset at all.
    ``counts`` has stable keys (see ``COUNT_KEYS``) so pre-flight and the run manifest can read them.
    """

    root: Path
    class_num: int
    expect: str
    exit_code: int = EXIT_CLEAN
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_CLEAN

    @property
    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.severity != ERROR]

    def first_error(self) -> str | None:
        """One line for callers that can show only one (pre-flight's error message)."""
        for problem in self.errors:
            return problem.examples[0] if problem.examples else problem.title
        return None

    def summary_lines(self) -> list[str]:
        return summary_lines(self)

    def to_dict(self) -> dict[str, object]:
        return {
            "schema": SCHEMA_VERSION,
            "root": str(self.root),
            "ok": self.ok,
            "exit_code": self.exit_code,
            "class_num": self.class_num,
            "expect": self.expect,
            "counts": dict(self.counts),
            "problems": [problem.to_dict() for problem in self.problems],
        }


_ROWS = (
    ("list lines", "lines"),
    ("entries", "files"),
    ("flat (no class dir)", "flat_files"),
)


def _table(report: DatasetReport) -> list[str]:
    counts = report.counts
    width = 22
    lines = [f"{'':<{width}}{'train':>12}{'val':>12}"]
    for title, key in _ROWS:
        train = counts.get(f"train_{key}", 0)
        val = counts.get(f"val_{key}", 0)
        lines.append(f"{title:<{width}}{train:>12,}{val:>12,}")
    lines.append(f"{'classes (train labels)':<{width}}{counts.get('classes', 0):>12,}")
    lines.append(f"{'files on disk':<{width}}{counts.get('files_on_disk', 0):>12,}")
    lines.append(f"{'unlisted files':<{width}}{counts.get('unlisted_files', 0):>12,}")
    if counts.get("decoded"):
        lines.append(f"{'images decoded':<{width}}{counts['decoded']:>12,}")
    return lines


def summary_lines(report: DatasetReport) -> list[str]:
    """The human-readable report, one string per line."""
    if report.exit_code == 2:
        return [f"error: {one_line(problem.examples[0])}" for problem in report.problems]
    verdict = "OK" if report.ok else f"{len(report.errors)} kind(s) of problem"
    lines = [f"dataset {report.root}: {verdict} (class_num {report.class_num}, expect {report.expect})"]
    lines += ["  " + line for line in _table(report)]
    for problem in report.problems:
        lines.append(f"{problem.severity}: {problem.title} [{problem.kind}] x{problem.count:,}")
        lines += [f"    {example}" for example in problem.examples]
        hidden = problem.count - len(problem.examples)
        if hidden > 0 and len(problem.examples) > 1:
            lines.append(f"    ... and {hidden:,} more")
    return lines


def render_text(report: DatasetReport) -> str:
    return "\n".join(summary_lines(report))


def render_json(report: DatasetReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True)
