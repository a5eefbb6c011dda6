"""Throw-away PaddleClas look-alike repositories for the upstream tests.

The files written here are a TEST DOUBLE, not upstream code: ``classification.py`` holds only the
few lines our patch 0001 touches (its context and the lines it replaces), so the real patch from
``patches/`` can be applied to it; the other files are one-line placeholders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REAL_PATCHES = Path(__file__).resolve().parents[1] / "patches"
PATCH_0001 = "0001-cpu-distributed-eval-device-id.patch"
CLASSIFICATION = "ppcls/engine/evaluation/classification.py"

# Test double: the pre-image lines of our patch's hunk, indented as in a function body.
CLASSIFICATION_DOUBLE = """\
def classification_eval(engine, epoch_id=0):
    for batch in engine.eval_dataloader:
        if paddle.distributed.get_world_size() > 1:
            label_list = []
            device_id = paddle.distributed.ParallelEnv().device_id
            label = batch[1].cuda(device_id) if engine.config["Global"][
                "device"] == "gpu" else batch[1]
            paddle.distributed.all_gather(label_list, label)
            labels = paddle.concat(label_list, 0)
"""
PATCHED_LINE = 'if engine.config["Global"]["device"] == "gpu":'

FILES = {
    CLASSIFICATION: CLASSIFICATION_DOUBLE,
    "ppcls/__init__.py": "# test double\n",
    "tools/train.py": "# test double of the training entry point\n",
    "requirements.txt": "tqdm\n",
    "setup.py": "# test double\n",
    "dataset/.gitkeep": "",
    "docs/big.md": "docs are not needed for training and must not be checked out\n",
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git with a throw-away identity, so tests need no global git config (CI has none)."""
    env = dict(os.environ)
    env.update(
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
        GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
    )
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


@dataclass
class FakeUpstream:
    path: Path
    first: str  # commit with the files above
    second: str  # a later commit on release/2.6 (the branch tip)

    @property
    def url(self) -> str:
        return str(self.path)


def make_fake_upstream(root: Path) -> FakeUpstream:
    repo = root / "origin-PaddleClas"
    for name, text in FILES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git("init", "-q", "-b", "release/2.6", str(repo))
    git("config", "uploadpack.allowFilter", "true", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "first", cwd=repo)
    first = git("rev-parse", "HEAD", cwd=repo)
    (repo / "ppcls" / "__init__.py").write_text("# test double, second commit\n")
    git("commit", "-q", "-am", "second", cwd=repo)
    second = git("rev-parse", "HEAD", cwd=repo)
    return FakeUpstream(repo, first, second)


def write_harness_root(root: Path, url: str, commit: str | None, verified: str | None = None) -> Path:
    """A harness tree with our real patch series and a pin pointing at the fake upstream."""
    patches = root / "patches"
    patches.mkdir(parents=True)
    shutil.copyfile(REAL_PATCHES / PATCH_0001, patches / PATCH_0001)
    (patches / "series").write_text(f"# test series\n{PATCH_0001}\n")
    (patches / "UPSTREAM.yaml").write_text(
        "# comment that must survive lock\n"
        f"url: {url}\nref: release/2.6\n"
        f"commit: {commit or ''}\n"
        f"verified_against: {verified or commit or ''}\n"
        "sparse: [/ppcls/, /tools/, /requirements.txt, /setup.py, /dataset/]\n"
    )
    return root


def make_archive(source: Path, out: Path, top: str = "PaddleClas-release-2.6") -> Path:
    """Pack the files of ``source`` (no .git) under one top directory, as GitHub downloads do."""
    files = [p for p in sorted(source.rglob("*")) if p.is_file() and ".git" not in p.relative_to(source).parts]
    if out.name.endswith(".zip"):
        with zipfile.ZipFile(out, "w") as bundle:
            for path in files:
                bundle.write(path, f"{top}/{path.relative_to(source).as_posix()}")
    else:
        with tarfile.open(out, "w:gz") as tar:
            for path in files:
                tar.add(path, f"{top}/{path.relative_to(source).as_posix()}")
    return out


def make_bare_mirror(source: Path, out: Path, *, branch: str | None = "release/2.6", allow_filter: bool = True,
                     refuse_blob_filter: bool = False) -> Path:
    """A bare mirror of ``source`` (a git repo) as a plain server would hold it.

    ``branch`` None leaves only the default branch (a mirror of develop); ``allow_filter`` False is a
    server without partial-clone support; ``refuse_blob_filter`` makes it refuse blob:none outright.
    """
    git("clone", "-q", "--bare", str(source), str(out))
    if branch is None:
        for name in git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=out).splitlines():
            if name == "release/2.6":
                git("branch", "-q", "-m", name, "develop", cwd=out)
                git("symbolic-ref", "HEAD", "refs/heads/develop", cwd=out)
    git("config", "uploadpack.allowFilter", "true" if allow_filter else "false", cwd=out)
    if refuse_blob_filter:
        git("config", "uploadpackfilter.blob:none.allow", "false", cwd=out)
    return out


def make_git_archive(repo: Path, commit: str, out: Path) -> Path:
    """``git archive`` of ``commit``: a tar whose pax header comment is the commit id."""
    git("archive", "--format=tar.gz", "--prefix=PaddleClas-x/", "-o", str(out), commit, cwd=repo)
    return out
