"""Every shell command in README.md and docs/*.md is run here, so no documented command goes stale.

Commands come from fenced ``sh``/``bash``/``console`` blocks (``console``: the lines after ``$ ``)
and from inline code marked ``$ `` (`` `$ repro runs` ``). Each must match a rule below, which says
how it runs here: as written, as a dry run (GPU commands: ``--dry-run`` on a GPU platform), or not
at all with the reason (long, needs hardware or data this machine lacks; a test elsewhere covers
it). A new documented command without a rule fails the test, so it is never silently unchecked.

They run in order, in one sandbox directory: ``.venv`` links to this checkout's, ``logs/<run-id>``
is a finished run of the upstream test double (``tests/doubles``; three seeds' in all), ``/data/ILSVRC2012`` a tiny
dataset, and ``.upstream/PaddleClas`` a copy of the real checkout the tests use (``REPRO_TEST_UPSTREAM``, else
the one ``make smoke`` fetched; the double without one, and the commands that need it skip, saying so). ``make`` runs in this checkout with the
sandbox's paths, never rebuilding the venv.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from repro.cli import cli
from tests.conftest import copy_checkout, real_upstream_choice
from tests.doubles import make_fake_checkout
from tests.launch.test_train_launcher import finish, harness_env, repro_train

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*```(\w*)\s*$")
INLINE = re.compile(r"`\$ ([^`]+)`")
GPU_PLATFORM = "nvidia-cuda"
SMOKE_TEST = "tests/commands/test_smoke_real_upstream.py runs the real smoke"


@dataclass
class Documented:
    where: str  # file:line, of each place it is documented
    text: str


def commands_in(name: str, text: str) -> list[Documented]:
    """The shell commands of one Markdown text, each with its ``name:line``."""
    found: list[Documented] = []
    language: str | None = None
    pending = ""
    for number, line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(line)
        if fence:
            language = None if language is not None else fence.group(1)
            continue
        if language is None:
            found += [Documented(f"{name}:{number}", match.strip()) for match in INLINE.findall(line)]
            continue
        if language not in ("sh", "bash", "console"):
            continue
        command = line.strip()
        if language == "console":
            if not command.startswith("$ "):
                continue
            command = command[2:]
        command = re.sub(r"\s+#\s.*$", "", command) if not command.startswith("#") else ""
        if command.endswith("\\"):
            pending += command[:-1].rstrip() + " "
            continue
        command, pending = (pending + command).strip(), ""
        if command:
            found.append(Documented(f"{name}:{number}", command))
    return found


def documented_commands() -> list[Documented]:
    once: dict[str, Documented] = {}  # a command documented twice runs once
    for path in DOCS:
        for item in commands_in(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")):
            if item.text in once:
                once[item.text].where += f", {item.where}"
            else:
                once[item.text] = item
    return list(once.values())


def test_commands_are_read_from_fences_prompts_continuations_and_marked_inline_code() -> None:
    text = """Run `$ repro runs --json` first; `repro runs` alone is prose.

```sh
# a comment
make train GPUS=0,1 \\
    DRY_RUN=1   # dry
```

```console
$ repro doctor
ok python 3.11
```

