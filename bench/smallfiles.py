"""Many small images: icsd (batch, run, optionally Dask) against a bare multiprocessing floor.

Camera ingest is often many small frames. The *floor* is a 30-line script (FLOOR below):
`multiprocessing.Pool(W)`, each worker reads a file's bytes, calls the core's `compress(data,
params)` and writes the PNG with a plain `open().write()`: the same image work, none of the service
(journal, fsync, atomic rename, progress). Measured in this run, interleaved (floor, batch, run,
[dask], floor, ...), median of `--repeat` rounds; printed as img/s, ratios to the floor, and the
CPU seconds per file of icsd's main process (what the coordinator costs; on 2 cores it is taken
from the workers).

    python bench/smallfiles.py [-n 1000] [--workers 2] [--repeat 3] [--dask]

Images: N JPEGs of 640x480 at quality 90 in 20 folders, made from real photos (scikit-learn's two;
scikit-image's data photos too when it is installed): random crops, resized and flipped, so no two
are alike. Cached in bench/out/smallfiles-N/. `icsd run` is timed from the start of a copy of that
tree into its (empty, watched) input folder to the last progress line; its --stable-seconds is 0.3.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.throughput import icsd_command

HERE = Path(__file__).resolve().parent
FOLDERS = 20
PROGRESS = re.compile(rb"INFO\s+icsd: .+?: \d+x\d+ -> \d+x\d+ px")

FLOOR = """\
import os, sys
from multiprocessing import Pool
from pathlib import Path

from icsd.core import CompressParams, compress

PARAMS = CompressParams(colors=int(sys.argv[3]))


def one(job):
    src, dst = job
    with open(src, "rb") as f:
        data = f.read()
    result = compress(data, PARAMS)
    with open(dst, "wb") as f:
        f.write(result.data)


if __name__ == "__main__":
    src_root, dst_root, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[4])
    jobs = []
    for src in sorted(src_root.rglob("*.jpg")):
        dst = dst_root / src.relative_to(src_root).with_suffix(".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((src, dst))
    with Pool(workers) as pool:
        for _ in pool.imap_unordered(one, jobs, chunksize=4):
            pass
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1000, help="number of images")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--colors", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dask", action="store_true", help="also icsd batch on a real dask scheduler + workers")
    parser.add_argument("--skip-run", action="store_true", help="leave out icsd run")
    args = parser.parse_args()

    folder = generate(HERE / "out" / f"smallfiles-{args.n}", args.n)
    print(f"{args.n} JPEGs 640x480 q90 in {FOLDERS} folders ({_mib(folder):.0f} MiB), {args.workers} workers, "
          f"K={args.colors}; median of {args.repeat}, interleaved")
    sides: dict[str, list[tuple[float, float | None]]] = {"floor": [], "icsd batch": []}
    if not args.skip_run:
        sides["icsd run (copy in)"] = []
    cluster = DaskCluster(args.workers) if args.dask else None
    if cluster:
        sides["icsd batch, dask"] = []
    try:
        for round_ in range(args.repeat):
            sides["floor"].append((run_floor(folder, args), None))
            sides["icsd batch"].append(run_batch(folder, args))
            if not args.skip_run:
                sides["icsd run (copy in)"].append(run_daemon(folder, args))
            if cluster:
                sides["icsd batch, dask"].append(run_batch(folder, args, dask=cluster.address))
            print(f"  round {round_ + 1}: " + " | ".join(f"{k} {v[-1][0]:.2f} s" for k, v in sides.items()))
    finally:
        if cluster:
            cluster.close()
    floor = statistics.median(s for s, _ in sides["floor"])
    print()
    print(f"{'':24} {'median s':>9} {'img/s':>8} {'x floor':>8} {'main CPU ms/file':>17}")
    for label, runs in sides.items():
        seconds = statistics.median(s for s, _ in runs)
        cpus = [c for _, c in runs if c is not None]
        cpu = f"{statistics.median(cpus) * 1000 / args.n:17.2f}" if cpus else f"{'':>17}"
        print(f"{label:24} {seconds:9.2f} {args.n / seconds:8.0f} {floor / seconds:8.2f} {cpu}")
    return 0


def run_floor(folder: Path, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory(prefix="icsd-floor-") as out:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", FLOOR, str(folder), out, str(args.colors), str(args.workers)],
                       check=True, stdin=subprocess.DEVNULL, cwd="/")
        return time.perf_counter() - started


