"""What ``repro dataset prepare`` was given: the official archives, an extracted tree or Kaggle's layout.

Everything here only reads: tar headers (seeking past the data, never loading an archive), the
devkit's ``meta.mat`` and ground truth, directory listings. The result is a ``Source`` that names,
for every class, where its images come from and which WNID (and so which label) each val image has,
so a wrong label order is caught before 140 GB are written.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.core.files import LIST_FILE_LIMIT, SMALL_FILE_LIMIT, read_bytes_bounded, read_text_bounded

WNID_PATTERN = re.compile(r"n\d{8}")
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")
META_MAT = "data/meta.mat"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
KAGGLE_DATA = Path("ILSVRC") / "Data" / "CLS-LOC"
KAGGLE_SOLUTION = "LOC_val_solution.csv"
KAGGLE_SYNSETS = "LOC_synset_mapping.txt"


def bad(message: str) -> ReproError:
    return ReproError(message, EXIT_BAD_INPUT)


@dataclass(frozen=True)
class TarSlice:
    """One member of an uncompressed tar, by byte range, so a worker can stream it on its own."""

    tar: str
    offset: int
    size: int


@dataclass
class ClassJob:
    """Everything one worker needs to write ``OUT/<split>/<wnid>/`` (picklable, no open files)."""

    split: str
    wnid: str
    inner_tar: TarSlice | None = None  # a class tar inside the official train tar
    files: list[tuple[str, str]] = field(default_factory=list)  # (source path, name) to copy or link
    val_tar: str | None = None  # the whole official val tar (split "val", wnid "*")
    val_wnids: dict[str, str] = field(default_factory=dict)  # val tar member name -> WNID
    bytes: int = 0

    @property
    def key(self) -> str:
        return f"{self.split}-{self.wnid}" if self.val_tar is None else "val-tar"


@dataclass
class Source:
    """A detected source: its kind, the sorted WNIDs (label = index) and the jobs that write OUT."""

    kind: str
    summary: str
    wnids: list[str]
    jobs: list[ClassJob]
    linkable: bool
    identity: dict[str, object]
    reads: tuple[str, ...] = ()  # every path the source is read from (OUT may lie in none of them, nor they in OUT)


# --- devkit -------------------------------------------------------------------------------------

@dataclass
class Devkit:
    """The leaf synsets (ILSVRC2012_ID -> WNID) and the val ground truth (IDs in file order)."""

    id_to_wnid: dict[int, str]
    leaves: set[str]
    ground_truth: list[int] | None


def _devkit_files(devkit: Path) -> tuple[bytes | None, bytes | None]:
    """meta.mat and the ground truth from a devkit tarball or its extracted directory."""
    if devkit.is_dir():
        places = [(devkit / wanted, devkit / "ILSVRC2012_devkit_t12" / wanted) for wanted in (META_MAT, GROUND_TRUTH)]
        meta, truth = [next((path for path in pair if path.is_file()), None) for pair in places]
        return tuple(read_bytes_bounded(path, SMALL_FILE_LIMIT, what="devkit file") if path else None  # type: ignore
                     for path in (meta, truth))
    try:
        with tarfile.open(devkit, "r:*") as archive:
            meta = truth = None
            for member in archive:
                if member.isfile() and member.name.endswith("/" + META_MAT):
                    meta = archive.extractfile(member).read()  # small: ~2 MB
                elif member.isfile() and member.name.endswith("/" + GROUND_TRUTH):
                    truth = archive.extractfile(member).read()
            return meta, truth
    except (tarfile.TarError, EOFError, OSError) as error:
        raise bad(f"{devkit}: not a readable devkit archive ({error}); pass ILSVRC2012_devkit_t12.tar.gz"
                  " as downloaded") from None


def read_devkit(devkit: Path) -> Devkit:
    """The 1000 leaf classes of meta.mat (num_children == 0) and the val ground truth."""
    import scipy.io  # heavy: scipy, only to read the devkit's meta.mat

    meta, truth = _devkit_files(devkit)
    if meta is None:
        raise bad(f"{devkit}: holds no {META_MAT}; pass the ILSVRC2012 devkit (ILSVRC2012_devkit_t12.tar.gz)")
    try:
        synsets = scipy.io.loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
        rows = list(zip(synsets["ILSVRC2012_ID"], synsets["WNID"], synsets["num_children"]))
    except Exception as error:  # noqa: BLE001 - any malformed .mat is the same user problem
        raise bad(f"{devkit}: {META_MAT} is not the devkit's synsets table ({error}); re-download the devkit") from None
    id_to_wnid: dict[int, str] = {}
    leaves: set[str] = set()
    for synset_id, wnid, children in rows:
        if int(children) != 0:
            continue
        wnid = str(wnid)
        if not WNID_PATTERN.fullmatch(wnid):
            raise bad(f"{devkit}: {META_MAT} has WNID {wnid!r}, not like n01440764; re-download the devkit")
        if wnid in leaves or int(synset_id) in id_to_wnid:
            raise bad(f"{devkit}: {META_MAT} lists WNID {wnid} or ID {int(synset_id)} twice; re-download the devkit")
        id_to_wnid[int(synset_id)] = wnid
        leaves.add(wnid)
    if not id_to_wnid:
        raise bad(f"{devkit}: {META_MAT} has no leaf synsets (num_children 0); re-download the devkit")
    ground_truth = None
    if truth is not None:
        try:
            ground_truth = [int(line) for line in truth.decode("ascii").split()]
        except (UnicodeDecodeError, ValueError):
            raise bad(f"{devkit}: {GROUND_TRUTH} is not one ID per line; re-download the devkit") from None
        unknown = sorted(set(ground_truth) - id_to_wnid.keys())
        if unknown:
            raise bad(f"{devkit}: {GROUND_TRUTH} uses IDs {unknown[:5]} that are no leaf class in {META_MAT};"
                      " re-download the devkit")
    return Devkit(id_to_wnid, leaves, ground_truth)


def val_wnids_from_ground_truth(devkit: Devkit, names: list[str], where: str) -> dict[str, str]:
    """Val file name -> WNID: image N takes line N of the ground truth, mapped ID -> WNID."""
    truth = devkit.ground_truth
    if truth is None:
        raise bad(f"the devkit holds no {GROUND_TRUTH}, needed to label the flat val images in {where};"
                  " pass the full ILSVRC2012_devkit_t12.tar.gz with --devkit")
    result: dict[str, str] = {}
    for name in names:
        match = VAL_NAME.fullmatch(os.path.basename(name))
        if match is None:
            raise bad(f"{where}: {name} is not named like ILSVRC2012_val_00000001.JPEG; pass the official val images")
        number = int(match.group(1))
        if not 1 <= number <= len(truth):
            raise bad(f"{where}: {name} has no label (the ground truth has {len(truth):,} lines);"
                      " pass the devkit that belongs to these val images")
        result[name] = devkit.id_to_wnid[truth[number - 1]]
    if len(truth) != len(result):
        raise bad(f"the devkit's ground truth has {len(truth):,} labels but {where} holds {len(result):,} val"
                  " images; pass the matching val images and devkit")
    return result


# --- tars -----------------------------------------------------------------------------------------

def tar_members(path: Path, what: str) -> list[tarfile.TarInfo]:
    """The headers of an uncompressed tar (data is seeked over); truncation and non-tars refused."""
    fix = f"pass the {what} as downloaded (check its size and md5sum)"
    try:
        size = path.stat().st_size
        with tarfile.open(path, "r:") as archive:
            members = archive.getmembers()
    except (tarfile.TarError, EOFError) as error:
        raise bad(f"{path}: not a readable tar ({error}); {fix}") from None
    if not members:
        raise bad(f"{path}: an empty tar; {fix}")
    for member in members:
        if member.offset_data + member.size > size:
            raise bad(f"{path}: truncated (member {member.name} ends past the end of the file); {fix}")
    return members


def official_source(train_tar: Path, val_tar: Path, devkit_path: Path) -> Source:
    """The three files from image-net.org: a tar of class tars, a flat val tar, the devkit."""
    train_tar, val_tar = Path(train_tar).expanduser(), Path(val_tar).expanduser()
    for option, path in (("--train-tar", train_tar), ("--val-tar", val_tar)):
        if not path.is_file():
            raise bad(f"{option} {path}: no such file; pass the path to the downloaded file")
    devkit_path = Path(devkit_path).expanduser()
    if not devkit_path.exists():
        raise bad(f"--devkit {devkit_path}: no such file; pass ILSVRC2012_devkit_t12.tar.gz")
    devkit = read_devkit(devkit_path)
    leaves = devkit.leaves
    jobs: list[ClassJob] = []
    seen: set[str] = set()
    for member in tar_members(train_tar, "ILSVRC2012_img_train.tar"):
        stem = os.path.basename(member.name)
        if member.isdir():
            continue
        if not (member.isfile() and stem.endswith(".tar") and WNID_PATTERN.fullmatch(stem[:-4])):
            raise bad(f"{train_tar}: member {member.name} is not a class tar like n01440764.tar;"
                      " pass ILSVRC2012_img_train.tar (the train images, not another archive)")
        wnid = stem[:-4]
        if wnid in seen:
            raise bad(f"{train_tar}: class {wnid} appears twice; re-download the train tar")
        if wnid not in leaves:
            raise bad(f"{train_tar}: class {wnid} is not one of the devkit's {len(leaves)} classes;"
                      " pass the devkit that belongs to this train tar")
        seen.add(wnid)
        jobs.append(ClassJob("train", wnid, inner_tar=TarSlice(str(train_tar), member.offset_data, member.size),
                             bytes=member.size))
    missing = sorted(leaves - seen)
    if missing:
        raise bad(f"{train_tar}: lacks {len(missing)} of the devkit's classes ({', '.join(missing[:3])}, ...);"
                  " pass the complete train tar")
    val_members = [m for m in tar_members(val_tar, "ILSVRC2012_img_val.tar") if not m.isdir()]
    for member in val_members:
        if not member.isfile():
            raise bad(f"{val_tar}: member {member.name} is not a file; pass ILSVRC2012_img_val.tar")
    names = [os.path.basename(member.name) for member in val_members]
    if len(set(names)) != len(names):
        raise bad(f"{val_tar}: holds the same image name twice; re-download the val tar")
    val_wnids = val_wnids_from_ground_truth(devkit, names, str(val_tar))
    jobs.insert(0, ClassJob("val", "*", val_tar=str(val_tar), val_wnids=val_wnids,
                            bytes=sum(m.size for m in val_members)))
    summary = (f"official ILSVRC2012 archives: {len(seen)} class tars in {train_tar.name},"
               f" {len(names):,} val images in {val_tar.name}, labels via {devkit_path.name} meta.mat")
    identity = {"kind": "official", **{k: [str(p), p.stat().st_size] for k, p in
                                        (("train", train_tar), ("val", val_tar), ("devkit", devkit_path))}}
    return Source("official archives", summary, sorted(seen), jobs, linkable=False, identity=identity,
                  reads=tuple(str(p.resolve()) for p in (train_tar, val_tar, devkit_path)))


# --- extracted trees ------------------------------------------------------------------------------

def _listing(directory: Path) -> tuple[list[os.DirEntry[str]], list[os.DirEntry[str]]]:
    """(sub-directories, regular files) of ``directory``, following symlinks."""
    with os.scandir(directory) as iterator:
        entries = sorted(iterator, key=lambda entry: entry.name)
    return [entry for entry in entries if entry.is_dir()], [entry for entry in entries if entry.is_file()]


def _class_jobs(split: str, split_dir: Path) -> list[ClassJob]:
    dirs, files = _listing(split_dir)
    if files:
        raise bad(f"{split_dir}: mixes class directories with loose files ({files[0].name});"
                  " give one layout: images in <wnid>/ directories")
    jobs = []
    for entry in dirs:
        if not WNID_PATTERN.fullmatch(entry.name):
            raise bad(f"{split_dir}/{entry.name}: not a WNID like n01440764; move it out of {split_dir}")
        sub_dirs, class_files = _listing(Path(entry.path))
        if sub_dirs:
            raise bad(f"{entry.path}/{sub_dirs[0].name}: a directory inside a class; move it out")
        pairs = [(item.path, item.name) for item in class_files]
        jobs.append(ClassJob(split, entry.name, files=pairs, bytes=sum(item.stat().st_size for item in class_files)))
    return jobs


def _flat_val_jobs(val_dir: Path, val_wnids: dict[str, str]) -> list[ClassJob]:
    by_class: dict[str, ClassJob] = {}
    for name, wnid in sorted(val_wnids.items()):
        job = by_class.setdefault(wnid, ClassJob("val", wnid))
        source = val_dir / name
        job.files.append((str(source), name))
        job.bytes += source.stat().st_size
    return [by_class[wnid] for wnid in sorted(by_class)]


def _check_classes(train: list[ClassJob], val: list[ClassJob], known: set[str] | None, where: str) -> list[str]:
    wnids = [job.wnid for job in train]
    if not wnids:
        raise bad(f"{where}: no class directories under train/; pass the extracted ImageNet root")
    if known is not None:
        unknown = sorted(set(wnids) - known)
        if unknown:
            raise bad(f"{where}: train classes {unknown[:3]} are not among the {len(known)} classes of the"
                      " devkit/synset mapping; remove them or pass the matching devkit")
        missing = sorted(known - set(wnids))
        if missing:
            raise bad(f"{where}: train/ lacks {len(missing)} classes ({', '.join(missing[:3])}, ...); extract"
                      " the complete train set")
    extra = sorted({job.wnid for job in val} - set(wnids))
    if extra:
        raise bad(f"{where}: val classes {extra[:3]} have no train directory; pass a complete tree")
    return sorted(wnids)


def extracted_source(root: Path, devkit_path: Path | None) -> Source:
    """``ROOT/train/<wnid>/`` and ``ROOT/val/`` by class or flat (then labelled by the devkit)."""
    val_dir = root / "val"
    if not (root / "train").is_dir() or not val_dir.is_dir():
        raise bad(f"{root}: needs train/ and val/ directories (or Kaggle's {KAGGLE_DATA}); pass the"
                  " extracted ImageNet root")
    devkit = read_devkit(devkit_path) if devkit_path is not None else None
    train = _class_jobs("train", root / "train")
    val_subdirs, val_files = _listing(val_dir)
    if val_subdirs and val_files:
        raise bad(f"{val_dir}: mixes class directories ({val_subdirs[0].name}) with loose images"
                  f" ({val_files[0].name}); give one layout")
    if val_files:
        if devkit is None:
            raise bad(f"{val_dir}: flat val images need labels; add --devkit ILSVRC2012_devkit_t12.tar.gz")
        names = [entry.name for entry in val_files]
        val = _flat_val_jobs(val_dir, val_wnids_from_ground_truth(devkit, names, str(val_dir)))
        val_layout = f"{len(names):,} flat val images labelled via {Path(devkit_path).name} meta.mat"
    else:
        val = _class_jobs("val", val_dir)
        val_layout = f"val by class ({sum(len(job.files) for job in val):,} images)"
    wnids = _check_classes(train, val, devkit.leaves if devkit else None, str(root))
    summary = f"extracted tree {root}: {len(wnids)} train classes, {val_layout}"
    identity = {"kind": "extracted", "root": str(root.resolve())}
    reads = (root, *([Path(devkit_path)] if devkit_path is not None else []))
    return Source("extracted tree", summary, wnids, val + train, linkable=True, identity=identity,
                  reads=tuple(str(p.resolve()) for p in reads))


def kaggle_source(root: Path) -> Source:
    """Kaggle's ImageNet: ILSVRC/Data/CLS-LOC/{train,val}, LOC_val_solution.csv, LOC_synset_mapping.txt."""
    data = root / KAGGLE_DATA
    for needed in (root / KAGGLE_SOLUTION, root / KAGGLE_SYNSETS):
        if not needed.is_file():
            raise bad(f"{root}: Kaggle layout without {needed.name}; pass the complete Kaggle download")
    fix = "pass the Kaggle download unchanged (re-download it)"
    synsets = read_text_bounded(root / KAGGLE_SYNSETS, LIST_FILE_LIMIT, fix=fix)
    known = [line.split(" ", 1)[0] for line in synsets.splitlines() if line.strip()]
    if len(set(known)) != len(known) or not all(WNID_PATTERN.fullmatch(wnid) for wnid in known):
        raise bad(f"{root / KAGGLE_SYNSETS}: duplicate or malformed WNIDs; re-download it")
    train = _class_jobs("train", data / "train")
    val_subdirs, val_files = _listing(data / "val")
    if val_subdirs:
        raise bad(f"{data / 'val'}: expected Kaggle's flat val images, found {val_subdirs[0].name}/; pass the"
                  " Kaggle download unchanged")
    labels: dict[str, str] = {}
    solution = read_text_bounded(root / KAGGLE_SOLUTION, LIST_FILE_LIMIT, fix=fix)
    try:
        rows = list(csv.DictReader(io.StringIO(solution, newline="")))
    except csv.Error as error:
        raise bad(f"{root / KAGGLE_SOLUTION}: not a CSV file ({error}); {fix}") from None
    for row in rows:
        image, prediction = row.get("ImageId"), (row.get("PredictionString") or "").split()
        if not image or not prediction:
            raise bad(f"{root / KAGGLE_SOLUTION}: a row without ImageId or PredictionString; re-download it")
        if image in labels:
            raise bad(f"{root / KAGGLE_SOLUTION}: {image} is listed twice; re-download it")
        labels[image] = prediction[0]
    val_wnids: dict[str, str] = {}
    for entry in val_files:
        wnid = labels.get(entry.name.rsplit(".", 1)[0])
        if wnid is None:
            raise bad(f"{data / 'val' / entry.name}: has no label in {KAGGLE_SOLUTION}; pass the matching file")
        if wnid not in set(known):
            raise bad(f"{KAGGLE_SOLUTION}: {entry.name} is labelled {wnid}, not in {KAGGLE_SYNSETS}")
        val_wnids[entry.name] = wnid
    val = _flat_val_jobs(data / "val", val_wnids)
    wnids = _check_classes(train, val, set(known), str(root))
    summary = f"Kaggle layout {root}: {len(wnids)} train classes, {len(val_wnids):,} val images labelled via {KAGGLE_SOLUTION}"
    identity = {"kind": "kaggle", "root": str(root.resolve())}
    return Source("Kaggle layout", summary, wnids, val + train, linkable=True, identity=identity,
                  reads=(str(root.resolve()),))


