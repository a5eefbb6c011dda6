"""Does training's ``import ppcls`` reach the checkout? ``tools/train.py`` *appends* the checkout to
``sys.path``, so a ``ppcls`` found earlier (the PyPI ``paddleclas`` wheel, a PYTHONPATH entry) silently
replaces upstream's code. Asked in a child set up as training starts, finding the spec without importing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from repro.core.deadline import run_bounded

MARKER = "REPRO-PPCLS-PROBE-9b41a2:"
# In the child, cwd = the checkout. `python tools/train.py` puts the script's directory first on
# sys.path (unless safe-path mode is on); train.py then does
#   sys.path.append(os.path.abspath(os.path.join(__dir__, '../')))
_PROBE = r"""
import importlib.metadata, importlib.util, json, os, sys
tools = os.path.abspath("tools")
if not getattr(sys.flags, "safe_path", False):  # Python 3.11+: -P / PYTHONSAFEPATH
    sys.path[0] = tools
sys.path.append(os.path.abspath(os.path.join(tools, "../")))
spec = importlib.util.find_spec("ppcls")
where = None
if spec is not None:
    where = spec.origin if spec.origin not in (None, "namespace") else list(spec.submodule_search_locations or [None])[0]
try:
    dists = importlib.metadata.packages_distributions().get("ppcls", [])
except Exception:
    dists = []
print(%MARKER% + json.dumps({"where": where, "dists": dists}), flush=True)
""".replace("%MARKER%", repr(MARKER))


def ppcls_shadowing_problem(checkout: Path, python: str | None = None, timeout: float = 60.0) -> str | None:
    """None when training's ``import ppcls`` (in ``python``, default this one) resolves to ``checkout/ppcls``;
    else one line: problem; fix."""
    checkout = Path(checkout).resolve()
    python = python or sys.executable
    if not (checkout / "ppcls").is_dir() or not (checkout / "tools").is_dir():
        return None  # not a PaddleClas tree: the upstream check says so
    try:
        done = run_bounded([python, "-c", _PROBE], timeout, cwd=checkout)
    except subprocess.TimeoutExpired:
        return f"finding ppcls as training would took over {timeout:.0f} s; run `{python} -c \"import ppcls\"` in {checkout} to see why"
    except OSError as error:
        return f"cannot start {python} to find ppcls ({error.strerror or error}); check the venv: make setup"
    answers = [line[len(MARKER):] for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if not answers:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return f"could not find where training imports ppcls from ({python} exited {done.returncode}: {tail}); rerun `repro doctor`"
    data = json.loads(answers[0])
    where = data.get("where")
    inside = checkout / "ppcls"
    if where and Path(where).resolve().is_relative_to(inside):
        return None
    if where is None:
        return f"training cannot import ppcls from {checkout}; run `repro upstream fetch` to restore the checkout"
    found = Path(where).resolve()
    if found.name == "__init__.py":
        found = found.parent
    dists = [d for d in data.get("dists") or [] if d]
    if dists:
        fix = f"{python} -m pip uninstall {' '.join(sorted(set(dists)))}"
    elif any(found.parent == Path(p).resolve() for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p):
        fix = f"remove {found.parent} from PYTHONPATH"
    else:
        fix = f"move {found} out of the way (it is not upstream's code)"
    return (f"training would import ppcls from {found}, not from the checkout {inside}: "
            f"upstream's code would be silently replaced; {fix}")

