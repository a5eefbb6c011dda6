"""Several nodes: who is node 0, what each node checks first, and how a lost node stops the run."""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from repro.core.errors import EXIT_BAD_INPUT, EXIT_PREFLIGHT, ReproError
from repro.run.rundir import K_NODES, Manifest, RunDir, group_node0, node_dir_name, node_rank_of, recipe_name
from repro.run.processes import seconds_from_env

# A real epoch's longest silence on rank 0 is the first iteration (cudnn's exhaustive search, data
# loader start) or a checkpoint save on a slow disk: minutes, not a quarter of an hour.
DEFAULT_STALL_TIMEOUT = 900.0
# More nodes than any ImageNet recipe uses (the DeepSparkHub table stops at 8 cards on 1 node).
MAX_NODES = 1024
PEER_TIMEOUT_SECONDS = 60.0  # REPRO_TRAIN_PEER_TIMEOUT overrides it (tests)
CONNECT_TIMEOUT = 3.0
PREFIX = "/repro"


@dataclass(frozen=True)
class NodePlan:
    """This node's place in a multi-node run."""

    nnodes: int
    node_rank: int
    master: str
    stall_timeout: float = DEFAULT_STALL_TIMEOUT

    @property
    def host(self) -> str:
        return self.master.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.master.rpartition(":")[2])

    def to_manifest(self) -> dict[str, Any]:
        return {"nnodes": self.nnodes, "node_rank": self.node_rank, "master": self.master, "master_host": self.host,
                "hostname": socket.gethostname(), "stall_timeout": self.stall_timeout}

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> "NodePlan | None":
        record = data.get(K_NODES) or {}
        if int(record.get("nnodes") or 1) < 2:
            return None
        return cls(int(record["nnodes"]), int(record["node_rank"]), str(record["master"]),
                   float(record.get("stall_timeout") or DEFAULT_STALL_TIMEOUT))


def check_node_options(nnodes: int | None, node_rank: int | None) -> None:
    """``--node-rank`` is required with ``--nnodes`` > 1 and must be below it."""
    if (nnodes or 1) < 2:
        if node_rank not in (None, 0):
            raise ReproError(f"--node-rank {node_rank} needs --nnodes N > {node_rank} (the number of nodes)",
                             EXIT_BAD_INPUT)
        return
    if node_rank is None:
        raise ReproError(f"--nnodes {nnodes} needs --node-rank K (0 on the node whose address --master names, "
                         f"1..{nnodes - 1} on the others), so global rank 0 and its logs are on node 0",
                         EXIT_BAD_INPUT)
    if node_rank >= nnodes:
        raise ReproError(f"--node-rank {node_rank} must be below --nnodes {nnodes} (0..{nnodes - 1})", EXIT_BAD_INPUT)


# -- pre-flight -----------------------------------------------------------------------------------
def local_addresses() -> set[str]:
    addresses = {"127.0.0.1", "::1"}
    for entries in psutil.net_if_addrs().values():
        addresses.update(entry.address.split("%")[0] for entry in entries if entry.family in (socket.AF_INET, socket.AF_INET6))
    return addresses


