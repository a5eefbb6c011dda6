"""What ``repro train`` shows on the terminal: a progress line by default, every upstream line with -v.

The unit tests feed :class:`LauncherOutput` lines in upstream's format (``tests/logfakes.py``); the
last two run ``repro train`` on the test double under the real paddle launcher.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from repro.launch import runner
from repro.launch.runner import LauncherOutput, say
from tests.doubles import make_fake_checkout
from tests.launch.test_train_launcher import finish, harness_env
from tests.logfakes import FakeUpstreamLog


def upstream_lines(epochs: int = 3) -> list[str]:
    """Upstream's output of a short run: banner, config echo, iterations, evals, saves."""
    log = FakeUpstreamLog(epochs=epochs, iters=4)
    top1 = {epoch: 0.25 * epoch for epoch in range(1, epochs + 1)}
    return [line + "\n" for line in log.launch(range(1, epochs + 1), top1)]


class Terminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_not_a_terminal_gets_one_line_per_epoch_with_its_eval() -> None:
    stream = Terminal(tty=False)
    with LauncherOutput(stream=stream) as output:
        for line in upstream_lines():
            output(line)
    lines = stream.getvalue().splitlines()
    assert [line.split(" iter ")[0] for line in lines] == [
        "training: epoch 1/3", "training: epoch 2/3", "training: epoch 3/3"]
    assert "top1 0.2500@1" in lines[0] and "top1 0.7500@3" in lines[2]
    assert all(" loss " in line and " ips " in line and " eta " in line for line in lines)
    assert "\r" not in stream.getvalue()


def test_a_terminal_gets_the_line_redrawn_in_place_and_notes_on_their_own_lines() -> None:
    stream = Terminal(tty=True)
    lines = upstream_lines()
    middle = next(i for i, line in enumerate(lines) if "[Train][Epoch 2/3]" in line)
    with LauncherOutput(stream=stream) as output:
        for line in lines[:middle]:
            output(line)
        say("ALARM loss at epoch 2")
        for line in lines[middle:]:
            output(line)
    text = stream.getvalue()
    assert text.count("\n") == 2  # the note and the final progress line; the rest was drawn in place
    note_at = text.index("repro: ALARM loss at epoch 2\n")
    assert text[note_at - 4: note_at] == "\r\x1b[K"  # the progress line was cleared first
    assert text.rstrip("\n").rsplit("\r\x1b[K", 1)[1].startswith("training: epoch 3/3")
    assert runner.LauncherOutput.live is None  # closed: say() writes plainly again


def test_verbose_streams_every_line_to_stdout(capsys) -> None:
    lines = upstream_lines(1)
    stream = Terminal(tty=True)
    with LauncherOutput(verbose=True, stream=stream) as output:
        for line in lines:
            output(line)
    assert capsys.readouterr().out == "".join(lines) and stream.getvalue() == ""


def run_train(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    upstream = make_fake_checkout(tmp_path / "upstream")
    argv = [sys.executable, "-m", "repro", "train", "--upstream", str(upstream), "--platform", "cpu",
            "--skip-preflight", "--run-dir", str(tmp_path / "run"), *args]
    return finish(subprocess.Popen(argv, env=harness_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True))


def test_repro_train_is_quiet_and_upstream_output_is_in_console_log(tmp_path: Path) -> None:
    code, out, err = run_train(tmp_path)
    assert code == 0, err
    shown = (out + err).splitlines()
    assert len(shown) <= 10, shown
    assert [line for line in shown if line.startswith("training: epoch")][-1].startswith("training: epoch 3/3")
    assert "Global : " not in out + err and "[Train]" not in out + err
    console = (tmp_path / "run" / "console.log").read_text()
    assert "[Train][Epoch 3/3]" in console and "[Eval][Epoch 3][Avg]" in console


def test_repro_train_verbose_streams_upstream(tmp_path: Path) -> None:
    code, out, err = run_train(tmp_path, "-v")
    assert code == 0, err
    assert "[Train][Epoch 3/3]" in out and "Global : " in out
    assert "training: epoch" not in err
