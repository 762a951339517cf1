"""Many folders with one small image each, copied into a running `icsd run` (issue 18).

Target: 20,000 folders -> per-file time <= 1.2x the 2,000-folder case, no endless inotify-overflow
loop (watchdog's own fix-up used to re-add every watch and overflow again, for ever), nothing lost.
Each case: a fresh daemon on an empty input folder; the timer starts with a copy of the prepared
tree into it and stops at the last progress line; also printed: the overflow WARNING lines and the
daemon's main-process CPU per file. Images: 160x120 JPEGs (quality 90) cut from scikit-learn's photos.

    python bench/manyfolders.py [--small 2000] [--large 20000] [--workers 2] [--paused]

--paused: the daemon is SIGSTOPped during the copy and timed from its SIGCONT, so each case starts with all
the copy's events queued: an inotify queue overflow when they are more than the kernel's max_queued_events
(without it, a quick daemon may keep up).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from PIL import Image

from bench.smallfiles import _photos, feed_daemon

HERE = Path(__file__).resolve().parent


def prepare(n: int) -> Path:
    folder = HERE / "out" / f"manyfolders-{n}"
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.jpg")) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    photos = _photos()
    for i in range(n):
        photo = photos[i % len(photos)]
        y, x = (i * 7) % (photo.shape[0] - 120), (i * 13) % (photo.shape[1] - 160)
        buffer = io.BytesIO()
        Image.fromarray(photo[y : y + 120, x : x + 160]).save(buffer, "JPEG", quality=90)
        target = folder / f"drop{i:05d}" / "frame.jpg"
        target.parent.mkdir(parents=True)
        target.write_bytes(buffer.getvalue())
    return folder


def run(n: int, workers: int, *, paused: bool = False) -> tuple[float, float, int, bool]:
    """(seconds, main CPU seconds, overflow WARNING lines, still running) for n one-file folders."""
    elapsed, cpu, log, alive = feed_daemon(prepare(n), n, workers=workers, tmp=HERE / "out", paused=paused)
    return elapsed, cpu, log.count("inotify queue overflowed"), alive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--paused", action="store_true", help="SIGSTOP the daemon during the copy (see above)")
    args = parser.parse_args()
    rows = []
    for n in (args.small, args.large):
        seconds, cpu, overflows, alive = run(n, args.workers, paused=args.paused)
        rows.append((n, seconds, cpu, overflows, alive))
    print(f"{'folders':>8} {'seconds':>8} {'ms/file':>8} {'x small':>8} {'main CPU ms/file':>17} {'overflows':>10}")
    base = rows[0][1] / rows[0][0]
    for n, seconds, cpu, overflows, alive in rows:
        per = seconds / n
        print(f"{n:8} {seconds:8.1f} {per * 1000:8.2f} {per / base:8.2f} {cpu * 1000 / n:17.2f} {overflows:10}"
              + ("" if alive else "  (daemon exited!)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
