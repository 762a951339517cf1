"""The process pool's fork server, started first thing by the daemon commands.

Workers are forked from a server process that has already imported the image stack, so a worker's first
image does not pay for NumPy and Pillow. The server is a fresh interpreter (~0.2 s of CPU to get there),
so the daemon commands start it before importing anything else of their own (this module needs only
`multiprocessing.forkserver`): on two or more cores the server loads while the daemon imports
pydantic-settings and reads its settings, and the workers are ready when the service asks for them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = [
    "DAEMON_COMMANDS",
    "HUGE_PAGES_TUNABLE",
    "WORKER_ENV",
    "WORKER_PRELOAD",
    "limit_native_threads",
    "start_for_command",
    "init_worker",
    "start_worker_server",
    "worker_pool",
    "worker_environment",
]

# Commands that run the daemon and so a process pool; `icsd palette learn` runs one too.
DAEMON_COMMANDS = ("run", "batch")
POOL_SUBCOMMANDS = (("palette", "learn"),)

# What the server imports once, so every worker starts with it: the image stack, and what unpickling a
# worker needs (the pool's worker loop and our initializer, in icsd.daemon.executor). Measured with -X importtime:
# before icsd.daemon.executor was here, each worker imported ~25-35 ms of it (and of icsd.cli, which the launching
# script imported: multiprocessing reruns that script in every child) before its first image.
WORKER_PRELOAD = ["icsd.daemon.executor", "icsd.core.pipeline", "threadpoolctl"]

# One thread per native thread pool from the server's start, so workers never oversubscribe the cores.
# Set before NumPy loads: OpenBLAS otherwise starts a spinning thread per core at import (measured: the
# server's imports took 290 ms of CPU on 1.6 cores, racing the daemon's own start-up; 170 ms on one with this).
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# glibc's malloc marks its large blocks for transparent huge pages (madvise), as NumPy already does for its
# arrays: a worker allocates and frees tens of MB per image (JPEG decoder rows, Pillow's picture blocks), and
# with 4 KiB pages every image faults each of those pages in again. Measured on the 15 camera JPEGs: one worker's
# page faults 19.4k -> 4.6k and peak RSS 65 -> 68 MiB; `icsd batch` 0.97x the time (median of 20 interleaved A/Bs).
# glibc < 2.35, other C libraries and kernels with THP "never" ignore it; a GLIBC_TUNABLES that already
# names glibc.malloc.hugetlb (e.g. =0 to turn it off) is kept as it is.
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def start_for_command(argv: Sequence[str]) -> None:
    """Start the server if `argv` (arguments after the program name) runs a daemon command."""
    if argv and (argv[0] in DAEMON_COMMANDS or tuple(argv[:2]) in POOL_SUBCOMMANDS):
        start_worker_server()


def start_worker_server() -> None:
    """Start the fork server now, in the background of whatever the caller does next.

    Idempotent; costs nothing later if unused (e.g. when the settings pick the Dask executor: the idle
    server exits with this process). This process's environment is left as it was.
    """
    from multiprocessing import forkserver  # here: importing this module stays free for the other commands

    forkserver.set_forkserver_preload(WORKER_PRELOAD)
    added = worker_environment(os.environ)
    saved = {name: os.environ.get(name) for name in added}
    os.environ.update(added)  # inherited by the server (and its workers), then restored for this process
    try:
        forkserver.ensure_running()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def worker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables the fork server (and so every worker) gets on top of `environ`."""
    added = dict(WORKER_ENV)
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in tunables:
        added["GLIBC_TUNABLES"] = f"{tunables}:{HUGE_PAGES_TUNABLE}" if tunables else HUGE_PAGES_TUNABLE
    return added


def limit_native_threads() -> None:
    """One BLAS/OpenMP thread for the calling thread's native pools, so N workers use N cores. The worker
    environment (WORKER_ENV) already asks for it; this covers a worker started elsewhere (a Dask worker
    without a nanny, a fork server started by someone else). OpenMP limits are per calling thread."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def init_worker() -> None:
    """A pool worker: Ctrl-C goes to the whole process group and the parent stops the pool (workers need
    not print tracebacks); one native thread each, so N workers use N cores."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_native_threads()


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` processes forked from icsd's fork server (image stack preloaded), for the one-shot tools
    (`icsd compare`, `icsd palette learn`); the daemon's own pool (executor.py) adds drain and parent watch."""
    import multiprocessing  # here, not at the top: this module stays light for the daemon's start
    from concurrent.futures import ProcessPoolExecutor

    start_worker_server()
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"),
                               initializer=init_worker)