```
repro report RUN
```
"""
    assert [(c.where, c.text) for c in commands_in("x.md", text)] == [
        ("x.md:1", "repro runs --json"), ("x.md:6", "make train GPUS=0,1 DRY_RUN=1"), ("x.md:10", "repro doctor")]


@dataclass(frozen=True)
class Rule:
    pattern: str  # re.search against the command
    codes: frozenset[int] = frozenset({0})  # exit codes that mean "works as documented" here
    skip: str = ""  # not run here, and why
    real_upstream: bool = False  # needs a real checkout: skipped without REPRO_TEST_UPSTREAM
    dry_run: bool = False  # a GPU or training command: run as a dry run on a GPU platform
    prints: str = ""  # a regex its output must match (where the exit code alone says little)


RULES = [
    Rule(r"^make test\b", skip="it is this test suite"),
    Rule(r"^make setup\b", skip="installs a Paddle build for a GPU platform; tests/test_makefile.py checks that setup "
                                "refuses to switch an existing venv"),
    Rule(r"\bmake smoke(-all)?\b", skip=f"a real training of minutes; {SMOKE_TEST}"),
    Rule(r"^make soak\b", skip="a soak of several minutes; tests/test_soak.py runs a short one"),
    Rule(r"^rsync ", skip="needs a second node"),
    Rule(r"bin/visualdl ", skip="serves the curves until stopped; tests/launch/test_train_visualdl.py tests --visualdl"),
    Rule(r"--nnodes 2", skip="needs two nodes; tests/launch/test_train_nodes.py runs two on this machine"),
    Rule(r"logs/r50-2x4", skip="needs a two-node run; tests/launch/test_train_nodes.py judges one"),
    Rule(r"dataset prepare .*(--train-tar|--from)", skip="needs the ImageNet downloads (about 150 GB)"),
    Rule(r"repro compare\b", skip="needs seeds trained on two platforms; tests/judge/test_compare_runs.py runs compare "
                                 "on log fixtures and tests/judge/test_compare_real_upstream.py on the real smoke"),
    Rule(r"upstream fetch --(archive|upstream) /path/to/", skip="names your archive or checkout; tests/upstream "
                                                              "fetch from an archive and use a checkout in place"),
    Rule(r"upstream fetch --url https://", skip="needs the network; tests/upstream fetch from a local mirror"),
    Rule(r"repro upstream status\b.*--json", real_upstream=True, prints=r'"matches_pin": true'),
    Rule(r"repro upstream (fetch|status)\b", real_upstream=True),
    Rule(r"repro dataset check \S+ --expect imagenet-1k", codes=frozenset({1})),  # the tiny stand-in is not 1k
    Rule(r"repro doctor\b", codes=frozenset({0, 1})),  # 1 here: no GPU, or the stand-in dataset
    # Another recipe's config is only in a real checkout (the test double ships ResNeSt50's alone).
    Rule(r"(RECIPE=|--recipe )(?!resnest50\b)\w", dry_run=True, real_upstream=True),
    Rule(r"^make train\b|repro train\b", dry_run=True),
    Rule(r"check-accuracy .*--require-eval", codes=frozenset({0, 1, 2})),
    Rule(r"check-accuracy|^make check\b", codes=frozenset({0, 1}), prints=r"\b(PASS|FAIL)\b"),  # a verdict (the double's run: FAIL at 0.7677)
    Rule(r"repro watch\b", codes=frozenset({0, 1})),  # the verdict's code, or alarms with --once
    Rule(r"repro (eval|report|runs|recipes|dataset link|--help)\b"),
]


def rule_for(command: str) -> Rule | None:
    return next((rule for rule in RULES if re.search(rule.pattern, command)), None)


COMMANDS = documented_commands()


def test_docs_document_commands_and_each_has_a_rule() -> None:
    assert len(COMMANDS) >= 30, len(COMMANDS)
    unruled = [f"{c.where}: {c.text}" for c in COMMANDS if rule_for(c.text) is None]
    assert not unruled, "documented commands no rule in tests/test_docs_commands.py covers:\n" + "\n".join(unruled)
    assert all(rule.skip or any(rule_for(c.text) is rule for c in COMMANDS) for rule in RULES), \
        [rule.pattern for rule in RULES if not any(rule_for(c.text) is rule for c in COMMANDS)]


def test_readme_is_short_and_links_only_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    for page in (ROOT / "docs").glob("*.md"):
        assert f"](docs/{page.name})" in readme, f"README does not link docs/{page.name}"
    for document in DOCS:
        for target in re.findall(r"\]\(([^)#:]+)\)", document.read_text(encoding="utf-8")):
            assert (document.parent / target).exists(), f"{document.name} links {target}, which does not exist"


def test_readme_says_about_how_many_tests_the_suite_has(request: pytest.FixtureRequest) -> None:
    """README's "about N tests" is within 2 % of what a whole `make test` collects (it went stale before)."""
    config = request.config
    if config.args_source is not pytest.Config.ArgsSource.TESTPATHS or config.option.keyword or config.option.markexpr:
        pytest.skip("counted only when the whole suite is collected, as `make test` does")
    stated = re.search(r"about ([\d,]+) tests", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert stated, "README.md does not say `about N tests`"
    count = int(stated.group(1).replace(",", ""))
    assert abs(request.session.testscollected - count) <= 0.02 * count, (request.session.testscollected, count)


def test_every_command_is_in_the_commands_page() -> None:
    """docs/commands.md lists every command and subcommand (``repro NAME`` in its table)."""
    page = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    table = "\n".join(line for line in page.splitlines() if line.startswith("| `repro "))
    missing = []
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        if f"`repro {name}" not in table:
            missing.append(name)
        for sub in command.list_commands(click.Context(command)) if isinstance(command, click.Group) else []:
            if not re.search(rf"`repro {name}\b[^|]*\b{sub}\b", table):
                missing.append(f"{name} {sub}")
    assert not missing, f"docs/commands.md does not list: {missing}"


# Set up once: its shared fixture is not function-scoped, so one xdist worker runs the whole module.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("docs")
    (root / ".venv").symlink_to((ROOT / ".venv").resolve())
    real, _ = real_upstream_choice()
    upstream = root / ".upstream" / "PaddleClas"
    if real is not None:
        copy_checkout(real, upstream)
    else:
        make_fake_checkout(upstream)
    # A finished run of the double, as logs/<run-id>; three copies of it for --aggregate.
    double = make_fake_checkout(root / "double")
    val = double / "dataset" / "ILSVRC2012" / "val_list.txt"
    val.parent.mkdir(parents=True)
    val.write_text("".join(f"val/{i}.jpg {i % 4}\n" for i in range(40)))
    # Three seeds' runs (logs/run1 stands for logs/<run-id>), and one that crashed in its last epoch.
    for name, top1, crash in (("run1", "0.25,0.5", ""), ("run2", "0.5,0.25", ""), ("run3", "0.25,0.75", ""),
                              ("crashed", "0.25,0.5", "2")):
        env = harness_env(FAKE_TOP1=top1, **({"FAKE_CRASH_EPOCH": crash} if crash else {}))
        code, _, err = finish(repro_train(double, root / "logs" / name, "-o", "Global.epochs=2", env=env), timeout=300)
        assert code == (6 if crash else 0), err
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "repro"), "dataset", "make-tiny", str(root / "data" / "ILSVRC2012")],
                          env=environment(root), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return root


