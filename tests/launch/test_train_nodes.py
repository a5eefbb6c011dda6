"""Several nodes on loopback (one CPU rank per node) under the REAL paddle launcher: node ranks are the
user's, node 0 holds the logs and the verdict, a lost node stops the run and a resume completes it.

The upstream test double runs by default (it never blocks in a collective, as NCCL would on a lost
peer, so node 0 must notice through the heartbeat); with ``REPRO_TEST_UPSTREAM`` set, real upstream
runs the smoke variant on two nodes too (gloo: node 0's rank fails as its peer's sockets close).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.launch.command import build_command, environment_changes
from repro.launch.nodes import NodePlan, NodeWatch, mismatches
from repro.run.rundir import Manifest, create_node_run_dir, group_node0, where_node0_is
from tests.conftest import copy_checkout, repro_here
from tests.doubles import make_fake_checkout
from tests.launch.test_train_launcher import _free_port, finish, harness_env, live, lock_pids, manifest

TOP1 = "0.30000,0.90000,0.50000,0.40000,0.45000,0.35000"  # an uninterrupted run's best: epoch 2, 0.9


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    return make_fake_checkout(tmp_path / "upstream")


def node(upstream: Path, group: Path, rank: int, master: str, *extra: str, env: dict | None = None,
         nnodes: int = 2) -> subprocess.Popen:
    argv = [sys.executable, "-m", "repro", "train", "--upstream", str(upstream), "--platform", "cpu",
            "--skip-preflight", "--run-dir", str(group), "--cpu-ranks", "1", "--nnodes", str(nnodes),
            "--node-rank", str(rank), "--master", master, *extra]
    return subprocess.Popen(argv, env=env or harness_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def resume(run: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "repro", "train", "--resume", str(run)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check(*args: str) -> tuple[int, str, str]:
    done = repro_here("check-accuracy", *args, env=harness_env())
    return done.returncode, done.stdout, done.stderr


def committed_copy(upstream: Path, target: Path) -> Path:
    """The same files, but a git checkout at a commit: an upstream that differs from node 0's."""
    shutil.copytree(upstream, target)
    git = ["git", "-C", str(target), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "other"], check=True)
    return target


# --------------------------------------------------------------------------- options and command


def test_node_rank_is_required_and_bounded(upstream: Path, tmp_path: Path) -> None:
    base = ["train", "--upstream", str(upstream), "--platform", "cpu", "--dry-run", "--nnodes", "2",
            "--master", "127.0.0.1:6170"]
    missing = CliRunner().invoke(cli, base)
    assert missing.exit_code == 2 and "needs --node-rank K" in missing.output
    beyond = CliRunner().invoke(cli, [*base, "--node-rank", "2"])
    assert beyond.exit_code == 2 and "must be below --nnodes 2" in beyond.output
    lone = CliRunner().invoke(cli, ["train", "--upstream", str(upstream), "--platform", "cpu", "--dry-run",
                                    "--node-rank", "1"])
    assert lone.exit_code == 2 and "needs --nnodes" in lone.output
    dry = CliRunner().invoke(cli, [*base, "--node-rank", "1", "--logs-dir", str(tmp_path / "logs")])
    assert dry.exit_code == 0, dry.output
    assert "[harness: --nnodes 2 --master 127.0.0.1:6170 --rank 1 --log_dir" in dry.output
    assert "/node1 (not created: dry run)" in dry.output and not (tmp_path / "logs").exists()


def test_the_launcher_gets_the_node_rank_and_no_variable_overrides_it(tmp_path: Path) -> None:
    command = build_command(upstream_dir=tmp_path, entry="tools/train.py", config_arg="c.yaml",
                            reference_overrides=[], device="cpu", run_dir=tmp_path / "run", cpu_ranks=1,
                            nnodes=2, master="10.0.0.1:8090", node_rank=1, python="/py")
    argv = command.argv
    assert argv[argv.index("--rank") + 1] == "1" and argv.index("--rank") < argv.index("tools/train.py")
    env = environment_changes({}, None, None, current={"PADDLE_TRAINER_ID": "0", "PADDLE_RANK": "0", "HOME": "/h"})
    assert set(env.unset) == {"PADDLE_TRAINER_ID", "PADDLE_RANK"}


