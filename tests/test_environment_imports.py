"""The pinned CPU environment really imports together, in upstream's order (paddle first, then sklearn)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from repro.platform.devices import probe_paddle
from tests.platform.test_profiles_and_recipes import requirement_lines
from repro.platform.profiles import load_profile

IMPORT_IN_UPSTREAM_ORDER = """
import json, paddle, sklearn, cv2, numpy, scipy, pandas, matplotlib, yaml, PIL
print(json.dumps({"paddle": paddle.__version__, "scikit-learn": sklearn.__version__, "opencv-python": cv2.__version__,
                  "numpy": numpy.__version__, "scipy": scipy.__version__, "pandas": pandas.__version__}))
"""


def test_paddle_then_sklearn_imports_without_crashing() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_IN_UPSTREAM_ORDER], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    versions = json.loads(done.stdout.strip().splitlines()[-1])
    pins = dict(line.split("==", 1) for line in requirement_lines(load_profile("cpu").requirements))
    assert versions["paddle"] == pins["paddlepaddle"]
    for name in ("scikit-learn", "numpy", "scipy", "pandas"):
        assert versions[name] == pins[name], name
    # opencv reports 4.6.0 for the 4.6.0.66 wheel (the last field is the wheel's build number).
    assert pins["opencv-python"].startswith(versions["opencv-python"] + ".")


def test_probe_reports_a_cpu_paddle() -> None:
    info = probe_paddle()
    assert info.importable, info.error
    assert info.build == "cpu" and info.gpu_count == 0
    assert info.sklearn_version == "1.3.2" and info.sklearn_crash is None


def test_probe_detects_a_sklearn_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test double: a fake sklearn that dies by SIGSEGV on import, as 1.9.x does after paddle."""
    fake = tmp_path / "sklearn"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    info = probe_paddle()
    assert info.importable
    assert info.sklearn_crash is not None and "-11" in info.sklearn_crash


def test_probe_survives_a_missing_paddle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test double: a paddle package that fails to import, like a wheel for the wrong platform."""
    fake = tmp_path / "paddle"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('libcudart.so.12: cannot open shared object file')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    info = probe_paddle()
    assert not info.importable
    assert "libcudart" in info.error
