"""``repro doctor`` on this GPU-less machine, and on pretend machines built from test doubles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.commands import doctor
from repro.commands.doctor import FAIL, OK, WARN, check_dataset, check_devices, check_paddle
from repro.platform.devices import PaddleInfo, probe_paddle, query_device_tool
from repro.platform.profiles import load_profile
from tests.doubles import make_fake_checkout


# Set up once: its shared fixture is not function-scoped, so one xdist worker runs the whole module.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def paddle_here() -> PaddleInfo:
    """The real probe of this machine's Paddle, run once: importing Paddle in a child takes seconds,
    and every doctor test would otherwise pay it again."""
    return probe_paddle()


@pytest.fixture(autouse=True)
def probe_once(paddle_here: PaddleInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "probe_paddle", lambda *args, **kwargs: paddle_here)


def run_doctor(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["doctor", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output.splitlines()


def test_doctor_here_without_upstream_or_dataset(tmp_path: Path) -> None:
    code, lines = run_doctor("--platform", "cpu", "--upstream", str(tmp_path / "nowhere"), "--logs-dir", str(tmp_path))
    assert code == 1
    by_topic = {line.split()[1]: line for line in lines if line.split() and line.split()[0] in (OK, WARN, FAIL)}
    assert by_topic["python"].startswith(OK)
    assert by_topic["paddle"].startswith(OK) and "2.6.2" in by_topic["paddle"] and "build=cpu" in by_topic["paddle"]
    assert by_topic["sklearn"].startswith(OK)
    assert by_topic["upstream"].startswith(FAIL) and "repro upstream fetch" in by_topic["upstream"]
    assert by_topic["dataset"].startswith(FAIL) and "repro upstream fetch" in by_topic["dataset"]
    assert by_topic["disk"].startswith(OK)
    assert lines[-1].startswith("doctor:") and "cannot start" in lines[-1]


def test_doctor_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["doctor", "--json", "--upstream", str(tmp_path / "x"), "--logs-dir", str(tmp_path)])
    data = json.loads(result.output)
    assert data["ready"] is False
    assert {f["topic"] for f in data["findings"]} >= {"python", "paddle", "upstream", "dataset", "disk"}


def test_gpu_profile_with_cpu_paddle_is_a_failure() -> None:
    profile = load_profile("ixuca-bi-v150-sdk4.2.0")
    findings = check_paddle(profile, PaddleInfo(importable=True, version="2.6.2", cuda_build=False))
    assert any(f.status == FAIL and "CPU-only" in f.detail and "IXUCA SDK 4.2.0" in f.fix for f in findings)


def test_gpu_profile_sees_no_gpu() -> None:
    profile = load_profile("nvidia-cuda")
    findings = check_devices(profile, PaddleInfo(importable=True, cuda_build=True, gpu_count=0), 4)
    assert findings[0].status == FAIL and "no GPU" in findings[0].detail


def test_fewer_gpus_than_the_reference_is_a_warning() -> None:
    profile = load_profile("nvidia-cuda")
    info = PaddleInfo(importable=True, cuda_build=True, gpu_count=2, gpu_names=["A100", "A100"])
    findings = check_devices(profile, info, 4)
    assert findings[0].status == WARN and "2 GPU" in findings[0].detail


def test_missing_vendor_tool_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    profile = load_profile("ixuca-bi-v100-sdk3.0.0")
    info = PaddleInfo(importable=True, cuda_build=True, gpu_count=4, gpu_names=["Iluvatar BI-V100"] * 4)
    findings = check_devices(profile, info, 4)
    assert findings[0].status == OK
    assert findings[1].topic == "driver" and "ixsmi not on PATH" in findings[1].detail
    assert info.build == "cuda (Iluvatar CoreX)"


def test_disk_check_fails_when_checkpoints_do_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The free space is the test's, not the machine's: doctor's disk line follows what disk_usage says."""
    asked: list[Path] = []

    def usage(free_bytes: int):
        def disk_usage(path):
            asked.append(Path(path))
            return shutil._ntuple_diskusage(total=10**15, used=10**15 - free_bytes, free=free_bytes)
        return disk_usage

    def disk_finding() -> dict:
        result = CliRunner().invoke(cli, ["doctor", "--json", "--upstream", str(tmp_path / "x"),
                                          "--logs-dir", str(tmp_path / "logs")])
        return next(f for f in json.loads(result.output)["findings"] if f["topic"] == "disk")

    monkeypatch.setattr(shutil, "disk_usage", usage(10**13))  # 10 TB free
    assert disk_finding()["status"] == OK
    assert tmp_path in asked, "the logs dir does not exist yet: its nearest existing parent is measured"
    monkeypatch.setattr(shutil, "disk_usage", usage(10**6))  # 1 MB free
    finding = disk_finding()
    assert finding["status"] == FAIL and "--logs-dir" in finding["fix"]


