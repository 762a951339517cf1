"""The journal's cost per file, as the daemon calls it, with every commit fsynced vs only DONE/FAILED.

Per file the daemon runs: is_settled, claim, output_owner, get, reserve_output, mark_done (13 SQLite
statements, 3 commits). `all FULL` fsyncs the WAL at each of the 3 commits (icsd before this
change); `split` (icsd now, see Journal._write) only at mark_done. Interleaved, median of --repeat,
on the file system of --folder (default bench/out: the disk a state folder would be on).

    python bench/journal_sync.py [-n 500] [--repeat 5] [--folder DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from icsd.daemon.journal import FileId, Journal


class AllFull(Journal):
    """The reference: every commit durable (synchronous=FULL throughout)."""

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator:  # type: ignore[override]
        with super()._write(durable=True) as db:
            yield db


def per_file(kind: type[Journal], folder: Path, n: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per file for n files' journal calls."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp, kind(Path(tmp) / "journal.sqlite3") as journal:
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            rel = f"cam{i % 20:02d}/frame_{i:06d}.jpg"
            journal.is_settled(rel, 65_000, i)
            journal.claim(FileId(rel, 65_000, i, f"{i:040x}"))
            output = rel[:-4] + ".png"
            journal.output_owner(output)
            journal.get(rel)
            journal.reserve_output(rel, output)
            journal.mark_done(rel, output, digest=f"{i:040x}")
        return (time.perf_counter() - wall) * 1000 / n, (time.process_time() - cpu) * 1000 / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=Path(__file__).resolve().parent / "out")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[tuple[float, float]]] = {"all FULL (before)": [], "split (now)": []}
    for _ in range(args.repeat):
        runs["all FULL (before)"].append(per_file(AllFull, args.folder, args.n))
        runs["split (now)"].append(per_file(Journal, args.folder, args.n))
    ref = statistics.median(w for w, _ in runs["all FULL (before)"])
    print(f"journal calls of {args.n} files in {args.folder}, median of {args.repeat}, interleaved")
    print(f"{'':20} {'wall ms/file':>13} {'CPU ms/file':>12} {'x before':>9}")
    for label, values in runs.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"{label:20} {wall:13.2f} {cpu:12.3f} {wall / ref:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
