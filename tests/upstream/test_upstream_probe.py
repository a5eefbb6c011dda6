"""The Paddle probe reads only its own marked answer, and says so in one line when there is none."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from repro.core.deadline import run_bounded
from repro.platform.devices import probe_paddle


def fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_a_stray_line_starting_with_a_brace_is_ignored(tmp_path):
    python = fake_python(tmp_path, f"echo '{{stray, not json'\nexec {sys.executable} \"$@\"")
    info = probe_paddle(python=python, with_sklearn=False)
    assert info.importable and info.version, info.error


def test_no_marked_answer_is_a_clear_finding_not_a_crash(tmp_path):
    python = fake_python(tmp_path, "echo '{\"importable\": true}'\necho 'boom' >&2\nexit 3")
    info = probe_paddle(python=python, with_sklearn=False)
    assert not info.importable
    assert "gave no answer" in info.error and "exited 3" in info.error and "boom" in info.error
    assert f"{python} -c" in info.error and "\n" not in info.error


def test_a_hung_child_and_its_children_are_stopped(tmp_path):
    python = fake_python(tmp_path, "sleep 30 &\nsleep 30")
    started = time.monotonic()
    info = probe_paddle(python=python, with_sklearn=False, timeout=1)
    assert time.monotonic() - started < 10, "a grandchild holding the pipe must not keep the probe waiting"
    assert not info.importable and "did not finish in 1 s" in info.error


def test_run_bounded_returns_output():
    done = run_bounded(["echo", "hi"], 10)
    assert done.returncode == 0 and done.stdout == "hi\n"
