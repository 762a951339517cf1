"""`icsd compare` against the `icsd batch` runs it stands for, and the size of the page it writes.

Target (issue 17): `icsd compare` over 15 camera JPEGs with 4 strategies x 3 K takes <= 1.5x the time of the
same 12 `icsd batch` runs (one per strategy and K, each a whole command into a fresh output folder), and the
page stays under 10 MB.

Both sides are whole commands, measured in this run, interleaved (compare, 12 batches, compare, ...) so machine
noise hits both alike; medians and the ratio are printed. compare does more per variant than batch (PSNR, SSIM,
a preview and a crop, the page) but runs size-only once per image instead of once per K, and starts once.

    python bench/compare.py [FOLDER] [--workers 2] [--colors 8,16,32] [--repeat 3] [--keep DIR]

Without FOLDER, the 15 camera-like JPEGs of bench/throughput.py (4-15 MP) are generated once into
bench/out/camera/. --keep DIR keeps the last page and sheet there (docs/compare.png is a screenshot of one).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.throughput import HERE, generate_camera_set, icsd_command

STRATEGIES = ("size-only", "kmeans", "sklearn-kmeans", "sklearn-minibatch")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, help="folder of JPEGs [default: generated camera set]")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--colors", default="8,16,32")
    parser.add_argument("--scale", default="5")
    parser.add_argument("--repeat", type=int, default=3, help="measurements of each side (median taken)")
    parser.add_argument("--keep", type=Path, help="copy the last page and sheet into this folder")
    args = parser.parse_args()

    folder = args.folder or generate_camera_set(HERE / "out" / "camera")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    colors = args.colors.split(",")
    print(f"{len(files)} JPEGs, {sum(p.stat().st_size for p in files) / 2**20:.0f} MiB in {folder}; "
          f"{len(STRATEGIES)} strategies x K {args.colors}, scale {args.scale}, {args.workers} workers")

    compare_times, batch_times, page_bytes, sheet_bytes = [], [], [], []
    for round_ in range(args.repeat):
        seconds, page, sheet = run_compare(folder, args, keep=args.keep if round_ == args.repeat - 1 else None)
        compare_times.append(seconds)
        page_bytes.append(page)
        sheet_bytes.append(sheet)
        batch_times.append(sum(run_batch(folder, args, strategy, k) for strategy in STRATEGIES for k in colors))
        print(f"  round {round_ + 1}: icsd compare {compare_times[-1]:.1f} s | 12 x icsd batch {batch_times[-1]:.1f} s"
              f" | page {page / 2**20:.2f} MiB, sheet {sheet / 2**20:.2f} MiB")

    compare, batch = statistics.median(compare_times), statistics.median(batch_times)
    page = statistics.median(page_bytes)
    print()
    print(f"{'':36} {'median s':>9} {'x batch':>8}")
    print(f"{'12 x icsd batch (whole commands)':36} {batch:9.1f} {1.0:8.2f}")
    print(f"{'icsd compare (whole command)':36} {compare:9.1f} {compare / batch:8.2f}")
    print(f"page {page / 1e6:.2f} MB ({page / 2**20:.2f} MiB) for {len(files)} images, "
          f"sheet {statistics.median(sheet_bytes) / 1e6:.2f} MB")
    print(f"target: compare <= 1.50x batch -> {'met' if compare <= 1.5 * batch else 'NOT met'}; "
          f"page < 10 MB -> {'met' if page < 10e6 else 'NOT met'}")
    return 0


def run_compare(folder: Path, args: argparse.Namespace, *, keep: Path | None) -> tuple[float, int, int]:
    """(whole command seconds, page bytes, sheet bytes) of one `icsd compare` with a page and a sheet."""
    with tempfile.TemporaryDirectory(prefix="icsd-bench-") as out:
        page, sheet = Path(out) / "compare.html", Path(out) / "compare.png"
        command = [*icsd_command(), "compare", str(folder.resolve()), "--strategies", ",".join(STRATEGIES),
                   "--colors", args.colors, "--scale", args.scale, "--workers", str(args.workers),
                   "-o", str(page), "--sheet", str(sheet)]
        elapsed = _timed(command)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(page, keep / page.name)
            shutil.copy(sheet, keep / sheet.name)
        return elapsed, page.stat().st_size, sheet.stat().st_size


def run_batch(folder: Path, args: argparse.Namespace, strategy: str, colors: str) -> float:
    """Whole-command seconds of one `icsd batch` into a fresh output folder."""
    with tempfile.TemporaryDirectory(prefix="icsd-bench-") as out:
        return _timed([*icsd_command(), "batch", str(folder.resolve()), "--output-dir", out, "--strategy", strategy,
                       "--colors", colors, "--scale", args.scale, "--workers", str(args.workers)])


def _timed(command: list[str]) -> float:
    with tempfile.TemporaryFile("w+") as log:
        started = time.perf_counter()
        done = subprocess.run(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd="/", check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            log.seek(0)
            sys.exit(f"{shlex.join(command)} failed ({done.returncode}):\n{log.read()}")
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
