"""Render a ``DatasetReport``: a short table and each problem kind with its first examples, or JSON.

The text is for a person deciding whether to launch; the JSON (sorted keys, schema number) is for
scripts and the run manifest, so its keys never depend on what was found.
"""

from __future__ import annotations

import json

from repro.dataset.report import DatasetReport

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
        return [f"error: {problem.examples[0]}" for problem in report.problems]
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
