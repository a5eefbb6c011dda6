"""The result of a dataset check, for people (summary lines) and machines (``to_dict``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from repro.dataset.problems import ERROR, Problem

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
        from repro.dataset.report_format import summary_lines

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