def detect_source(source_dir: Path | None, train_tar: Path | None, val_tar: Path | None,
                  devkit: Path | None) -> Source:
    """Which layout was given; a mixture of two is refused in one line."""
    tars = [option for option, value in (("--train-tar", train_tar), ("--val-tar", val_tar)) if value]
    if source_dir is not None:
        if tars:
            raise bad(f"--from and {' '.join(tars)} mix an extracted tree with archives; pass one of them")
        root = Path(source_dir).expanduser()
        if not root.is_dir():
            raise bad(f"--from {root}: not a directory; pass the extracted ImageNet or Kaggle root")
        kaggle = (root / KAGGLE_DATA).is_dir() or (root / KAGGLE_SOLUTION).exists()
        plain = (root / "train").exists() or (root / "val").exists()
        if kaggle and plain:
            raise bad(f"{root}: holds both Kaggle's {KAGGLE_DATA} and train/ or val/; point --from at one of them")
        if kaggle:
            if devkit is not None:
                raise bad("--devkit with a Kaggle layout mixes two label sources; drop --devkit")
            return kaggle_source(root)
        return extracted_source(root, Path(devkit).expanduser() if devkit else None)
    if len(tars) != 2 or devkit is None:
        raise bad("pass --train-tar, --val-tar and --devkit together (the official archives), or --from DIR"
                  " (an extracted tree or the Kaggle layout)")
    return official_source(train_tar, val_tar, devkit)  # type: ignore[arg-type]
