"""A PaddleClas ``.tar.gz``/``.zip`` for machines without a git server: the pin's sparse paths only, a single
top directory stripped, nothing outside the destination. ``git archive`` output (GitHub's and Gitee's
downloads) carries its commit id, used when ``--commit`` is not given."""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.upstream.git import is_full_sha


def in_sparse(name: str, patterns: tuple[str, ...]) -> bool:
    """No-cone patterns as the pin writes them: ``/dir/`` matches below dir, ``/file`` matches file."""
    anchored = [pattern.lstrip("/") for pattern in patterns]
    return any(name == path or path.endswith("/") and (name + "/").startswith(path) for path in anchored)


def _safe_relative(name: str) -> PurePosixPath | None:
    path = PurePosixPath(name)
    return None if path.is_absolute() or ".." in path.parts or not path.parts else path


def _unsafe(archive: Path, name: str, why: str) -> ReproError:
    return ReproError(f"{archive.name} holds an unsafe entry {name!r} ({why}): refusing to extract it; download the"
                      " archive from the PaddleClas project again", EXIT_BAD_INPUT)


def _strip_checked(archive: Path, names: list[str]) -> int:
    """1 when every entry sits under one top directory (GitHub's ``PaddleClas-<ref>/``), else 0; one entry
    absolute or climbing out with ``..`` means the archive is not upstream's: all of it is refused."""
    for name in names:
        if _safe_relative(name) is None and name.strip("/"):
            raise _unsafe(archive, name, "a path outside the tree")
    tops = {PurePosixPath(n).parts[0] for n in names if PurePosixPath(n).parts}
    nested = any(len(PurePosixPath(n).parts) > 1 for n in names)
    return 1 if len(tops) == 1 and nested else 0


def _inner(name: str, strip: int, patterns: tuple[str, ...]) -> str | None:
    """Where an entry lands once the top directory is stripped, or None when it is not extracted."""
    relative = _safe_relative(name)
    if relative is None or len(relative.parts) <= strip:
        return None
    inner = _stripped(name, strip)
    return inner if in_sparse(inner, patterns) else None


def _stripped(name: str, strip: int) -> str:
    """Where an entry lands once the top directory is stripped (links resolve from there)."""
    parts = PurePosixPath(name).parts[strip:]
    return PurePosixPath(*parts).as_posix() if parts else "."


def _check_link(archive: Path, name: str, target: str) -> None:
    """A link must point inside the tree (relative to where it sits, as the OS resolves it)."""
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise _unsafe(archive, name, f"a link pointing outside the tree, to {target}")


def extract_archive(archive: Path, dest: Path, patterns: tuple[str, ...]) -> str | None:
    """Extract the sparse paths of ``archive`` into the new directory ``dest``; return its embedded commit."""
    name = archive.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return _extract_tar(archive, dest, patterns)
    if name.endswith(".zip"):
        return _extract_zip(archive, dest, patterns)
    raise ReproError(f"{archive} is neither .tar.gz nor .zip: download the PaddleClas archive as one of those", EXIT_BAD_INPUT)


def _embedded_commit(comment: str | bytes | None) -> str | None:
    if isinstance(comment, bytes):
        comment = comment.decode("ascii", errors="replace")
    comment = (comment or "").strip().lower()
    return comment if is_full_sha(comment) else None


def _extract_tar(archive: Path, dest: Path, patterns: tuple[str, ...]) -> str | None:
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            strip = _strip_checked(archive, [m.name for m in members])
            for member in members:
                if member.issym():
                    _check_link(archive, _stripped(member.name, strip), member.linkname)
                elif member.islnk() and _safe_relative(member.linkname) is None:  # hard links name a path from the root
                    raise _unsafe(archive, member.name, f"a hard link to {member.linkname}, outside the tree")
            chosen = []
            for member in members:
                inner = _inner(member.name, strip, patterns)
                if inner is not None and (member.isfile() or member.issym() or member.isdir()):
                    member.name = inner
                    chosen.append(member)
            dest.mkdir(parents=True)
            tar.extractall(dest, members=chosen, filter="data")
            return _embedded_commit(tar.pax_headers.get("comment"))
    except tarfile.ReadError as error:  # its text lists every compression tried, on several lines
        raise ReproError(f"{archive} is not a tar archive or is damaged: download it again", EXIT_BAD_INPUT) from error
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ReproError(f"cannot read {archive} ({' '.join(str(error).split())}): download it again",
                         EXIT_BAD_INPUT) from error


def _extract_zip(archive: Path, dest: Path, patterns: tuple[str, ...]) -> str | None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            infos = bundle.infolist()
            strip = _strip_checked(archive, [i.filename for i in infos])
            links = {}
            for info in infos:
                if stat.S_ISLNK(info.external_attr >> 16):
                    links[info.filename] = bundle.read(info).decode("utf-8", errors="replace")
                    _check_link(archive, _stripped(info.filename, strip), links[info.filename])
            dest.mkdir(parents=True)
            for info in infos:
                inner = _inner(info.filename, strip, patterns)
                if inner is None or info.is_dir():
                    continue
                target = dest / inner
                target.parent.mkdir(parents=True, exist_ok=True)
                if info.filename in links:  # checked above to point inside the tree
                    os.symlink(links[info.filename], target)
                    continue
                target.write_bytes(bundle.read(info))
                mode = (info.external_attr >> 16) & 0o777
                if mode and stat.S_IMODE(mode) & 0o111:
                    os.chmod(target, 0o755)
            return _embedded_commit(bundle.comment)
    except (zipfile.BadZipFile, OSError) as error:
        raise ReproError(f"cannot read {archive} ({' '.join(str(error).split())}): download it again",
                         EXIT_BAD_INPUT) from error
