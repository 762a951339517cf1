"""What a Dask task costs icsd, apart from the image work: for docs/dask.md's throughput estimates.

A real `dask scheduler` and `--workers` x `dask worker --nthreads 1` on 127.0.0.1 (bench/smallfiles.py's
DaskCluster). Measured from a client as icsd uses it (client.submit with the bytes as the argument,
then result()), with as many tasks in flight as the daemon keeps:
- per-task overhead: tasks that do nothing with a 64 KiB argument (a 640x480 JPEG's size), so the
  time is scheduling, transfer and the result round trip only; single images and batches of BATCH_IMAGES
  (the daemon's, with its 2 batches in flight per worker thread);
- the client's own CPU per task (the icsd host's share).

    python bench/dask_overhead.py [--workers 2] [--tasks 600]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.smallfiles import DaskCluster
from icsd.daemon.executor import BATCH_IMAGES


def nothing(datas: list[bytes]) -> list[int]:
    return [len(d) for d in datas]


def per_task(client, tasks: int, batch: int, in_flight: int, size: int) -> tuple[float, float]:
    """(wall ms per image, client CPU ms per image) with `in_flight` images outstanding."""
    from distributed import wait

    payload = [bytes(size) for _ in range(batch)]
    wall, cpu = time.perf_counter(), time.process_time()
    futures = []
    done = 0
    while done < tasks:
        while len(futures) < max(1, in_flight // batch) and done + len(futures) < tasks:
            futures.append(client.submit(nothing, payload, pure=False))
        finished, pending = wait(futures, return_when="FIRST_COMPLETED")
        for f in finished:
            f.result()
        done += len(finished)
        futures = list(pending)
    images = tasks * batch
    return (time.perf_counter() - wall) * 1000 / images, (time.process_time() - cpu) * 1000 / images


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from distributed import Client

    cluster = DaskCluster(args.workers)
    try:
        with Client(cluster.address) as client:
            rows = {}
            full = BATCH_IMAGES
            for label, batch, in_flight in (("1 image/task, 4 in flight", 1, 4),
                                            (f"{full} images/task, {4 * full} in flight", full, 4 * full)):
                runs = [per_task(client, args.tasks // batch, batch, in_flight, 64 * 1024) for _ in range(args.repeat)]
                rows[label] = (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
    finally:
        cluster.close()
    print(f"Dask, {args.workers} workers on 127.0.0.1, no-op tasks with 64 KiB per image, median of {args.repeat}")
    print(f"{'':30} {'wall ms/image':>14} {'client CPU ms/image':>20}")
    for label, (wall, cpu) in rows.items():
        print(f"{label:30} {wall:14.2f} {cpu:20.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
