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
from repro.core.errors import EXIT_BAD_INPUT, EXIT_OK, one_line

# Bump when a key of to_dict() changes meaning, so manifests stay comparable.
SCHEMA_VERSION = 1


@dataclass
class DatasetReport:
    """What ``check_dataset`` found; ``exit_code`` is the CLI's (0 clean, warnings allowed; 1 problems
    found; 2 not a dataset at all). ``counts`` has stable keys for pre-flight and the run manifest."""

    root: Path
    class_num: int
    expect: str
    exit_code: int = EXIT_OK
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    @property
    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.severity != ERROR]

    def first_error(self) -> str | None:
        """One line for callers that can show only one (pre-flight's error message)."""
        return next((problem.examples[0] if problem.examples else problem.title for problem in self.errors), None)

    def summary_lines(self) -> list[str]:
        """The human-readable report, one string per line."""
        if self.exit_code == EXIT_BAD_INPUT:
            return [f"error: {one_line(problem.examples[0])}" for problem in self.problems]
        verdict = "OK" if self.ok else f"{len(self.errors)} kind(s) of problem"
        lines = [f"dataset {self.root}: {verdict} (class_num {self.class_num}, expect {self.expect})"]
        lines += ["  " + line for line in _table(self.counts)]
        for problem in self.problems:
            lines.append(f"{problem.severity}: {problem.title} [{problem.kind}] x{problem.count:,}")
            lines += [f"    {example}" for example in problem.examples]
            hidden = problem.count - len(problem.examples)
            if hidden > 0 and len(problem.examples) > 1:
                lines.append(f"    ... and {hidden:,} more")
        return lines

    def to_dict(self) -> dict[str, object]:
        return {"schema": SCHEMA_VERSION, "root": str(self.root), "ok": self.ok, "exit_code": self.exit_code,
                "class_num": self.class_num, "expect": self.expect, "counts": dict(self.counts),
                "problems": [problem.to_dict() for problem in self.problems]}


def _table(counts: dict[str, int]) -> list[str]:
    lines = [f"{'':<22}{'train':>12}{'val':>12}"]
    for title, key in (("list lines", "lines"), ("entries", "files"), ("flat (no class dir)", "flat_files")):
        lines.append(f"{title:<22}{counts.get(f'train_{key}', 0):>12,}{counts.get(f'val_{key}', 0):>12,}")
    for title, key in (("classes (train labels)", "classes"), ("files on disk", "files_on_disk"),
                       ("unlisted files", "unlisted_files"), ("images decoded", "decoded")):
        if key != "decoded" or counts.get(key):
            lines.append(f"{title:<22}{counts.get(key, 0):>12,}")
    return lines


def render_text(report: DatasetReport) -> str:
    return "\n".join(report.summary_lines())


def render_json(report: DatasetReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True)
