"""Issue 20 §3: every numeric option of every command is a finite value within stated bounds
(``band check --k nan`` exited 0, ``watch --poll nan`` exited 70, ``prepare --jobs 100000`` forked a
pool of 100000, ``make-tiny --classes 100000`` ran for minutes)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.core.errors import EXIT_BAD_INPUT
from repro.core.numeric_options import BoundedFloat, BoundedInt, process_limit
from repro.dataset.dataset_cli import DecodeCount
from tests.test_cli import every_command


def numeric_options() -> list[tuple[tuple[str, ...], click.Option]]:
    found = []
    for path, command in every_command():
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(
                    param.type, (click.types.IntParamType, click.types.FloatParamType, DecodeCount)):
                found.append((path, param))
    return found


def test_every_numeric_option_is_bounded_at_both_ends() -> None:
    found = numeric_options()
    names = {(path, param.opts[0]) for path, param in found}
    assert {(("band", "check"), "--k"), (("watch",), "--poll"), (("train",), "--stall-timeout"),
            (("dataset", "prepare"), "--jobs"), (("train",), "--cpu-ranks"), (("dataset", "make-tiny"), "--classes"),
            (("check-accuracy",), "--target"), (("eval",), "--cpu-ranks")} <= names
    loose = [f"{' '.join(path)} {param.opts[0]}: {param.type!r}" for path, param in found
             if not isinstance(param.type, (BoundedInt, BoundedFloat, DecodeCount))
             or (not isinstance(param.type, DecodeCount) and (param.type.min is None or param.type.max is None))]
    assert not loose, "numeric options without both bounds (use repro.core.numeric_options): " + "; ".join(loose)


def out_of_bounds(param: click.Option) -> list[str]:
    kind = param.type
    if isinstance(kind, DecodeCount):
        return ["-1", "1" + "0" * 12, "nan"]
    values = [str(kind.min - 1), str(kind.max + 1), "1" + "0" * 40]
    if isinstance(kind, BoundedFloat):
        values += ["nan", "inf", "-inf", "1e309", "NaN"]
    return values


# A harmless base per command, so an accepted value would start nothing (and is seen as accepted).
BASE = {("train",): ["--dry-run", "--upstream", "missing-upstream"], ("dataset", "make-tiny"): ["out"],
        ("dataset", "prepare"): ["out"], ("dataset", "check"): ["missing-root"], ("band", "check"): ["missing-run"],
        ("watch",): ["missing-run"], ("check-accuracy",): ["missing-run"], ("report",): ["missing-run"],
        ("eval",): ["missing-run"]}


def test_non_finite_and_out_of_range_values_are_one_usage_line(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(mix_stderr=False)
    tried = 0
    for path, param in numeric_options():
        for value in out_of_bounds(param):
            result = runner.invoke(cli, [*path, *BASE.get(path, []), param.opts[0], value])
            assert result.exit_code == EXIT_BAD_INPUT, (path, param.opts[0], value, result.output, result.stderr)
            assert result.stderr.startswith(f"error: invalid value for '{param.opts[0]}'"), result.stderr
            assert result.stderr.count("\n") == 1, result.stderr
            tried += 1
    assert tried > 80
    assert not list(tmp_path.iterdir())  # nothing was started or written


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_nan_names_itself(value: str) -> None:
    result = CliRunner(mix_stderr=False).invoke(cli, ["band", "check", "run", "--k", value])
    assert f"{value!r} is not a finite number (allowed: 0<x<=20.0)" in result.stderr


def test_process_counts_are_capped_by_the_cores() -> None:
    assert 4 <= process_limit() <= 4 * 4096
    result = CliRunner(mix_stderr=False).invoke(cli, ["train", "--cpu-ranks", str(process_limit() + 1)])
    assert result.exit_code == EXIT_BAD_INPUT and f"1<=x<={process_limit()}" in result.stderr


def test_make_tiny_bounds_its_total_before_writing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for args in (["--classes", "1000", "--train-per-class", "1000"], ["--classes", "1000", "--val-per-class", "100"]):
        result = CliRunner(mix_stderr=False).invoke(cli, ["dataset", "make-tiny", str(tmp_path / "out"), *args])
        assert result.exit_code == EXIT_BAD_INPUT and "more than make-tiny writes (50,000)" in result.stderr
        assert result.stderr.count("\n") == 1 and not (tmp_path / "out").exists()