def test_node0_refuses_a_master_that_is_not_its_own_address(upstream: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--upstream", str(upstream), "--platform", "cpu", "--cpu-ranks", "1",
                                      "--nnodes", "2", "--node-rank", "0", "--master", "192.0.2.1:6170",
                                      "--run-dir", str(tmp_path / "g")])
    assert result.exit_code == 4, result.output
    assert "is not an address of this machine, but node 0 serves it" in result.output
    assert not (tmp_path / "g").exists(), "a refused start leaves nothing behind"


def test_mismatch_lines_name_what_differs() -> None:
    mine = {"nnodes": 2, "devices_per_node": 4, "recipe": "resnest50", "upstream_commit": "a" * 40, "patches": [],
            "dataset_fingerprint": {"train_list": 1}}
    for key, other, words in (("upstream_commit", "b" * 40, "upstream commit aaaaaaaaaaaa on node 0, bbbbbbbbbbbb on node1"),
                              ("nnodes", 3, "--nnodes 2 on node 0, 3 on node1"),
                              ("devices_per_node", 8, "devices per node (--gpus/--cpu-ranks) 4 on node 0, 8 on node1"),
                              ("recipe", "resnet50", "--recipe resnest50 on node 0, resnet50 on node1"),
                              ("patches", [["p", "s", True]], "upstream patches differ"),
                              ("dataset_fingerprint", {"train_list": 2}, "dataset fingerprint differ")):
        theirs = {**mine, key: other, "host": "n1", "run_dir": "/r/node1"}
        lines = mismatches(mine, theirs, "node1")
        assert len(lines) == 1 and words in lines[0] and "(host n1, /r/node1)" in lines[0], lines
    assert mismatches(mine, {**mine}, "node1") == []


def test_node0_stops_when_no_log_line_comes_within_the_stall_timeout(tmp_path: Path) -> None:
    run = create_node_run_dir(tmp_path, tmp_path / "g", 0)
    book = Manifest.create(run.manifest, {"nodes": {"nnodes": 2, "node_rank": 0}})
    watch = NodeWatch(NodePlan(2, 0, f"127.0.0.1:{_free_port()}", stall_timeout=1.0), run, book, {}, print)
    assert watch() is False
    run.train_log.write_text("[Train] a line\n")
    time.sleep(0.7)
    assert watch() is False, "a growing log is activity"
    time.sleep(1.2)
    assert watch() is True and watch.reason.startswith("stalled: no log line for 1 s (--stall-timeout 1 s)")


def test_a_run_directory_names_node0_and_a_group_is_judged_by_node0(tmp_path: Path) -> None:
    group = tmp_path / "shared"
    runs = [create_node_run_dir(tmp_path, group, rank) for rank in (0, 1)]
    for rank, run in enumerate(runs):
        nodes = {"nnodes": 2, "node_rank": rank, "master": "10.0.0.1:8090", "master_host": "10.0.0.1"}
        if rank:
            nodes["node0"] = {"host": "n0", "run_dir": "/data/logs/shared/node0"}
        Manifest.create(run.manifest, {"nodes": nodes})
    assert group_node0(group) == runs[0].path and where_node0_is(group) is None
    assert where_node0_is(runs[0].path) is None
    line = where_node0_is(runs[1].path)
    assert "node 1 of 2" in line and "n0:/data/logs/shared/node0" in line
    runs[1].workerlog(0).write_text("fake-train rank 1 of 2\n")
    assert where_node0_is(runs[1].workerlog(0)) == line
    alone = tmp_path / "disk1"
    (alone / "node1").parent.mkdir()
    runs[1].path.rename(alone / "node1")  # separate disks: node 1's group holds only node1/
    assert "n0:/data/logs/shared/node0" in where_node0_is(alone)
    with pytest.raises(Exception, match="already exists"):
        create_node_run_dir(tmp_path, group, 0)
    resumed = CliRunner().invoke(cli, ["train", "--resume", str(group)])
    assert resumed.exit_code == 2 and f"--resume {group / 'node0'}` on node 0" in resumed.output


