"""Make a tiny dataset in exactly the ImageNet layout, for smoke runs that must finish in minutes.

The smoke run must exercise upstream's real ``ImageNetDataset`` path unchanged, so the tiny set uses
wnid-style class directories, ``.JPEG`` files and both list files. Synthetic images must be
*learnable*: random noise gives chance accuracy and proves nothing, so each class gets its own hue
and its own stripe orientation (separable even in a 32-pixel crop) plus per-pixel noise.
"""

from __future__ import annotations

import colorsys
import contextlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from repro.dataset import layout
from repro.dataset.listfile import ListFile, parse_list_file
from repro.dataset.problems import Problems
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, ReproError
from repro.core.files import read_text_bounded, write_text_atomic

MARKER = ".repro-tiny.json"
MARKER_TOOL = "repro dataset make-tiny"
MARKER_VERSION = 1
JPEG_QUALITY = 90
# make-tiny is for smoke runs and tests: bounds that keep it to seconds (a typo of 100000 classes
# ran for minutes); a real dataset comes from `repro dataset prepare`.
MAX_CLASSES = 1000
MAX_PER_CLASS = 1000
MIN_SIZE, MAX_SIZE = 8, 1024
MAX_IMAGES = 50_000
# Stripe period in pixels: several periods fit in a 32-pixel crop.
STRIPE_PERIOD = 8.0
NOISE_STD = 14.0


@dataclass(frozen=True)
class TinyParams:
    classes: int
    train_per_class: int
    val_per_class: int
    size: int
    seed: int
    source: str | None


def is_tiny_dataset(path: Path) -> bool:
    """True if ``path`` holds a make-tiny marker: it may be rewritten by make-tiny."""
    try:
        data = json.loads(read_text_bounded(Path(path) / MARKER))
    except (OSError, ValueError, ReproError):
        return False
    return isinstance(data, dict) and data.get("tool") == MARKER_TOOL


def _write_marker(out: Path, params: TinyParams, files: list[str], complete: bool) -> None:
    data = {"tool": MARKER_TOOL, "version": MARKER_VERSION, "complete": complete, "params": asdict(params),
            "files": files}
    write_text_atomic(out / MARKER, json.dumps(data, indent=1, sort_keys=True) + "\n")