def test_dataset_line_is_pre_flights_own_check(tmp_path: Path) -> None:
    # Doctor and pre-flight agree: doctor runs pre-flight's dataset check on the recipe's config.
    from repro.dataset.tiny import MARKER, make_tiny

    upstream = make_fake_checkout(tmp_path / "PaddleClas")
    (upstream / "dataset").mkdir()
    assert check_dataset(upstream).status == FAIL  # nothing linked
    data = make_tiny(tmp_path / "data", classes=2, train_per_class=1, val_per_class=1, size=16)
    (upstream / "dataset" / "ILSVRC2012").symlink_to(data)
    finding = check_dataset(upstream)
    assert finding.status == FAIL and "tiny" in finding.detail and "repro dataset link" in finding.fix
    (data / MARKER).unlink()
    assert check_dataset(upstream).status == OK
    (data / "val_list.txt").unlink()
    finding = check_dataset(upstream)
    assert finding.status == FAIL and "val_list.txt" in finding.detail


def test_device_tool_is_queried_like_nvidia_smi_and_falls_back_to_a_list(tmp_path: Path, monkeypatch) -> None:
    profile = load_profile("ixuca-bi-v150-sdk4.2.0")
    tool = tmp_path / "ixsmi"
    # An ixsmi that knows --query-gpu, as nvidia-smi does.
    tool.write_text("#!/bin/sh\ncase \"$1\" in --query-gpu=*) echo '0, Iluvatar BI-V150, 32768 MiB, 64 MiB, 4.2.0'; "
                    "echo '1, Iluvatar BI-V150, 32768 MiB, 64 MiB, 4.2.0';; *) exit 3;; esac\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    report = query_device_tool(profile.device_query)
    assert [d["name"] for d in report.devices] == ["Iluvatar BI-V150"] * 2
    assert report.devices[0]["memory_total_mib"] == "32768" and report.devices[0]["driver"] == "4.2.0"
    # An older one that knows only -L.
    tool.write_text("#!/bin/sh\n[ \"$1\" = -L ] || { echo 'unknown option' >&2; exit 2; }\n"
                    "echo 'GPU 0: Iluvatar BI-V100 (UUID: GPU-1234)'\n")
    report = query_device_tool(profile.device_query)
    assert report.argv[1:] == ["-L"] and report.devices == [{"index": "0", "name": "Iluvatar BI-V100"}]


def test_doctor_says_plainly_whether_the_iluvatar_build_can_run_global_device_gpu() -> None:
    profile = load_profile("ixuca-bi-v150-sdk4.2.0")
    custom = PaddleInfo(importable=True, version="2.6.0", cuda_build=False, custom_devices=["iluvatar_gpu"])
    findings = check_paddle(profile, custom)
    assert any(f.status == FAIL and "iluvatar_gpu" in f.detail and "Global.device=gpu" in f.detail for f in findings)
    corex = PaddleInfo(importable=True, version="2.6.0", cuda_build=True, gpu_count=4, gpu_names=["Iluvatar BI-V150"])
    findings = check_paddle(profile, corex)
    assert any(f.status == OK and "Global.device=gpu works" in f.detail and "CoreX" in f.detail for f in findings)