# --------------------------------------------------------------------------- two nodes on loopback


def test_node0_holds_the_logs_when_node1_starts_first(upstream: Path, tmp_path: Path) -> None:
    """Shared filesystem layout (one group directory); node 1 started first."""
    master = f"127.0.0.1:{_free_port()}"
    group = tmp_path / "logs" / "run1"
    env = harness_env(FAKE_TOP1=TOP1)
    second = node(upstream, group, 1, master, "-o", "Global.epochs=2", env=env)
    time.sleep(1.5)  # node 1 waits for node 0 to serve the master, rather than serving it itself
    first = node(upstream, group, 0, master, "-o", "Global.epochs=2", env=env)
    results = [finish(p, timeout=90) for p in (first, second)]
    for code, _, err in results:
        assert code == 0, err
    node0, node1 = group / "node0", group / "node1"
    assert "fake-train rank 0 of 2" in (node0 / "launcher" / "workerlog.0").read_text()
    assert "fake-train rank 1 of 2" in (node1 / "launcher" / "workerlog.0").read_text()
    assert "[Eval][Epoch 2]" in (node0 / "output" / "train.log").read_text()
    assert (node0 / "output" / "latest.pdparams").exists() and not (node1 / "output" / "train.log").exists()
    record0, record1 = manifest(node0)["nodes"], manifest(node1)["nodes"]
    assert (record0["nnodes"], record0["node_rank"], record0["master"]) == (2, 0, master)
    assert record1["node_rank"] == 1 and record1["node0"]["run_dir"] == str(node0)
    assert set(record0["hosts"]) == {"node0", "node1"}
    assert not record0.get("mismatches") and not record1.get("mismatches")

    code, out, err = check(str(node1))
    assert code == 2 and "UNREADABLE" not in out + err
    assert len(err.strip().splitlines()) == 1 and str(node0) in err and "node 1 of 2" in err
    for command in ("report", "watch"):
        done = repro_here(command, str(node1), env=harness_env())
        assert done.returncode == 2 and done.stderr.strip().splitlines() == err.strip().splitlines(), done.stderr
    code, out, err = check(str(group))  # the whole run, judged from node 0's directory
    assert "UNREADABLE" not in out and "best" in out and "epoch 2" in out
    assert "MISMATCH" not in out


