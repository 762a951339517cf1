"""The daemon's own CPU per file, without the image work: `icsd batch`'s coordinator against instant workers.

bench/smallfiles.py measures the whole daemon against a bare pool, but on a shared 2-core machine its CPU
figures move with the load. Here the real Service (scan, journal, intake, group commit, progress lines) runs
in this process on N files with an executor whose jobs finish at once: a pool worker's part (compress, write
the spool file) is replaced by a hard link to one PNG made beforehand. What is left is what the coordinator
thread costs per file (`time.thread_time`), measured next to a reference loop in the same run: reading and
hashing each input, the least any daemon that claims by content must do. Two rows: workers that write their
output to the spool (the process pool) and workers that send the bytes back for the daemon to write (Dask).

    python bench/coordinator.py [-n 2000] [--repeat 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import hashlib
import io
import logging
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
from PIL import Image

from icsd.core import CompressParams, JobOutcome, compress
from icsd.daemon import service as service_module
from icsd.daemon.executor import BATCH_IMAGES
from icsd.daemon.inputs import SourceFile
from icsd.daemon.service import Service
from icsd.settings import Settings

FOLDERS = 20


class InstantExecutor:
    """Jobs that end as they are submitted: the spool file is a hard link to a ready PNG. `local`: as the process
    pool (workers read the inputs and write the spool files); otherwise as remote Dask workers (bytes both ways)."""

    name = "instant"
    in_flight_hint = 2 * BATCH_IMAGES * 2  # the process pool's window for 2 workers (small images, full tasks)

    def __init__(self, png: Path, result, *, local: bool) -> None:
        self.writes_spool = self.reads_inputs = local
        self.png = png
        self.result = result  # with the PNG's bytes
        self.spooled = dataclasses.replace(result, data=b"")

    def submit(
        self, data: bytes | SourceFile, params: CompressParams, *, name: str = "", spool: str | None = None,
        alone: bool = False,
    ) -> Future:
        future: Future[JobOutcome] = Future()
        digest = "0" * 40 if isinstance(data, SourceFile) else None  # a worker would read and hash it
        try:
            os.link(self.png, spool)  # type: ignore[arg-type]
            result = self.spooled
        except (OSError, TypeError):  # a folder's first output (as a real worker: the daemon writes it)
            result = self.result
        future.set_result(JobOutcome(result, None, False, digest))
        return future

    def flush(self) -> None:
        pass

    def healthy(self) -> bool:
        return True

    def failure(self) -> None:
        return None

    def stop_starting(self) -> None:
        pass

    def shutdown(self, *, cancel: bool) -> None:
        pass


def make_inputs(root: Path, n: int) -> bytes:
    """n distinct 64x48 JPEGs in FOLDERS folders; returns one of them (for the ready PNG)."""
    rng = np.random.default_rng(1)
    first = b""
    for i in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
        path = root / f"d{i % FOLDERS:02d}" / f"img{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())
        first = first or buffer.getvalue()
    return first


def run_service(
    inputs: Path, out: Path, executor: InstantExecutor, profile: cProfile.Profile | None = None
) -> float:
    """Main-thread CPU seconds of one batch over `inputs` into a fresh `out`."""
    settings = Settings(input_dir=inputs, output_dir=out, workers=2, log_level="INFO", _env_file=None)
    service = Service(settings, mode="batch")
    service_module.create_executor = lambda *args, **kwargs: executor
    started = time.thread_time()
    if profile is not None:
        profile.enable()
    outcome = service.run()
    if profile is not None:
        profile.disable()
    assert outcome.exit_code == 0 and outcome.tally.done > 0, outcome
    return time.thread_time() - started


def read_and_hash(inputs: Path) -> float:
    """The reference: main-thread CPU seconds to read and SHA-1 every input."""
    started = time.thread_time()
    for folder, _dirs, files in os.walk(inputs):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                hashlib.sha1(handle.read(), usedforsecurity=False).hexdigest()
    return time.thread_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the last run")
    args = parser.parse_args()
    with open(os.devnull, "w") as devnull, tempfile.TemporaryDirectory(prefix="icsd-coordinator-") as root:
        logging.basicConfig(stream=devnull, level=logging.INFO)  # progress lines formatted, not shown
        inputs = Path(root, "in")
        sample = make_inputs(inputs, args.n)
        result = compress(sample, CompressParams())
        ready_png = Path(root, "ready.png")
        ready_png.write_bytes(result.data)
        spooling = InstantExecutor(ready_png, result, local=True)
        sending = InstantExecutor(ready_png, result, local=False)
        spool_ms, bytes_ms, reference_ms = [], [], []
        profile = cProfile.Profile(time.thread_time) if args.profile else None
        for round_ in range(args.repeat):
            out = Path(root, f"out{round_}")
            reference_ms.append(read_and_hash(inputs) * 1000 / args.n)
            bytes_ms.append(run_service(inputs, out, sending) * 1000 / args.n)
            shutil.rmtree(out)
            last = profile if round_ == args.repeat - 1 else None
            spool_ms.append(run_service(inputs, out, spooling, last) * 1000 / args.n)
            shutil.rmtree(out)
    reference = statistics.median(reference_ms)
    print(f"{args.n} files in {FOLDERS} folders, median of {args.repeat}; main-thread CPU per file")
    print(f"  {'read + SHA-1 only (reference)':65s} {reference:6.3f} ms")
    for label, times in (("workers read the input and write the spool (process)", spool_ms),
                         ("workers get and send bytes (remote dask)", bytes_ms)):
        median = statistics.median(times)
        print(f"  coordinator, {label:52s} {median:6.3f} ms   ({median / reference:.0f}x the reference)")
    if profile is not None:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
    return 0


if __name__ == "__main__":
    sys.exit(main())
