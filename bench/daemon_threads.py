"""Where `icsd batch`'s own process spends CPU on many small files, thread by thread.

The daemon's process runs the coordinator (main thread) and, for the process pool, concurrent.futures'
manager thread and queue feeder (pickling, pipes, wake-ups per task). This runs a real `icsd batch` over
bench/smallfiles.py's images and samples /proc/PID/task/*/stat until it exits; the last sample per
thread is its CPU. Median of --repeat runs; the workers (other processes) are not counted.

    python bench/daemon_threads.py [-n 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.smallfiles import generate
from bench.throughput import icsd_command

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) per thread name of process `pid` now."""
    seconds: dict[str, float] = collections.Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as handle:
            raw = handle.read()
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        seconds[name if name != "icsd" or tid != str(pid) else "main"] += (int(fields[11]) + int(fields[12])) / TICK
    return seconds


def run(folder: Path, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="icsd-threads-") as out:
        command = [*icsd_command(), "batch", str(folder), "--output-dir", out, "--workers", str(workers),
                   "--log-level", "INFO"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   stdin=subprocess.DEVNULL, cwd="/")
        last: dict[str, float] = {}
        while process.poll() is None:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):  # exiting
                last = thread_cpu(process.pid)
            time.sleep(0.01)
        if process.returncode != 0:
            sys.exit(f"icsd batch failed ({process.returncode})")
        return last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = generate(HERE / "out" / f"smallfiles-{args.n}", args.n)
    runs = [run(folder, args.workers) for _ in range(args.repeat)]
    names = sorted({name for sample in runs for name in sample}, key=lambda name: -runs[0].get(name, 0.0))
    print(f"icsd batch over {args.n} small JPEGs, {args.workers} workers: CPU of its own process per file "
          f"(median of {args.repeat}, start-up included)")
    for name in names:
        median = statistics.median(sample.get(name, 0.0) for sample in runs)
        print(f"  {name:22s} {median * 1000 / args.n:6.2f} ms")
    total = statistics.median(sum(sample.values()) for sample in runs)
    print(f"  {'all threads':22s} {total * 1000 / args.n:6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