@pytest.mark.parametrize("differs", ["nnodes", "upstream"])
def test_nodes_started_differently_both_stop_within_seconds_naming_it(upstream: Path, tmp_path: Path,
                                                                      differs: str) -> None:
    """Issue 20: node 0 with --nnodes 2 and node 1 with --nnodes 3 (or another upstream commit) on one master:
    node 1's launcher waited for a third node forever and node 0 stopped only after the 900 s stall timeout,
    blaming a lost node. The harnesses compare their options when they meet: both stop, naming the difference."""
    master = f"127.0.0.1:{_free_port()}"
    group = tmp_path / "logs" / "run1"
    env = harness_env(FAKE_TOP1=TOP1, FAKE_SLEEP="2")
    other = committed_copy(upstream, tmp_path / "upstream-other") if differs == "upstream" else upstream
    procs = [node(upstream, group, 0, master, "-o", "Global.epochs=6", env=env),
             node(other, group, 1, master, "-o", "Global.epochs=6", env=env, nnodes=3 if differs == "nnodes" else 2)]
    started = time.monotonic()
    try:
        results = [finish(p, timeout=150) for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    took = time.monotonic() - started
    words = "--nnodes 2 on node 0, 3 on node1" if differs == "nnodes" else "upstream commit"
    for code, _, err in results:
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("error: stopped this node's ranks: the nodes were started differently: "), err
        assert words in last and "same options" in last and "lost" not in last, last
    assert took < 120, f"the nodes took {took:.0f} s to stop"
    data = manifest(group / "node0")
    assert data["status"] == "failed" and any(words in line for line in data["nodes"]["mismatches"])
    left = [p for p in psutil.process_iter(["cmdline"]) if any(str(tmp_path) in t for t in (p.info["cmdline"] or []))]
    assert not left, f"left running: {left}"


def test_a_lost_node_stops_node0_and_both_resume(upstream: Path, tmp_path: Path) -> None:
    """Separate-disk layout (a group directory per node); node 1 is SIGKILLed, harness and ranks, mid-epoch."""
    master = f"127.0.0.1:{_free_port()}"
    env = harness_env(FAKE_TOP1=TOP1, FAKE_SLEEP="2", REPRO_TRAIN_PEER_TIMEOUT="3")
    group0, group1 = tmp_path / "disk0" / "run", tmp_path / "disk1" / "run"
    procs = [node(upstream, group0, 0, master, "-o", "Global.epochs=6", env=env),
             node(upstream, group1, 1, master, "-o", "Global.epochs=6", env=env)]
    node0, node1 = group0 / "node0", group1 / "node1"
    victims: list[dict] = []
    try:
        deadline = time.monotonic() + 150  # the harness's start (paddle's import) is slow on a loaded machine
        while time.monotonic() < deadline:
            log = node0 / "output" / "train.log"
            if log.exists() and "[Train][Epoch 3/6]" in log.read_text():
                break
            time.sleep(0.2)
        else:
            raise AssertionError("node 0 never reached epoch 3")
        victims = lock_pids(node1)  # the harness, its launcher and the rank
        assert len(victims) >= 3
        for process in live(victims):  # the lock may name short-lived helpers the launcher ran
            process.kill()
        killed = time.monotonic()
        code, _, err = finish(procs[0], timeout=60)
        noticed = time.monotonic() - killed
        procs[1].communicate(timeout=10)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for process in live(victims):
            process.kill()
    print(f"node 0 stopped {noticed:.1f} s after node 1 was killed")
    assert code == 6 and "node 1 lost" in err and noticed < 20, err
    assert err.strip().splitlines()[-1].startswith("error: stopped this node's ranks: node 1 lost")
    data = manifest(node0)
    assert data["status"] == "failed" and "node 1 lost" in data["segments"][-1]["stopped_because"]
    left = [p for p in psutil.process_iter(["cmdline"]) if any(str(tmp_path) in t for t in (p.info["cmdline"] or []))]
    assert not left, f"left running: {left}"

    # Node 1 resumes from node 0's newest complete checkpoint, which it must be able to read.
    hidden = node0.with_name("node0-away")
    node0.rename(hidden)
    code, _, err = finish(resume(node1, harness_env()), timeout=60)
    assert code == 4 and "not readable on this node" in err and "rsync -a" in err
    hidden.rename(node0)

    env = harness_env(FAKE_TOP1=TOP1)
    later = resume(node1, env)
    time.sleep(1)
    results = [finish(p, timeout=90) for p in (resume(node0, env), later)]
    for code, _, err in results:
        assert code == 0, err
    resumed = manifest(node1)["segments"][-1]
    assert resumed["resumed_from"].startswith(str(node0 / "output")) and resumed["resumed_from_epoch"] >= 2
    code, out, _ = check(str(node0), "--target", "0.9", "--tolerance", "0")
    assert code == 0 and "epoch 2" in out, out


def test_a_lost_node0_stops_node1(upstream: Path, tmp_path: Path) -> None:
    """Node 0 (the master, rank 0) SIGKILLed: node 1 notices that the master is gone and stops its ranks."""
    master = f"127.0.0.1:{_free_port()}"
    env = harness_env(FAKE_SLEEP="2", REPRO_TRAIN_PEER_TIMEOUT="3")
    procs = [node(upstream, tmp_path / "g", rank, master, "-o", "Global.epochs=6", env=env) for rank in (0, 1)]
    node0, node1 = tmp_path / "g" / "node0", tmp_path / "g" / "node1"
    victims: list[dict] = []
    try:
        deadline = time.monotonic() + 150
        while not ((node0 / "output" / "train.log").exists()
                   and "[Train][Epoch 2/6]" in (node0 / "output" / "train.log").read_text()):
            assert time.monotonic() < deadline, "node 0 never reached epoch 2"
            time.sleep(0.2)
        time.sleep(1.5)  # node 1 has read node 0's place from the master by now
        victims = lock_pids(node0)
        for process in live(victims):  # the lock may name short-lived helpers the launcher ran
            process.kill()
        killed = time.monotonic()
        code, _, err = finish(procs[1], timeout=60)
        noticed = time.monotonic() - killed
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for process in live(victims):
            process.kill()
    print(f"node 1 stopped {noticed:.1f} s after node 0 was killed")
    assert code == 6 and "stopping: node 0 lost" in err and noticed < 20, err
    assert manifest(node1)["nodes"]["node0"]["run_dir"] == str(node0)


# --------------------------------------------------------------------------- real upstream (REPRO_TEST_UPSTREAM)


def real_checkout(real_upstream: Path, tmp_path: Path) -> Path:
    """A copy of the real checkout with a tiny dataset linked (the user's checkout keeps its link): 16
    training images a class, so an epoch is 4 steps a rank; nothing here needs the run to learn."""
    upstream = copy_checkout(real_upstream, tmp_path / "PaddleClas")
    for args in (["dataset", "make-tiny", "--train-per-class", "16", str(tmp_path / "data")],
                 ["dataset", "link", "--force", str(tmp_path / "data")]):
        done = repro_here(*args, env={**harness_env(), "REPRO_UPSTREAM_DIR": str(upstream)})
        assert done.returncode == 0, done.stderr
    return upstream


@pytest.mark.upstream
@pytest.mark.slow
def test_real_upstream_lost_node_and_resume(real_upstream: Path, tmp_path: Path) -> None:
    """Real upstream, smoke variant, 2 epochs, --seed 0, two nodes of one CPU rank: node 1 killed in
    epoch 2 stops node 0 (exit 6, nothing left running); both resume from the save of epoch 1 and the
    group's verdict reads one run of 2 epochs over two launches, epoch 2 trained again (an uninterrupted
    run to compare with would sit at chance through epoch 3, so its best epoch would prove nothing)."""
    upstream = real_checkout(real_upstream, tmp_path)
    master = f"127.0.0.1:{_free_port()}"
    group = tmp_path / "cut"
    env = harness_env(real_probe=True)
    procs = [node(upstream, group, r, master, "--smoke", "--seed", "0", "-o", "Global.epochs=2", env=env) for r in (1, 0)]
    deadline = time.monotonic() + 600
    log = group / "node0" / "output" / "train.log"
    while not (log.exists() and "[Train][Epoch 2/2][Iter: 0/" in log.read_text()):
        assert time.monotonic() < deadline and procs[1].poll() is None, "node 0 never reached epoch 2"
        time.sleep(0.5)
    victims = lock_pids(group / "node1")
    for process in live(victims):
        process.kill()
    killed = time.monotonic()
    code, _, err = finish(procs[1], timeout=120)
    print(f"real upstream: node 0 stopped {time.monotonic() - killed:.1f} s after node 1 was killed")
    procs[0].communicate(timeout=30)
    assert code == 6, err
    left = [p for p in psutil.process_iter(["cmdline"]) if any(str(tmp_path) in t for t in (p.info["cmdline"] or []))]
    assert not left, f"left running: {left}"
    procs = [resume(group / "node1", env)]
    time.sleep(1)
    procs.append(resume(group / "node0", env))
    for code, _, err in [finish(p, timeout=900) for p in procs]:
        assert code == 0, err[-3000:]
    code, out, err = check(str(group), "--json")
    verdict = json.loads(out.splitlines()[0])
    assert verdict["complete"] and verdict["epochs_completed"] == 2 and verdict["launches"] == 2, verdict
    text = log.read_text()
    assert text.count("[Train][Epoch 2/2][Iter: 0/") == 2 and text.count("[Eval][Epoch 1][Avg]") == 1, text[-3000:]
    assert re.search(r"checkpoints : \S+/latest\n", text), "the resumed launch did not start from a save"