def environment(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPRO_", "FAKE_", "PADDLE_"))}
    env.update({"PYTHONPATH": str(ROOT), "REPRO_UPSTREAM_DIR": str(root / ".upstream" / "PaddleClas")})
    return env


def as_run_here(command: str, rule: Rule, root: Path) -> str:
    """The command with the sandbox's paths, and as a dry run on a GPU platform where the rule says."""
    run = "logs/crashed" if "--resume" in command else "logs/run1"
    command = command.replace("logs/<run-id>", run).replace("/data/", f"{root}/data/")
    command = re.sub(r"(?<![\w/.-])logs/", f"{root}/logs/", command)
    if rule.dry_run:
        if command.startswith("make "):
            command += "" if "DRY_RUN=" in command else " DRY_RUN=1"
            command += "" if "PLATFORM=" in command else f" PLATFORM={GPU_PLATFORM}"
        else:
            command += "" if "--dry-run" in command else " --dry-run"
            if "--resume" not in command and "--platform" not in command:
                command += f" --platform {GPU_PLATFORM}"
    if command.startswith("make "):
        stamps = " ".join(f"-o {p.relative_to(ROOT)}" for p in sorted((ROOT / ".venv").glob(".installed-*")))
        command = f"make --no-print-directory -C {ROOT} {stamps} " + command[len("make "):]
    return command


def run_here(command: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """A plain ``.venv/bin/repro ...`` line runs in this process (the same command group and argv,
    without a new interpreter importing everything again); anything else in bash."""
    words = shlex.split(command)
    if words[0] == ".venv/bin/repro" and not re.search(r"[|;&<>`$]", command):
        monkeypatch.chdir(root)
        for name in [name for name in os.environ if name.startswith(("REPRO_", "FAKE_", "PADDLE_"))]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("REPRO_UPSTREAM_DIR", environment(root)["REPRO_UPSTREAM_DIR"])
        result = CliRunner(mix_stderr=False).invoke(cli, words[1:], prog_name="repro", auto_envvar_prefix="REPRO")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout + result.stderr
    done = subprocess.run(["bash", "-c", command], cwd=root, env=environment(root), capture_output=True, text=True,
                          timeout=300)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("documented", COMMANDS, ids=[f"{c.where.split(',')[0]} {c.text[:60]}" for c in COMMANDS])
def test_documented_command_works_here(documented: Documented, sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rule = rule_for(documented.text)
    assert rule is not None, documented
    if rule.skip:
        pytest.skip(f"not run here: {rule.skip}")
    real, why = real_upstream_choice()
    if rule.real_upstream and real is None:
        pytest.skip(f"needs the real upstream: {why}")
    command = as_run_here(documented.text, rule, sandbox)
    code, output = run_here(command, sandbox, monkeypatch)
    shown = output[:1500] + ("\n...\n" + output[-1500:] if len(output) > 3000 else output[1500:])
    assert code in rule.codes, f"{documented.where}: `{command}` exited {code}:\n{shown}"
    assert "Traceback" not in output and "internal error" not in output, shown
    assert re.search(rule.prints, output), f"{documented.where}: `{command}` did not print {rule.prints!r}:\n{shown}"
