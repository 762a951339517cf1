"""Does the watching daemon's memory grow with the number of files it has seen? (issue 18)

Target: RSS after 100,000 files seen <= RSS after 10,000 + 10 MiB. The watcher is the only part of
the daemon that keeps something per file (the service's sets hold files queued or in flight only,
the journal is on disk with SQLite's bounded page cache): so a real Watcher runs here, in-process,
on N small files in 100 folders, with ICSD_ON_SUCCESS=keep's worst case (every original stays). It
offers 10,000 files, RSS is read; 90,000 more arrive while it watches (the kernel's event queue
overflows on the way: the overflow path is part of the measurement), a full rescan runs, RSS is
read again. Reference, measured in the same run: what the watcher's former `dict[path, key]` of
offered files holds for the same paths (tracemalloc).

    python bench/history_memory.py [--first 10000] [--total 100000]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from icsd.daemon.watcher import Watcher


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def make(root: Path, start: int, stop: int) -> None:
    for i in range(start, stop):
        folder = root / f"cam{i % 100:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"frame_{i:06d}.jpg").write_bytes(b"\xff\xd8 not decoded by the watcher")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", type=int, default=10_000)
    parser.add_argument("--total", type=int, default=100_000)
    args = parser.parse_args()
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix="history-"))
    root = tmp / "in"
    root.mkdir()
    offered = 0
    lock = threading.Lock()

    def on_ready(_path: Path) -> None:
        nonlocal offered
        with lock:
            offered += 1

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 1800
        while offered < n:
            if time.monotonic() > deadline:
                sys.exit(f"only {offered} of {n} offered")
            time.sleep(0.1)

    try:
        make(root, 0, args.first)
        watcher = Watcher(root, on_ready, stable_seconds=0.2, rescan_seconds=3600.0, polling=False)
        watcher.start()
        try:
            wait_for(args.first)
            watcher.rescan()
            gc.collect()
            first = rss_mib()
            make(root, args.first, args.total)
            wait_for(args.total)
            watcher.rescan()
            gc.collect()
            total = rss_mib()
            overflows = watcher.overflows.total
        finally:
            watcher.stop()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        old = {str(p): (32, 1_700_000_000_000_000_000 + i, 10_000_000 + i) for i, p in enumerate(root.rglob("*.jpg"))}
        dict_mib = (tracemalloc.get_traced_memory()[0] - before) / 2**20
        tracemalloc.stop()
        del old
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"watcher, {args.first:,} then {args.total:,} files offered ({overflows} inotify overflows on the way):")
    print(f"  RSS after {args.first:>7,}: {first:7.1f} MiB")
    print(f"  RSS after {args.total:>7,}: {total:7.1f} MiB  (+{total - first:.1f} MiB; target <= +10 MiB: "
          f"{'met' if total - first <= 10 else 'NOT met'})")
    print(f"  reference: the former dict of offered files would hold {dict_mib:.1f} MiB for {args.total:,} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