def run_batch(folder: Path, args: argparse.Namespace, *, dask: str | None = None) -> tuple[float, float]:
    """(seconds, main-process CPU seconds) of one whole `icsd batch` command into a fresh output folder."""
    extra = ["--executor", "dask", "--dask-scheduler", dask] if dask else []
    with tempfile.TemporaryDirectory(prefix="icsd-batch-") as out, tempfile.TemporaryFile() as log:
        command = [*icsd_command(), "batch", str(folder), "--output-dir", out, "--workers", str(args.workers),
                   "--colors", str(args.colors), "--log-level", "INFO", *extra]
        started = time.perf_counter()
        process = subprocess.Popen(command, stderr=log, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd="/")
        cpu = 0.0
        while process.poll() is None:
            cpu = _cpu_seconds(process.pid) or cpu  # the last sample before it exits
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            log.seek(0)
            sys.exit(f"icsd batch failed ({process.returncode}):\n{log.read().decode(errors='replace')[-3000:]}")
    return elapsed, cpu


def run_daemon(folder: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(seconds from the start of the copy to the last progress line, daemon main-process CPU in that time)."""
    elapsed, cpu, _log, _alive = feed_daemon(folder, args.n, workers=args.workers, colors=args.colors)
    return elapsed, cpu


def feed_daemon(
    folder: Path, n: int, *, workers: int, colors: int = 16, tmp: Path | None = None, paused: bool = False
) -> tuple[float, float, str, bool]:
    """Copy `folder` into a fresh `icsd run`'s input; (seconds to the n-th progress line, main-process CPU
    seconds in that time, the daemon's log, whether it was still running then). `paused`: the daemon is
    SIGSTOPped during the copy (its inotify queue overflows when the copy makes more events than it holds)
    and timed from its SIGCONT: the cost of catching up after an overflow."""
    with tempfile.TemporaryDirectory(prefix="icsd-run-", dir=tmp) as root:
        input_dir, out, log_path = Path(root, "in"), Path(root, "out"), Path(root, "log")
        input_dir.mkdir()
        command = [*icsd_command(), "run", "--input-dir", str(input_dir), "--output-dir", str(out),
                   "--workers", str(workers), "--colors", str(colors), "--stable-seconds", "0.3",
                   "--log-level", "INFO"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stderr=log, stdout=log, stdin=subprocess.DEVNULL, cwd="/")
        try:
            _wait(lambda: b"watching " in log_path.read_bytes(), process, "the daemon to start")
            cpu_before = _cpu_seconds(process.pid)
            if paused:
                process.send_signal(signal.SIGSTOP)
            started = time.perf_counter()
            shutil.copytree(folder, input_dir, dirs_exist_ok=True)
            if paused:
                started = time.perf_counter()
                process.send_signal(signal.SIGCONT)
            counter = _ProgressCounter(log_path)
            try:
                _wait(lambda: counter.count() >= n, process, f"{n} progress lines", timeout=7200)
            except SystemExit:
                print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
                raise
            elapsed = time.perf_counter() - started
            cpu = _cpu_seconds(process.pid) - cpu_before
            alive = process.poll() is None
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(300)
        return elapsed, cpu, log_path.read_text(errors="replace"), alive


class DaskCluster:
    """`dask scheduler` + `workers` x `dask worker --nthreads 1` on 127.0.0.1, as separate processes."""

    def __init__(self, workers: int) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        dask = str(Path(sys.executable).with_name("dask"))
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "stdin": subprocess.DEVNULL}
        self.processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                            "--dashboard-address", ":0"], **quiet)]
        self.processes += [
            subprocess.Popen([dask, "worker", self.address, "--nthreads", "1", "--nworkers", "1",
                              "--host", "127.0.0.1", "--dashboard-address", ":0"], **quiet)
            for _ in range(workers)
        ]
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            process.wait(60)


class _ProgressCounter:
    """Counts progress lines in a growing log, reading only what is new."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.lines, self.rest = path, 0, 0, b""

    def count(self) -> int:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        text = self.rest + chunk
        cut = text.rfind(b"\n") + 1
        self.lines += len(PROGRESS.findall(text[:cut]))
        self.rest = text[cut:]
        return self.lines


def generate(folder: Path, n: int) -> Path:
    """N distinct 640x480 JPEGs (quality 90) in FOLDERS folders, from real photos; cached."""
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.jpg")) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    photos = _photos()
    rng = random.Random(n)
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        ch = rng.randint(h // 2, h)
        cw = min(w, ch * 4 // 3)
        y, x = rng.randint(0, h - ch), rng.randint(0, w - cw)
        image = Image.fromarray(photo[y : y + ch, x : x + cw]).resize((640, 480), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        target = folder / f"cam{i % FOLDERS:02d}" / f"frame_{i:06d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        target.write_bytes(buffer.getvalue())
    return folder


def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_image

    photos = [load_sample_image(name) for name in ("china.jpg", "flower.jpg")]
    try:
        from skimage import data
    except ImportError:
        return photos
    for name in ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left"):
        if hasattr(data, name):
            photos.append(np.asarray(getattr(data, name)())[..., :3])
    return photos


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads, not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(predicate, process: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            sys.exit(f"icsd exited ({process.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.02)


def _mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*.jpg")) / 2**20


if __name__ == "__main__":
    sys.exit(main())
