"""The journal's cost per file, as the daemon calls it: three generations side by side.

- `all FULL, per file`: is_settled, claim, output_owner, get, reserve_output, mark_done (13 statements,
  3 commits), each commit fsyncing the WAL (icsd before the sync split);
- `split, per file`: the same calls, only the done commit fsynced (claims survive a killed process);
- `grouped (now)`: is_settled and claim_output (the claim and the output name in one transaction) per
  file, and one mark_done_many per --group files (the daemon's group commit; its real groups are the
  jobs that ended together, up to 64).
Interleaved, median of --repeat, on the file system of --folder (default bench/out: the disk a state
folder would be on).

    python bench/journal_sync.py [-n 500] [--repeat 5] [--group 4] [--folder DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from icsd.daemon.identity import FileVersion
from icsd.daemon.journal import DoneMark, Journal


class AllFull(Journal):
    """The reference: every commit durable (synchronous=FULL throughout)."""

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator:  # type: ignore[override]
        with super()._write(durable=True) as db:
            yield db


def _natural_name(output: str, owner_of, _previous: str | None) -> str:
    """The daemon's choice when nothing collides: one owner lookup, the natural name."""
    owner_of(output)
    return output


def per_file(kind: type[Journal], folder: Path, n: int, group: int = 0) -> tuple[float, float]:
    """(wall ms, CPU ms) per file for n files' journal calls; `group` > 0: the grouped calls."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp, kind(Path(tmp) / "journal.sqlite3") as journal:
        wall, cpu = time.perf_counter(), time.process_time()
        pending: list[DoneMark] = []
        for i in range(n):
            rel = f"cam{i % 20:02d}/frame_{i:06d}.jpg"
            version = FileVersion(rel, 65_000, i, i, f"{i:040x}")
            output = rel[:-4] + ".png"
            journal.is_settled(rel, 65_000, i)
            if group:
                journal.claim_output(version, None, partial(_natural_name, output))
                pending.append(DoneMark(rel, output, digest=version.digest))
                if len(pending) == group or i == n - 1:
                    journal.mark_done_many(pending)
                    pending = []
                continue
            journal.claim(version)
            journal.output_owner(output)
            journal.get(rel)
            journal.reserve_output(rel, output)
            journal.mark_done(rel, output, digest=version.digest)
        return (time.perf_counter() - wall) * 1000 / n, (time.process_time() - cpu) * 1000 / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--group", type=int, default=4, help="done rows per group commit")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    cases = {"all FULL, per file": (AllFull, 0), "split, per file": (Journal, 0),
             f"grouped by {args.group} (now)": (Journal, args.group)}
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in cases}
    for _ in range(args.repeat):
        for label, (kind, group) in cases.items():
            runs[label].append(per_file(kind, args.folder, args.n, group))
    ref = statistics.median(w for w, _ in runs["all FULL, per file"])
    print(f"journal calls of {args.n} files in {args.folder}, median of {args.repeat}, interleaved")
    print(f"{'':22} {'wall ms/file':>13} {'CPU ms/file':>12} {'x all FULL':>11}")
    for label, values in runs.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"{label:22} {wall:13.2f} {cpu:12.3f} {wall / ref:11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
