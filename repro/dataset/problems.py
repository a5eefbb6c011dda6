"""Problems found in a dataset, counted per kind with the first few examples.

A 1.3-million-line list with one systematic mistake would otherwise print 1.3 million lines; keeping
a count and the first examples (each ``file:line: what``) shows the pattern and where to look.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# How many example lines each problem kind keeps: enough to find the pattern, short enough to read.
MAX_EXAMPLES = 5
ERROR = "error"
WARNING = "warning"

# kind -> (severity, one-line title). The kinds are stable keys of the --json output.
KINDS: dict[str, tuple[str, str]] = {
    "not_a_dataset": (ERROR, "not a dataset"),
    "missing_part": (ERROR, "missing part of the layout"),
    "empty_list": (ERROR, "list file has no entries"),
    "non_utf8": (ERROR, "line is not UTF-8"),
    "byte_order_mark": (ERROR, "list starts with a byte-order mark"),
    "crlf": (ERROR, "CRLF line ending"),
    "blank_line": (ERROR, "blank line"),
    "surrounding_space": (ERROR, "leading or trailing whitespace"),
    "bad_syntax": (ERROR, "line is not '<relative/path> <label>'"),
    "bad_label": (ERROR, "label is not an integer"),
    "label_out_of_range": (ERROR, "label out of range"),
    "path_escapes_root": (ERROR, "path escapes the dataset root"),
    "duplicate_entry": (ERROR, "path listed more than once"),
    "missing_file": (ERROR, "listed file does not exist"),
    "class_dir_multiple_labels": (ERROR, "one class directory carries several labels"),
    "label_multiple_dirs": (ERROR, "one label spans several class directories"),
    "label_differs_between_splits": (ERROR, "class directory has another label in the other split"),
    "symlink_loop": (ERROR, "symlink loop"),
    "broken_symlink": (ERROR, "broken symlink"),
    "not_a_file": (ERROR, "not a regular file (a FIFO, device or socket would block or never end)"),
    "unreadable_dir": (ERROR, "directory cannot be listed"),
    "canonical_counts": (ERROR, "counts differ from ILSVRC2012"),
    "unreadable_image": (ERROR, "image cannot be decoded"),
    "outside_split_dir": (WARNING, "listed files outside the split's own directory"),
    "flat_layout": (WARNING, "listed files without a class directory (flat layout)"),
    "labels_unused": (WARNING, "labels in range that no train line uses"),
    "val_label_not_in_train": (WARNING, "val labels that no train line uses"),
}


@dataclass
class Problem:
    """One kind of problem: how often it occurred and the first examples."""

    kind: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def severity(self) -> str:
        return KINDS[self.kind][0]

    @property
    def title(self) -> str:
        return KINDS[self.kind][1]

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "severity": self.severity, "title": self.title, "count": self.count,
                "examples": list(self.examples)}


class Problems:
    """Collects problems by kind, in the order they were first seen."""

    def __init__(self) -> None:
        self._by_kind: dict[str, Problem] = {}

    def add(self, kind: str, example: str, count: int = 1) -> None:
        if kind not in KINDS:
            raise KeyError(f"unknown problem kind {kind!r}")
        problem = self._by_kind.setdefault(kind, Problem(kind))
        problem.count += count
        if len(problem.examples) < MAX_EXAMPLES:
            problem.examples.append(example)

    def count(self, kind: str) -> int:
        return self._by_kind[kind].count if kind in self._by_kind else 0

    def as_list(self) -> list[Problem]:
        return list(self._by_kind.values())

    def has_errors(self) -> bool:
        return any(problem.severity == ERROR for problem in self._by_kind.values())
