"""``repro dataset prepare``: ImageNet as downloaded -> the layout upstream reads, then checked."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from repro.dataset import layout
from repro.dataset.prepare_sources import ClassJob, Source, WNID_PATTERN, bad
from repro.dataset.tar_stream import NotPlain, plain_members
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_DISK, EXIT_PREFLIGHT, ReproError
from repro.core.files import LIST_FILE_LIMIT, read_text_bounded, write_text_atomic
from tqdm import tqdm

STATE_DIR = ".repro-prepare"
OWNER = "owner.json"
JOURNALS = "writing"  # .repro-prepare/writing/<job key>.txt: the files a job is writing, one relative path a line
TOOL = "repro dataset prepare"
VERSION = 1
PARTIAL = ".partial"
# File system overhead per image (a block rounding, a directory entry) on top of the tar bytes.
SPACE_MARGIN = 1.02
CHUNK = 1 << 20


@dataclass
class Prepared:
    out: Path
    classes: int
    train_images: int
    val_images: int
    skipped: int


# --- OUT: ownership, records ----------------------------------------------------------------------
# Records are written atomically without fsync: on ext4 that would force the journal to write out every
# image written so far, and a rerun verifies each recorded file's size anyway (what a crash can leave short).

def check_apart(out: Path, source: Source) -> None:
    """Refuse an OUT inside what the source reads (its root, archives, any class directory, followed
    through links) or a source inside OUT: prepare would write into its own input."""
    target = Path(os.path.realpath(out))
    reads = {Path(path) for path in source.reads}
    reads |= {Path(os.path.realpath(os.path.dirname(job.files[0][0]))) for job in source.jobs if job.files}
    for path in sorted(reads):
        if target == path or path in target.parents:
            raise ReproError(f"{out} lies inside the source ({path}), so prepare would write into what it reads; "
                             "choose an OUT outside the source", EXIT_BAD_INPUT)
        if target in path.parents:
            raise ReproError(f"the source {path} lies inside {out}, so prepare would write around what it reads; "
                             "choose an OUT that does not hold the source", EXIT_BAD_INPUT)


def claim_out(out: Path, source: Source) -> None:
    """Make OUT ours: new or empty, or our own earlier output of the same source; else refuse."""
    if out.exists() and not out.is_dir():
        raise ReproError(f"{out} exists and is not a directory; choose a new directory for prepare", EXIT_CONFLICT)
    owner = out / STATE_DIR / OWNER
    if out.is_dir() and any(out.iterdir()):
        try:
            data = json.loads(read_text_bounded(owner))
        except (OSError, ValueError, ReproError):
            data = None
        if not isinstance(data, dict) or data.get("tool") != TOOL:
            example = sorted(os.listdir(out))[0]
            raise ReproError(f"{out} holds files prepare did not write (e.g. {example}); nothing was touched:"
                             " choose a new or empty directory", EXIT_CONFLICT)
        if data.get("source") != source.identity:
            raise ReproError(f"{out} holds a prepare of another source ({data.get('source')}); choose a new"
                             " directory or rerun with the original source", EXIT_CONFLICT)
        return
    (out / STATE_DIR / "done").mkdir(parents=True, exist_ok=True)
    write_text_atomic(owner, json.dumps({"tool": TOOL, "version": VERSION, "source": source.identity}, indent=1) + "\n")


def _done_path(out: Path, job: ClassJob) -> Path:
    return out / STATE_DIR / "done" / f"{job.key}.json"


def _journal_path(out: Path, job: ClassJob) -> Path:
    return out / STATE_DIR / JOURNALS / f"{job.key}.txt"


def _written_by_us(out: Path, job: ClassJob) -> set[str]:
    """Paths (relative to ``OUT/<split>``, as in the done record) this job's earlier attempts wrote."""
    ours: set[str] = set()
    try:
        ours.update(json.loads(read_text_bounded(_done_path(out, job)))["files"])
    except (OSError, ValueError, KeyError, TypeError, ReproError):
        pass
    try:
        ours.update(line for line in read_text_bounded(_journal_path(out, job), LIST_FILE_LIMIT).splitlines() if line)
    except (OSError, ValueError, ReproError):
        pass
    return ours