def _remove_previous(out: Path) -> None:
    """Delete the files a previous make-tiny recorded, then the directories they leave empty."""
    data = json.loads(read_text_bounded(out / MARKER))
    out_real = os.path.realpath(out)
    directories: set[Path] = set()
    for rel in data.get("files", []):
        target = out / rel
        # Never follow a (tampered) marker outside OUT.
        if not os.path.realpath(target).startswith(out_real + os.sep):
            continue
        if target.is_file() and not target.is_symlink():
            target.unlink()
        directories.update(parent for parent in target.parents if out in parent.parents)
    for directory in sorted(directories, key=lambda item: len(item.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: it holds something make-tiny did not write
            directory.rmdir()


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ReproError(f"{out} exists and is not a directory; choose a new or empty directory for make-tiny",
                         EXIT_CONFLICT)
    if out.is_dir() and any(out.iterdir()):
        if not is_tiny_dataset(out):
            raise ReproError(f"{out} is not empty and is not a make-tiny output (no {MARKER}); nothing was"
                             " written: choose a new or empty directory", EXIT_CONFLICT)
        _remove_previous(out)
    out.mkdir(parents=True, exist_ok=True)


def synth_image(index: int, classes: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """One HxWx3 uint8 image of class ``index``: its hue, its stripe angle, a random phase, noise."""
    angle = math.pi * index / max(classes, 1)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = rng.uniform(0, 2 * math.pi)
    wave = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / STRIPE_PERIOD + phase)
    shade = np.where(wave >= 0, 1.0, 0.6)[..., None]
    brightness = rng.uniform(0.9, 1.1)
    colour = np.array(colorsys.hsv_to_rgb(index / classes, 0.85, 0.9)) * 255.0
    image = colour[None, None, :] * shade * brightness
    image = image + rng.normal(0.0, NOISE_STD, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _save_jpeg(image, path: Path) -> None:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=JPEG_QUALITY)


def _write_lists(out: Path, train: list[tuple[str, int]], val: list[tuple[str, int]]) -> None:
    for name, entries in ((layout.TRAIN_LIST, train), (layout.VAL_LIST, val)):
        text = "".join(f"{path}{layout.DELIMITER}{label}\n" for path, label in entries)
        (out / name).write_text(text, encoding="utf-8", newline="\n")


def _synthetic_plan(params: TinyParams) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    names = [f"n0{label + 1:07d}" for label in range(params.classes)]  # wnid-style, sorting in label order
    train = [(f"{layout.TRAIN_DIR}/{name}/{name}_{i + 1}.JPEG", label)
             for label, name in enumerate(names) for i in range(params.train_per_class)]
    val = [(f"{layout.VAL_DIR}/{name}/ILSVRC2012_val_{label * params.val_per_class + i + 1:08d}.JPEG", label)
           for label, name in enumerate(names) for i in range(params.val_per_class)]
    return train, val


def _write_synthetic(out: Path, params: TinyParams, train: list, val: list) -> None:
    from PIL import Image  # heavy: Pillow, only to write the JPEGs

    height = params.size
    width = params.size * 10 // 9  # not square, so resize/crop code paths see an aspect ratio
    for split_number, entries in enumerate((train, val)):
        for number, (path, label) in enumerate(entries):
            # One generator per image: the same seed gives the same pixels whatever the order.
            rng = np.random.default_rng([params.seed, split_number, number])
            _save_jpeg(Image.fromarray(synth_image(label, params.classes, height, width, rng), "RGB"), out / path)


def _read_source_list(source: Path, name: str) -> ListFile:
    path = source / name
    if not path.is_file():
        raise ReproError(f"--from {source}: {name} is missing; pass an ImageNet root", EXIT_BAD_INPUT)
    listing = parse_list_file(path, 2**62, Problems())
    if not listing.paths:
        raise ReproError(f"--from {source}: {name} has no usable entries", EXIT_BAD_INPUT)
    return listing


def _pick(listing: ListFile, label: int, count: int, rng: np.random.Generator, source: Path) -> list[str]:
    paths = [path for path, own in zip(listing.paths, listing.labels) if own == label]
    if len(paths) < count:
        raise ReproError(f"--from {source}: {listing.name} has {len(paths)} entries of label {label}, fewer than the"
                         f" {count} asked for; lower --train-per-class/--val-per-class", EXIT_BAD_INPUT)
    chosen = sorted(rng.choice(len(paths), size=count, replace=False))
    return [paths[i] for i in chosen]


def _sampled_plan(params: TinyParams, source: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Pick classes and files from a real tree; labels renumbered 0..classes-1 in original order."""
    train_list = _read_source_list(source, layout.TRAIN_LIST)
    val_list = _read_source_list(source, layout.VAL_LIST)
    labels = sorted(set(train_list.labels))
    if len(labels) < params.classes:
        raise ReproError(f"--from {source}: only {len(labels)} classes in {layout.TRAIN_LIST}, asked for"
                         f" {params.classes}; lower --classes", EXIT_BAD_INPUT)
    rng = np.random.default_rng(params.seed)
    chosen = sorted(int(labels[i]) for i in rng.choice(len(labels), size=params.classes, replace=False))
    train: list[tuple[str, int]] = []
    val: list[tuple[str, int]] = []
    for new_label, old_label in enumerate(chosen):
        train += [(path, new_label) for path in _pick(train_list, old_label, params.train_per_class, rng, source)]
        val += [(path, new_label) for path in _pick(val_list, old_label, params.val_per_class, rng, source)]
    return train, val


def _copy_resized(source: Path, out: Path, entries: list[tuple[str, int]], size: int) -> None:
    """Copy each image with its shorter side reduced to ``size``: the smoke run decodes less."""
    from PIL import Image  # heavy: Pillow, only to write the JPEGs

    for path, _ in entries:
        try:
            with Image.open(source / path) as image:
                image = image.convert("RGB")
                scale = size / min(image.size)
                if scale < 1:
                    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                    image = image.resize(new_size, Image.BILINEAR)
                _save_jpeg(image, out / path)
        except OSError as error:
            raise ReproError(f"--from {source}: cannot read {path} ({error}); run `repro dataset check {source}`",
                             EXIT_BAD_INPUT) from error


def make_tiny(out: Path, classes: int = 4, train_per_class: int = 32, val_per_class: int = 8, size: int = 72,
              seed: int = 0, source: Path | None = None) -> Path:
    """Write the tiny dataset to ``out`` (new, empty or a previous make-tiny output) and return it."""
    for name, value, low, high in (
        ("--classes", classes, 1, MAX_CLASSES),
        ("--train-per-class", train_per_class, 1, MAX_PER_CLASS),
        ("--val-per-class", val_per_class, 1, MAX_PER_CLASS),
        ("--size", size, MIN_SIZE, MAX_SIZE),
    ):
        if not low <= value <= high:
            raise ReproError(f"{name} must lie in {low}..{high}, got {value}", EXIT_BAD_INPUT)
    images = classes * (train_per_class + val_per_class)
    if images > MAX_IMAGES:
        raise ReproError(f"{classes} classes x {train_per_class + val_per_class} images is {images:,} images, more than"
                         f" make-tiny writes ({MAX_IMAGES:,}); use fewer classes or images per class, or"
                         " `repro dataset prepare` for a real dataset", EXIT_BAD_INPUT)
    out = Path(out).expanduser().absolute()
    source_path = Path(source).expanduser().absolute() if source is not None else None
    if source_path is not None and (source_path == out or source_path in out.parents):
        raise ReproError(f"OUT {out} must not be inside --from {source_path}", EXIT_CONFLICT)
    params = TinyParams(classes, train_per_class, val_per_class, size, seed, str(source_path) if source_path else None)
    train, val = _sampled_plan(params, source_path) if source_path is not None else _synthetic_plan(params)
    _prepare_out(out)
    files = [layout.TRAIN_LIST, layout.VAL_LIST] + [path for path, _ in train + val]
    _write_marker(out, params, files, complete=False)
    if source_path is not None:
        _copy_resized(source_path, out, train + val, size)
    else:
        _write_synthetic(out, params, train, val)
    _write_lists(out, train, val)
    _write_marker(out, params, files, complete=True)
    return out
