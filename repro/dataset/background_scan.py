"""List the image tree in a forked child while this process parses the list files.

Listing 1.33 million directory entries and parsing two million-line list files each cost about as
much as ``find`` over the tree; one after the other they cannot meet issue 4's goal (1.5x ``find``).
Both are CPU-bound Python, so a thread would only trade the GIL back and forth (measured slower). A
forked child lists the tree on another core and hands back one pickled ``TreeScan``. (Spawning a
fresh interpreter instead was measured slower: its start-up costs more than the overlap saves.)

The result is exactly what ``scan_tree`` in this process returns (same function, same arguments),
so the findings never depend on whether the child was used; the caller scans in-process whenever
the child is not worth it (small lists), not safe (other threads running: ``fork`` copies only the
calling thread, and a lock held by another one would hang the child), or failed.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from pathlib import Path

from repro.dataset.problems import Problems
from repro.dataset.tree_scan import TreeScan, scan_tree

# Below this much list text (~30,000 lines) the fork costs more than the overlap saves.
MIN_LIST_BYTES = 1_000_000


class BackgroundScan:
    """``scan_tree(root, tops)`` running in a child process; ``result()`` collects it.

    ``result()`` returns None when no child ran or it could not deliver; the caller then scans
    itself. ``cancel()`` reaps a child whose result is no longer wanted.
    """

    def __init__(self, root: Path, tops: set[str], list_bytes: int, enabled: bool = True) -> None:
        self.tops = set(tops)
        self._pid = 0
        self._read_fd = -1
        if not enabled or list_bytes < MIN_LIST_BYTES or not hasattr(os, "fork") or threading.active_count() > 1:
            return
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            return
        if pid == 0:
            os.close(read_fd)
            _child(root, self.tops, write_fd)  # never returns
        os.close(write_fd)
        self._pid, self._read_fd = pid, read_fd

    @property
    def started(self) -> bool:
        return self._pid != 0

    def result(self) -> tuple[TreeScan, Problems] | None:
        """The child's scan and the problems it found, or None."""
        if not self.started:
            return None
        try:
            with os.fdopen(self._read_fd, "rb") as pipe:
                payload = pipe.read()
        finally:
            self._read_fd = -1
            status = self._reap()
        if status != 0 or not payload:
            return None
        try:
            scan, problems = pickle.loads(payload)
        except Exception:  # a truncated payload: treat it like a failed child
            return None
        return scan, problems

    def cancel(self) -> None:
        if not self.started:
            return
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1
        os.kill(self._pid, signal.SIGKILL)  # our own unreaped child: the pid cannot be reused yet
        self._reap()

    def _reap(self) -> int:
        _, status = os.waitpid(self._pid, 0)
        self._pid = 0
        return status


def _child(root: Path, tops: set[str], write_fd: int) -> None:
    """Scan, send the pickled result, and leave without running the parent's exit handlers."""
    code = 1
    try:
        problems = Problems()
        scan = scan_tree(root, tops, problems)
        payload = pickle.dumps((scan, problems), protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
        code = 0
    except BaseException:  # noqa: BLE001 - the parent sees the failure and scans itself
        pass
    finally:
        os._exit(code)
