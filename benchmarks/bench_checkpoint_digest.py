"""Benchmark: the checkpoint digests stay off the housekeeping loop.

Issue 20: training records the sha256 of every checkpoint file it keeps (one ResNeSt50 save is
~100 MB of weights + ~100 MB of optimizer state, ~300 MB per epoch with latest and epoch_N), in a
background thread (``repro.run.checkpoints.Digests``), never on the training's critical path. This
writes one save of that size, then runs the housekeeper's loop shape (a tick every ``--tick``
seconds: ``Digests.update`` plus a little work) while the digests are taken, and prints the
digest throughput and the longest tick: with the digests in the loop itself the longest tick would
be the whole hashing time. Run: python benchmarks/bench_checkpoint_digest.py [--mb 100]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from repro.core.files import file_sha256
from repro.run.checkpoints import Digests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="MB per .pdparams/.pdopt (ResNeSt50: ~105)")
    parser.add_argument("--tick", type=float, default=0.05, help="seconds between housekeeping ticks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        output = Path(tmp)
        written: dict[str, dict] = {}
        for name in ("latest.pdparams", "latest.pdopt", "epoch_1.pdparams", "epoch_1.pdopt"):
            path = output / name
            with open(path, "wb") as handle:
                for _ in range(args.mb):
                    handle.write(os.urandom(1 << 20))
            info = path.stat()
            written[name] = {"segment": 0, "mtime_ns": info.st_mtime_ns, "size": info.st_size}
        total_mb = args.mb * len(written)
        start = time.perf_counter()
        file_sha256(output / "latest.pdparams")
        inline = time.perf_counter() - start
        digests = Digests()
        longest, ticks = 0.0, 0
        start = time.perf_counter()
        while not all("sha256" in record for record in written.values()):
            tick = time.perf_counter()
            digests.update(output, written)
            sum(range(20000))  # the rest of a tick: reading new log lines, the true-best check
            longest = max(longest, time.perf_counter() - tick)
            ticks += 1
            time.sleep(args.tick)
        elapsed = time.perf_counter() - start
        digests.finish(output, written)
        print(f"digest of one {args.mb} MB file inline: {inline:.2f} s ({args.mb / inline:.0f} MB/s)")
        print(f"{total_mb} MB digested in the background in {elapsed:.2f} s over {ticks} ticks; "
              f"longest tick {longest * 1000:.1f} ms (inline it would be ~{inline * len(written):.2f} s)")


if __name__ == "__main__":
    main()
