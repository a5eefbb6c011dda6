"""What this machine offers for training: the Paddle build and the devices it and the vendor tool see.
Paddle is probed in a child interpreter, never imported here: a broken install (a wrong vendor wheel, the
scikit-learn segfault after ``import paddle``) is a finding in ``doctor`` and the manifest, not a crash."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from repro.platform.profiles import DeviceQuery, vendor_builds
from repro.core.deadline import run_bounded

# The child's answers are the lines that start with this marker: paddle, a vendor plugin or a
# sitecustomize may print anything (even a line starting with "{") before or between them.
PROBE_MARKER = "REPRO-PADDLE-PROBE-5d0c1e:"
# Runs in the child. Prints one marked JSON object; each step is guarded so a partial answer still arrives.
_PADDLE_PROBE = r"""
import json, sys
MARK = "%MARKER%"
out = {"importable": False}
try:
    import paddle
    out["importable"] = True
    out["version"] = paddle.__version__
    out["commit"] = getattr(paddle.version, "commit", None)
    out["cuda_build"] = bool(paddle.is_compiled_with_cuda())
    out["cuda_version"] = paddle.version.cuda() if out["cuda_build"] else None
    out["cudnn_version"] = paddle.version.cudnn() if out["cuda_build"] else None
    try:
        out["custom_devices"] = list(paddle.device.get_all_custom_device_type() or [])
    except Exception:
        out["custom_devices"] = []
    try:
        out["gpu_count"] = int(paddle.device.cuda.device_count()) if out["cuda_build"] else 0
        out["gpu_names"] = [paddle.device.cuda.get_device_name(i) for i in range(out["gpu_count"])]
    except Exception as error:
        out["gpu_count"] = 0
        out["gpu_error"] = str(error).splitlines()[0][:200]
except Exception as error:
    out["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
print(MARK + json.dumps(out), flush=True)
if out["importable"] and "--with-sklearn" in sys.argv:
    # Upstream imports sklearn after paddle; some scikit-learn builds segfault exactly there.
    import sklearn
    print(MARK + json.dumps({"sklearn": sklearn.__version__}), flush=True)
""".replace("%MARKER%", PROBE_MARKER)


@dataclass
class PaddleInfo:
    """The Paddle build as the training processes will see it."""

    importable: bool
    version: str | None = None
    commit: str | None = None
    cuda_build: bool = False
    cuda_version: str | None = None
    cudnn_version: str | None = None
    gpu_count: int = 0
    gpu_names: list[str] = field(default_factory=list)
    custom_devices: list[str] = field(default_factory=list)
    sklearn_version: str | None = None
    sklearn_crash: str | None = None
    error: str | None = None

    @property
    def build(self) -> str:
        """'cpu', 'cuda X', or a vendor's label: a vendor build reports CUDA plus its own device names,
        which the platform profiles list (``paddle.device_names``, ``paddle.build_label``)."""
        if not self.importable:
            return "missing"
        names = [name.lower() for name in self.gpu_names]
        for vendor in vendor_builds():
            if any(mark in name for mark in vendor["device_names"] for name in names):
                return vendor["build_label"]
        if self.cuda_build:
            return f"cuda {self.cuda_version or ''}".strip()
        return "cpu"

    def to_manifest(self) -> dict[str, Any]:
        return {**asdict(self), "build": self.build}


def probe_paddle(python: str | None = None, with_sklearn: bool = True, timeout: float = 120.0,
                 env: dict[str, str] | None = None) -> PaddleInfo:
    """One child interpreter answers every question about Paddle (importing it takes seconds); ``env`` lets
    the pre-flight count the machine's GPUs without a leftover ``CUDA_VISIBLE_DEVICES``."""
    python = python or sys.executable
    argv = [python, "-c", _PADDLE_PROBE] + (["--with-sklearn"] if with_sklearn else [])
    try:
        done = run_bounded(argv, timeout, env=env)
    except subprocess.TimeoutExpired:
        return PaddleInfo(importable=False, error=f"`import paddle` did not finish in {timeout:.0f} s; "
                                                  f"run `{python} -c \"import paddle\"` to see where it stops")
    except OSError as error:
        return PaddleInfo(importable=False, error=f"cannot start {python}: {error}")
    try:
        answers = [json.loads(line[len(PROBE_MARKER):]) for line in done.stdout.splitlines() if line.startswith(PROBE_MARKER)]
    except ValueError:
        answers = []
    if not answers or not all(isinstance(answer, dict) for answer in answers):
        tail = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]
        return PaddleInfo(
            importable=False,
            error=f"the Paddle probe gave no answer (python exited {done.returncode}, last line: {tail[:200]}); "
                  f"run `{python} -c \"import paddle; paddle.utils.run_check()\"` to see why",
        )
    data = answers[0]
    probed = {key: data[key] for key in ("importable", "version", "commit", "cuda_build", "cuda_version",
                                         "cudnn_version", "gpu_count", "gpu_names", "custom_devices") if key in data}
    info = PaddleInfo(**{"importable": False, **probed}, error=data.get("error") or data.get("gpu_error"))
    if len(answers) > 1:
        info.sklearn_version = answers[1].get("sklearn")
    elif info.importable and with_sklearn:
        info.sklearn_crash = f"`import sklearn` after `import paddle` exited with code {done.returncode}"
    return info