def resolve(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError as error:
        raise ReproError(f"--master host {host!r} does not resolve here ({error}): give node 0's IP address",
                         EXIT_PREFLIGHT) from None


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def node0_problems(plan: NodePlan) -> list[str]:
    """On node 0: the master's host is this machine and its port is free, so its launcher can serve it."""
    address = resolve(plan.host)
    if address not in local_addresses():
        return [f"--master {plan.master} is not an address of this machine, but node 0 serves it: run --node-rank 0 "
                f"on {plan.host}, or give --master <this node's IP>:{plan.port} on every node"]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", plan.port))
        except OSError as error:
            return [f"port {plan.port} of --master {plan.master} cannot be bound here ({error.strerror}): another "
                    f"run or program holds it (`ss -ltnp 'sport = :{plan.port}'`); pick a free port on every node"]
    return []


def wait_for_master(plan: NodePlan, say: Callable[[str], None]) -> None:
    """On node K > 0: wait until node 0 serves the master (bounded), so node 0 is the one that serves it."""
    resolve(plan.host)
    timeout = plan.stall_timeout
    deadline = time.monotonic() + timeout
    told = False
    while not reachable(plan.host, plan.port):
        if time.monotonic() >= deadline:
            raise ReproError(
                f"node 0's master {plan.master} was not reachable from this node for {timeout:g} s: start node 0 "
                f"(`repro train ... --node-rank 0`) on {plan.host}, and check that port {plan.port} is open between "
                "the nodes (firewall)", EXIT_PREFLIGHT)
        if not told:
            say(f"waiting for node 0 to serve the master {plan.master} (up to {timeout:g} s)")
            told = True
        time.sleep(0.5)


# -- while running --------------------------------------------------------------------------------
@dataclass
class NodeWatch:
    """Called every housekeeping tick: heartbeat, node records, and the decision to stop this node."""

    plan: NodePlan
    run: RunDir
    manifest: Manifest
    info: dict[str, Any]
    say: Callable[[str], None]
    peer_timeout: float = PEER_TIMEOUT_SECONDS
    reason: str | None = None
    beats: int = 0
    last_activity: float = field(default_factory=time.monotonic)
    log_sizes: dict[str, int] = field(default_factory=dict)
    peers: dict[str, tuple[Any, float]] = field(default_factory=dict)  # node -> (last beat seen, when)
    store_seen: float | None = None
    compared: set[str] = field(default_factory=set)
    differs: str | None = None  # the first option a peer was started with differently

    def __post_init__(self) -> None:
        self.me = node_dir_name(self.plan.node_rank)

    def __call__(self) -> bool:
        """One look; True when the run must stop (``reason`` says why)."""
        now = time.monotonic()
        self.beats += 1
        # One failed call skips the rest: an unreachable host costs one connect timeout a tick, not four.
        published = self._put(f"beat/{self.me}", self.beats) and self._put(f"info/{self.me}", self.info)
        beats = self._get_prefix("beat/") if published else None
        if beats is not None:
            self.store_seen = now
            self._records()
        for key, value in (beats or {}).items():
            node = key.split("/", 1)[-1]
            if node != self.me and (node not in self.peers or self.peers[node][0] != value):
                self.peers[node] = (value, now)
        self._note_activity(now)
        self.reason = self._verdict(now)
        return self.reason is not None

    # paddle's launcher key-value server at ``--master`` (POST sets a key, GET a prefix as JSON)
    def _request(self, method: str, key: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(HTTP status, body); status 0 when the store is unreachable."""
        connection = http.client.HTTPConnection(self.plan.host, self.plan.port, timeout=CONNECT_TIMEOUT)
        try:
            with contextlib.closing(connection):
                connection.request(method, f"{PREFIX}/{key}", body=body)
                response = connection.getresponse()
                return response.status, response.read()
        except OSError:
            return 0, b""

    def _put(self, key: str, value: dict[str, Any] | int) -> bool:
        return self._request("POST", key, json.dumps(value).encode())[0] == 200

    def _get_prefix(self, key: str) -> dict[str, Any] | None:
        """``{key: value}`` under the prefix (empty when none), or None when the store is unreachable."""
        status, body = self._request("GET", key)
        if status != 200:
            return None if status == 0 else {}
        try:
            return {name[len(PREFIX) + 1:]: json.loads(value) for name, value in json.loads(body).items()}
        except ValueError:
            return {}

    def _verdict(self, now: float) -> str | None:
        if self.differs:
            return f"the nodes were started differently: {self.differs}"
        if self.plan.node_rank > 0 and self.store_seen is not None and now - self.store_seen > self.peer_timeout:
            return (f"node 0 lost: its master {self.plan.master} has not answered for {now - self.store_seen:.0f} s "
                    f"(peer timeout {self.peer_timeout:g} s)")
        for node, (_, seen) in sorted(self.peers.items()):  # any lost node blocks every other one's collectives
            if now - seen > self.peer_timeout:
                return (f"node {node_rank_of(Path(node))} lost: its harness has sent no heartbeat for "
                        f"{now - seen:.0f} s (peer timeout {self.peer_timeout:g} s)")
        if self.plan.node_rank == 0 and now - self.last_activity > self.plan.stall_timeout:
            return (f"stalled: no log line for {now - self.last_activity:.0f} s (--stall-timeout "
                    f"{self.plan.stall_timeout:g} s); a rank may wait in a collective on a lost node")
        return None

    def _note_activity(self, now: float) -> None:
        """Any rank log or train.log grew: training is alive (only node 0's rank 0 logs steps)."""
        for path in [self.run.train_log, *self.run.launcher.glob("workerlog.*")]:
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if self.log_sizes.get(str(path)) != size:
                self.log_sizes[str(path)] = size
                self.last_activity = now

    def _records(self) -> None:
        """Hosts seen, node 0's place (on the others) and mismatches (on node 0), into the manifest."""
        infos = self._get_prefix("info/") or {}
        record = self.manifest.section(K_NODES)
        before = copy.deepcopy(record)
        hosts = {key.split("/", 1)[-1]: info.get("host") for key, info in infos.items() if isinstance(info, dict)}
        if hosts:
            record["hosts"] = {**record.get("hosts", {}), **hosts}
        node0 = infos.get(f"info/{node_dir_name(0)}")
        if self.plan.node_rank > 0 and isinstance(node0, dict):
            record["node0"] = {"host": node0.get("host"), "run_dir": node0.get("run_dir")}
        for key, info in sorted(infos.items()):  # node 0 compares every node with its own; the others, node 0
            node = key.split("/", 1)[-1]
            if (node == self.me or node in self.compared or not isinstance(info, dict)
                    or self.plan.node_rank > 0 and node != node_dir_name(0)):
                continue
            self.compared.add(node)
            known = record.setdefault("mismatches", [])
            lines = (mismatches(self.info, info, node) if self.plan.node_rank == 0
                     else mismatches(info, self.info, self.me, theirs_host=False))
            for line in lines:
                self.say(f"MISMATCH: {line}")
                self.differs = self.differs or line
                known += [] if line in known else [line]  # a resumed segment compares again
        if record != before:
            self.manifest.save()


def patch_set(upstream: dict[str, Any]) -> list[tuple]:
    """An upstream record's patches, comparable across nodes and segments."""
    return sorted((p.get("name"), p.get("sha256"), bool(p.get("applied"))) for p in upstream.get("patches") or [])


def node_info(run: RunDir, manifest: dict[str, Any]) -> dict[str, Any]:
    """What this node publishes: where its run is, and what must be the same on every node."""
    upstream = manifest.get("upstream") or {}
    dataset = manifest.get("dataset") or {}
    nodes = manifest.get(K_NODES) or {}
    return {
        "host": socket.gethostname(),
        "run_dir": str(run.path),
        "nnodes": nodes.get("nnodes"),
        "devices_per_node": nodes.get("devices_per_node"),
        "recipe": recipe_name(manifest),
        "upstream_commit": upstream.get("commit"),
        "patches": patch_set(upstream),
        "dataset_fingerprint": dataset.get("fingerprint"),
    }


# What every node must share: (info key, what the user calls it, shown by value). Patches and the
# dataset fingerprint are long: they are said to differ, not printed.
COMPARED = (("nnodes", "--nnodes", True), ("devices_per_node", "devices per node (--gpus/--cpu-ranks)", True),
            ("recipe", "--recipe", True), ("upstream_commit", "upstream commit", True),
            ("patches", "upstream patches", False), ("dataset_fingerprint", "dataset fingerprint", False))


def mismatches(node0: dict[str, Any], theirs: dict[str, Any], node: str, theirs_host: bool = True) -> list[str]:
    """One line per option that differs between node 0 (``node0``) and ``node`` (``theirs``)."""
    out = []
    where = f" (host {theirs.get('host')}, {theirs.get('run_dir')})" if theirs_host else ""
    for key, label, shown in COMPARED:
        a, b = json.loads(json.dumps(node0.get(key))), json.loads(json.dumps(theirs.get(key)))
        if a != b:
            detail = f" {str(a)[:12]} on node 0, {str(b)[:12]} on {node}" if shown else " differ"
            out.append(f"{label}{detail}{where}: start every node with the same options, upstream and data")
    return out


# -- resume ---------------------------------------------------------------------------------------
def checkpoint_dir(run: RunDir, data: dict[str, Any]) -> Path:
    """Where this node's resume finds the run's checkpoints: its own output on node 0; node 0's on the
    others (upstream loads ``Global.checkpoints`` on every rank, so that path must be readable here)."""
    plan = NodePlan.from_manifest(data)
    if plan is None or plan.node_rank == 0:
        return run.output
    if (shared := group_node0(run.path.parent)) is not None:
        return RunDir(shared).output
    node0 = (data.get(K_NODES) or {}).get("node0") or {}
    recorded = node0.get("run_dir")
    if not recorded:
        raise ReproError(
            f"{run.path} does not know node 0's run directory (node 0 never answered this node); resume node 0 first, "
            f"then pass its checkpoint path readable here", EXIT_PREFLIGHT)
    output = RunDir(Path(recorded)).output
    if not os.access(output, os.R_OK | os.X_OK):
        raise ReproError(
            f"node 0's checkpoints, {node0.get('host')}:{output}, are not readable on this node, and every rank loads "
            f"them on resume: mount node 0's run directory at {recorded} (shared filesystem), or copy it: "
            f"`rsync -a {node0.get('host')}:{output}/ {output}/`; then resume again", EXIT_PREFLIGHT)
    return output


def node_watch_for(run: RunDir, manifest: Manifest, say: Callable[[str], None]) -> NodeWatch | None:
    """The watch of a multi-node run's segment, or None for one node."""
    plan = NodePlan.from_manifest(manifest.data)
    if plan is None:
        return None
    return NodeWatch(plan, run, manifest, node_info(run, manifest.data), say,
                     peer_timeout=seconds_from_env("REPRO_TRAIN_PEER_TIMEOUT", PEER_TIMEOUT_SECONDS))