def _leftovers(out: Path, job: ClassJob) -> tuple[list[Path], list[Path], list[Path]]:
    """(files this job wrote, directories to remove once empty, files it did not write) in its
    ``.partial`` and final directories, left by an earlier attempt."""
    final = _job_dir(out, job)
    partial = final.with_name(final.name + PARTIAL)
    ours = _written_by_us(out, job)
    mine: list[Path] = []
    dirs: list[Path] = []
    foreign: list[Path] = []
    for base in (partial, final):
        if not base.is_dir() or base.is_symlink():
            continue
        prefix = f"{job.wnid}/" if job.val_tar is None else ""  # a class job's files sit in <wnid>/ itself
        for directory, subdirs, files in os.walk(base, topdown=False):
            rel_dir = os.path.relpath(directory, base)
            for name in files + [d for d in subdirs if os.path.islink(os.path.join(directory, d))]:
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                (mine if prefix + rel in ours else foreign).append(Path(directory, name))
            dirs.append(Path(directory))
    return mine, dirs, foreign


def refuse_foreign_leftovers(out: Path, todo: list[ClassJob]) -> None:
    """Before any job is redone: a file in its directories that prepare did not write stops the run."""
    for job in todo:
        foreign = _leftovers(out, job)[2]
        if foreign:
            raise ReproError(f"{foreign[0]} was not written by prepare, and redoing class {job.wnid} would delete it; "
                             f"move it out of {foreign[0].parent}, then rerun the same command", EXIT_CONFLICT)


def _clear_leftovers(out: Path, job: ClassJob) -> None:
    """Delete what an earlier attempt of ``job`` wrote (never another file), and its emptied directories."""
    mine, dirs, foreign = _leftovers(out, job)
    if foreign:  # appeared since the check: leave everything
        raise ReproError(f"{foreign[0]} was not written by prepare; move it out, then rerun the same command",
                         EXIT_CONFLICT)
    for path in mine:
        path.unlink(missing_ok=True)
    for directory in dirs:  # deepest first (os.walk bottom-up)
        with contextlib.suppress(FileNotFoundError):
            directory.rmdir()


def _job_dir(out: Path, job: ClassJob) -> Path:
    return out / job.split if job.val_tar is not None else out / job.split / job.wnid


def finished(out: Path, job: ClassJob) -> dict[str, int] | None:
    """The job's done record (relative path -> size) if every file in it is still there, else None."""
    try:
        record: dict[str, int] = json.loads(read_text_bounded(_done_path(out, job)))["files"]
    except (OSError, ValueError, KeyError, TypeError, ReproError):
        return None
    base = f"{out}/{job.split}/"
    try:
        intact = all(os.stat(base + rel).st_size == size for rel, size in record.items())
    except OSError:
        return None
    return record if intact else None


# --- the workers ----------------------------------------------------------------------------------

class _Slice(io.RawIOBase):
    """A read-only stream over bytes [offset, offset+size) of a file: one inner tar of the train tar."""

    def __init__(self, handle: io.BufferedReader, size: int) -> None:
        self._handle, self._left = handle, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        view = memoryview(buffer)[: self._left]
        count = self._handle.readinto(view)
        self._left -= count
        return count


def _member_name(member: tarfile.TarInfo, where: str, dest: str) -> str | None:
    """The plain file name to write, or None for a directory; path tricks and links are refused. Only the
    base name is used as a path, so a plain regular file's name is safe; anything else goes through tarfile's
    ``data`` filter, whose realpath calls would cost more than writing the image if every member took it."""
    name = member.name
    if "/" in name or name.startswith(".") or not member.isfile():
        try:
            member = tarfile.data_filter(member, dest)
        except tarfile.FilterError as error:
            raise bad(f"{where}: unsafe member {member.name!r} ({error}); pass the archive as downloaded") from None
        if member.isdir():
            return None
        name = os.path.basename(member.name)
        if not member.isfile() or name.startswith("."):
            raise bad(f"{where}: member {member.name!r} is not an image file; pass the archive as downloaded")
    return name