@dataclass
class DeviceToolReport:
    """What the vendor's device tool (the profile's ``device_query``) says: the driver/SDK and the cards."""

    tool: str
    found: bool
    returncode: int | None = None
    output: str = ""
    argv: list[str] = field(default_factory=list)

    def first_lines(self, n: int = 6) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()][:n]

    @property
    def devices(self) -> list[dict[str, str]]:
        return parse_devices(self.output) if self.returncode == 0 else []

    def to_manifest(self) -> dict[str, Any]:
        return {**asdict(self), "devices": self.devices}


# "0, Iluvatar BI-V150, 32768 MiB, 64 MiB, 4.2.0" (--query-gpu ... --format=csv,noheader)
_CSV_ROW = re.compile(r"^\s*(\d+)\s*,\s*([^,]+?)\s*,\s*(\d+)\s*MiB\s*,\s*(\d+)\s*MiB\s*,\s*([^,]+?)\s*$")
# "GPU 0: Iluvatar BI-V150 (UUID: GPU-...)" (-L)
_LIST_ROW = re.compile(r"^\s*GPU\s+(\d+):\s*(.+?)\s*(?:\(UUID:.*\))?\s*$")


def parse_devices(output: str) -> list[dict[str, str]]:
    """The cards in a device tool's answer, in either form the profiles ask for."""
    devices = []
    for line in output.splitlines():
        if match := _CSV_ROW.match(line):
            index, name, total, used, driver = match.groups()
            devices.append({"index": index, "name": name, "memory_total_mib": total, "memory_used_mib": used,
                            "driver": driver})
        elif match := _LIST_ROW.match(line):
            devices.append({"index": match.group(1), "name": match.group(2)})
    return devices


def query_device_tool(query: DeviceQuery | None, timeout: float = 30.0) -> DeviceToolReport | None:
    """The tool's answer to the profile's query, or to its fallback (``-L``) where the query fails."""
    if query is None:
        return None
    path = shutil.which(query.tool)
    if path is None:
        return DeviceToolReport(tool=query.tool, found=False)
    report = _run_tool(query.tool, [path, *query.args], timeout)
    if query.fallback and (report.returncode != 0 or not report.devices):
        fallback = _run_tool(query.tool, [path, *query.fallback], timeout)
        if fallback.returncode == 0:
            return fallback
    return report


def _run_tool(tool: str, argv: list[str], timeout: float) -> DeviceToolReport:
    try:
        done = run_bounded(argv, timeout)
    except subprocess.TimeoutExpired:
        return DeviceToolReport(tool, True, None, f"timed out after {timeout:.0f} s", argv)
    except OSError as error:  # not executable for us, a broken binary: a finding, never a crash
        return DeviceToolReport(tool, True, None, f"cannot run {argv[0]}: {error}", argv)
    return DeviceToolReport(tool, True, done.returncode, (done.stdout + done.stderr)[:20000], argv)


def host_summary() -> dict[str, Any]:
    return {"hostname": platform.node(), "python": platform.python_version(), "python_executable": sys.executable,
            "os": platform.platform(), "cpu_count": os.cpu_count()}
