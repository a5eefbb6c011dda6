"""Open images in a process pool and report the ones that cannot be decoded.

A truncated JPEG passes every listing check and then kills a data-loader worker hours into a run.
Decoding is CPU-bound, so it runs in worker processes; it is opt-in (``--decode N``) because decoding
all 1.33 million ImageNet images takes hours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import TypeVar
from concurrent.futures import ProcessPoolExecutor

from repro.core.files import NotRegularFile, open_regular
from tqdm import tqdm

T = TypeVar("T")

# Below this many images a pool costs more to start than it saves.
POOL_THRESHOLD = 64
# One image decodes in milliseconds; a decoder stuck on a strange file must not stall the check.
DECODE_TIMEOUT_S = 30.0


class DecodeTimeout(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise ``DecodeTimeout`` after ``seconds`` (SIGALRM: only in a process's main thread, which is
    where both the check and the pool's workers run; elsewhere there is no deadline)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(*_: object) -> None:
        raise DecodeTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def decode_error(path: str, timeout: float = DECODE_TIMEOUT_S) -> str | None:
    """Why ``path`` cannot be decoded, or None if it can; only a regular file is read (``open_regular``).
    Pillow's full ``load()`` is strict (a truncated file raises), where upstream's OpenCV returns a partly
    grey image for some truncations: strict is what a check should be."""
    from PIL import Image  # heavy: Pillow loads its image plugins; only decoding needs it

    try:
        fd, _ = open_regular(path)
    except NotRegularFile as error:
        return f"{error.kind}, not an image file"
    except OSError as error:
        return f"cannot open: {error.strerror or error}"
    handle = os.fdopen(fd, "rb")
    try:
        with handle, deadline(timeout), Image.open(handle) as image:
            image.load()
            if image.width < 1 or image.height < 1:
                return "image has no pixels"
    except DecodeTimeout:
        return f"decoding took longer than {timeout:g} s"
    except Exception as error:  # noqa: BLE001 - any decoder failure means "unreadable"
        return f"{type(error).__name__}: {error}".splitlines()[0][:200]
    return None


def sample_evenly(paths: Sequence[T], count: int) -> list[T]:
    """``count`` paths spread over the whole list (all of them if count < 0 or too large): a corrupt
    region (one bad class directory, one failed copy batch) is likelier hit than by the first N."""
    if count < 0 or count >= len(paths):
        return list(paths)
    if count == 0:
        return []
    step = len(paths) / count
    return [paths[int(i * step)] for i in range(count)]


def decode_errors(paths: Sequence[str]) -> list[tuple[str, str]]:
    """(path, reason) for every path that does not decode, in input order."""
    if len(paths) < POOL_THRESHOLD:
        results = [decode_error(path) for path in paths]
    else:
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            results = list(tqdm(pool.map(decode_error, paths, chunksize=32), total=len(paths), desc="decoding",
                                unit="img", disable=None, leave=False))
    return [(path, reason) for path, reason in zip(paths, results) if reason is not None]
