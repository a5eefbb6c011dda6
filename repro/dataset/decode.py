"""Open images in a process pool and report the ones that cannot be decoded.

A truncated JPEG passes every listing check and then kills a data-loader worker hours into a run.
Decoding is CPU-bound, so it runs in worker processes; it is opt-in (``--decode N``) because decoding
all 1.33 million ImageNet images takes hours.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar
from concurrent.futures import ProcessPoolExecutor

T = TypeVar("T")

# Below this many images a pool costs more to start than it saves.
POOL_THRESHOLD = 64


def decode_error(path: str) -> str | None:
    """Why ``path`` cannot be decoded, or None if it can.

    Pillow's full ``load()`` is strict (a truncated file raises), where OpenCV, which upstream uses,
    silently returns a partly grey image for some truncations: strict is what a check should be.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.width < 1 or image.height < 1:
                return "image has no pixels"
    except Exception as error:  # noqa: BLE001 - any decoder failure means "unreadable"
        return f"{type(error).__name__}: {error}".splitlines()[0][:200]
    return None


def sample_evenly(paths: Sequence[T], count: int) -> list[T]:
    """``count`` paths spread over the whole list (all of them if count < 0 or too large).

    Spreading beats taking the first N: a corrupt region (one bad class directory, one failed copy
    batch) is more likely to be hit, and the choice is the same on every run.
    """
    if count < 0 or count >= len(paths):
        return list(paths)
    if count == 0:
        return []
    step = len(paths) / count
    return [paths[int(i * step)] for i in range(count)]


def decode_errors(paths: Sequence[str], workers: int | None = None) -> list[tuple[str, str]]:
    """(path, reason) for every path that does not decode, in input order."""
    from tqdm import tqdm

    if len(paths) < POOL_THRESHOLD:
        results = [decode_error(path) for path in paths]
    else:
        workers = workers or os.cpu_count() or 1
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(
                tqdm(
                    pool.map(decode_error, paths, chunksize=32),
                    total=len(paths),
                    desc="decoding",
                    unit="img",
                    disable=None,
                    leave=False,
                )
            )
    return [(path, reason) for path, reason in zip(paths, results) if reason is not None]