def _stream_members(tar: tarfile.TarFile, where: str, dest: str):  # type: ignore[no-untyped-def]
    """(name, bytes) for each image of a tar opened in streaming mode (one image in memory at a time)."""
    try:
        for member in tar:
            name = _member_name(member, where, dest)
            if name is not None:
                yield name, tar.extractfile(member).read()
    except (tarfile.ReadError, EOFError) as error:
        raise bad(f"{where}: truncated or damaged ({error}); pass the archive as downloaded (check its md5sum)") from None


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _write_new(path: str, data: bytes) -> int:
    """Write a new file (O_EXCL: never replace one, never follow a link); raw calls, no buffering."""
    descriptor = os.open(path, _NEW_FILE, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
    finally:
        os.close(descriptor)
    return len(data)


def _tar_members(tar_path: str, offset: int, size: int, where: str, dest: str, plain: bool):  # type: ignore[no-untyped-def]
    """(name, bytes) of each image in the tar at bytes [offset, offset+size) of ``tar_path``: the
    fast reader, or ``tarfile`` (with the data filter) when ``plain``."""
    with open(tar_path, "rb") as handle:
        handle.seek(offset)
        stream = io.BufferedReader(_Slice(handle, size), CHUNK)
        if not plain:
            yield from plain_members(stream.read)
            return
        try:
            tar = tarfile.open(fileobj=stream, mode="r|")
        except tarfile.ReadError as error:
            raise bad(f"{where}: not a tar ({error}); pass the archive as downloaded") from None
        with tar:
            yield from _stream_members(tar, where, dest)


def _extract_tar(job: ClassJob, partial: Path, note, plain: bool = False) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Write the images of a class tar (or the val tar, into WNID directories by the devkit's
    labels), each named to ``note`` before it is created; whatever the fast reader declines is redone
    from the start with ``tarfile``."""
    if job.inner_tar is not None:
        tar_path, offset, size = job.inner_tar.tar, job.inner_tar.offset, job.inner_tar.size
        where = f"{tar_path} (class tar {job.wnid}.tar)"
    else:
        assert job.val_tar is not None
        tar_path, offset, size, where = job.val_tar, 0, os.path.getsize(job.val_tar), job.val_tar
        for wnid in set(job.val_wnids.values()):
            (partial / wnid).mkdir()
    written: dict[str, int] = {}
    try:
        for name, data in _tar_members(tar_path, offset, size, where, str(partial), plain):
            wnid = job.wnid if job.val_tar is None else job.val_wnids.get(name)
            if wnid is None:
                raise bad(f"{where}: {name} has no label; pass the val tar that matches the devkit")
            rel = f"{wnid}/{name}"
            if rel in written:
                raise bad(f"{where}: {name} appears twice; re-download the archive")
            note(rel)
            written[rel] = _write_new(f"{partial}/{name}" if job.val_tar is None else f"{partial}/{rel}", data)
    except NotPlain:  # undo exactly what this attempt wrote, then again with tarfile
        for rel in written:
            os.unlink(f"{partial}/{rel.split('/', 1)[1]}" if job.val_tar is None else f"{partial}/{rel}")
        for wnid in set(job.val_wnids.values()) if job.val_tar is not None else ():
            (partial / wnid).rmdir()
        return _extract_tar(job, partial, note, plain=True)
    return written


def _copy_files(job: ClassJob, partial: Path, link: bool, note) -> dict[str, int]:  # type: ignore[no-untyped-def]
    written: dict[str, int] = {}
    for source, name in job.files:
        target = partial / name
        note(f"{job.wnid}/{name}")
        if not link:
            shutil.copyfile(source, target)
        else:
            try:
                os.link(source, target)
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                os.symlink(os.path.abspath(source), target)
        written[f"{job.wnid}/{name}"] = os.stat(target).st_size
    return written


def run_job(out: str, job: ClassJob, link: bool) -> tuple[str, dict[str, int]]:
    """Write one class (or the whole val tar) into ``<dir>.partial``, each file named in the job's journal
    first (ARCHITECTURE.md, ``repro.dataset.prepare``), rename it, record it done."""
    out_path = Path(out)
    final = _job_dir(out_path, job)
    partial = final.with_name(final.name + PARTIAL)
    _clear_leftovers(out_path, job)  # our own half-written work from an interrupted run
    partial.mkdir(parents=True)
    journal = _journal_path(out_path, job)
    journal.parent.mkdir(exist_ok=True)
    descriptor = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        note = lambda rel: os.write(descriptor, f"{rel}\n".encode())  # noqa: E731
        if job.inner_tar is not None or job.val_tar is not None:
            written = _extract_tar(job, partial, note)
        else:
            written = _copy_files(job, partial, link, note)
    finally:
        os.close(descriptor)
    if not written:
        raise bad(f"class {job.wnid} of {job.split} has no images; pass a complete source")
    os.rename(partial, final)
    write_text_atomic(_done_path(out_path, job), json.dumps({"files": written}) + "\n")
    journal.unlink()  # the done record names the same files from now on
    return job.key, written


# --- the whole job --------------------------------------------------------------------------------

def check_free_space(out: Path, todo: list[ClassJob], link: bool) -> None:
    needed = 0 if link else int(sum(job.bytes for job in todo) * SPACE_MARGIN)
    free = shutil.disk_usage(out).free
    if needed > free:
        raise ReproError(f"{out}: needs {needed / 1e9:.1f} GB but its disk has {free / 1e9:.1f} GB free;"
                         " free space there or choose OUT on a bigger disk", EXIT_PREFLIGHT)


def _run_all(out: Path, todo: list[ClassJob], jobs: int, link: bool, progress: bool) -> dict[str, dict[str, int]]:
    """Run the jobs (in a process pool unless ``jobs`` is 1); job key -> the files it wrote."""

    class Bar(tqdm):  # type: ignore[type-arg]
        # No monitor thread: with a second thread alive the check that follows would not fork its
        # lister (fork copies one thread only), and would take twice as long at ImageNet size.
        monitor_interval = 0

    records: dict[str, dict[str, int]] = {}
    try:
        with Bar(total=len(todo), unit="class", disable=not progress, desc="prepare") as bar, \
                (ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else contextlib.nullcontext()) as pool:
            if pool is None:
                results: Iterator[tuple[str, dict[str, int]]] = (run_job(str(out), job, link) for job in todo)
            else:
                results = (done.result() for done in as_completed([pool.submit(run_job, str(out), job, link)
                                                                    for job in todo]))
            try:
                for key, written in results:
                    records[key] = written
                    bar.update()
            except BaseException:
                if pool is not None:
                    pool.shutdown(cancel_futures=True)  # the classes not started yet
                raise
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ReproError(f"{out}: the disk filled up while writing ({error.strerror}); free space there and"
                             " rerun the same command (finished classes are kept)", EXIT_DISK) from None
        raise
    return records


def write_lists(out: Path, source: Source, records: dict[str, dict[str, int]]) -> tuple[int, int]:
    """train_list.txt and val_list.txt from the done records, each replaced atomically."""
    label = {wnid: index for index, wnid in enumerate(source.wnids)}
    counts = []
    for split, list_name, split_dir in layout.SPLITS:
        rels = sorted((rel for key, record in records.items() if key.startswith(split + "-") for rel in record),
                      key=lambda rel: (rel.rsplit("/", 1)[1], rel) if split == "val" else rel)
        for rel in rels:
            if not WNID_PATTERN.fullmatch(rel.split("/", 1)[0]):
                raise bad(f"{split}/{rel}: not in a WNID directory; rerun prepare into a new directory")
        lines = [f"{split_dir}/{rel} {label[rel.split('/', 1)[0]]}\n" for rel in rels]
        write_text_atomic(out / list_name, "".join(lines))
        counts.append(len(lines))
    return counts[0], counts[1]


def prepare(out: Path, source: Source, jobs: int, link: bool = False, progress: bool = True) -> Prepared:
    """Write OUT from ``source``; returns what was written (the caller runs the check)."""
    if link and not source.linkable:
        raise bad(f"--link needs an extracted source, not {source.kind}; drop --link")
    if jobs < 1:
        raise bad(f"--jobs must be at least 1, got {jobs}")
    out = Path(out).expanduser()
    check_apart(out, source)
    claim_out(out, source)
    records: dict[str, dict[str, int]] = {}
    todo: list[ClassJob] = []
    for job in source.jobs:
        record = finished(out, job)
        if record is None:
            todo.append(job)
        else:
            records[job.key] = record
    refuse_foreign_leftovers(out, todo)
    check_free_space(out, todo, link)
    records.update(_run_all(out, todo, jobs, link, progress))
    train, val = write_lists(out, source, records)
    return Prepared(out, len(source.wnids), train, val, len(source.jobs) - len(todo))
