"""Run compression jobs somewhere else: a local process pool today, a Dask cluster when configured.

A job is `compress_job(data, params) -> JobOutcome`: bytes and a frozen params object in, encoded
bytes and stats out, no filesystem. So any executor that can ship bytes can run it; the daemon only
sees `concurrent.futures.Future[JobOutcome]`. Workers that share the daemon's files also read the input
(SourceFile) and write the output (a spool path) themselves, which spares the daemon's thread (run_jobs).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import logging
import math
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Protocol

from icsd.core import CompressParams, JobOutcome, compress_job
from icsd.daemon.fork_server import init_worker, start_worker_server
from icsd.daemon.identity import content_digest
from icsd.daemon.inputs import SourceChanged, SourceFile, job_size, read_source
from icsd.daemon.output import begin_spool, finish_spool
from icsd.errors import SettingsError, TransientError

__all__ = [
    "BATCH_IMAGES",
    "NOT_STARTED",
    "SMALL_IMAGE_BYTES",
    "STOP_SECONDS",
    "WORKER_DIED",
    "Executor",
    "ProcessExecutor",
    "batches_to_send",
    "create_executor",
    "run_jobs",
]

log = logging.getLogger("icsd.executor")

WORKER_DIED = "worker process died (killed by a signal or out of memory)"
NOT_STARTED = "not started: icsd was stopping"
# How long shutdown(cancel=True) waits for terminated workers (and then killed ones) to exit.
STOP_SECONDS = 5.0
# Small images per task at most (the pool's and Dask's). Each task costs the daemon a wake-up, a group commit
# (a journal transaction and a folder fsync each) and a round of claims: the coordinator's CPU per small image was
# ~0.69 ms with 6, ~0.48 with 24, ~0.41 with 48 and ~0.39 with 64 (bench/smallfiles.py's images, 3 interleaved runs
# each; docs/scale.md).
BATCH_IMAGES = 48
SMALL_IMAGE_BYTES = 512 * 1024  # a larger file is a task of its own (its compression dwarfs the overhead)


# An image submitted and not sent yet: its bytes (or the file for the worker to read), params, spool path, future.
_KeptBack = tuple[bytes | SourceFile, CompressParams, str | None, Future[JobOutcome]]


def batches_to_send(waiting: int, idle: int, *, everything: bool = False) -> list[int]:
    """The batching rule of both executors, for `waiting` small images kept back to travel together: the
    sizes of the tasks to send now (the first sum(sizes) images go). Full tasks of BATCH_IMAGES always go.
    The rest goes too only while `idle` workers (those with nothing queued) outnumber the full tasks, a share
    for each of them, so no worker waits while another gets a bigger task; otherwise it waits for companions,
    and tasks fill up while the workers are busy. `everything`: send all now (stopping, params changing)."""
    full, rest = divmod(waiting, BATCH_IMAGES)
    sizes = [BATCH_IMAGES] * full
    free = idle - full
    if rest and (everything or free > 0):
        share = max(1, math.ceil(rest / max(1, free)))
        sizes += [share] * (rest // share) + ([rest % share] if rest % share else [])
    return sizes


class Executor(Protocol):
    """What the daemon needs from an executor."""

    name: str
    # True when workers may share the daemon's files: a job given a `spool` path writes its output there (or, if its
    # worker cannot, sends the bytes back as usual).
    writes_spool: bool
    # True when workers read the inputs themselves (they share the daemon's files): `submit` may be given a SourceFile
    # instead of bytes; its outcome carries the digest, or the future raises SourceChanged.
    reads_inputs: bool

    def submit(
        self, data: bytes | SourceFile, params: CompressParams, *, name: str = "", spool: str | None = None,
        alone: bool = False,
    ) -> Future[JobOutcome]:
        """Start one job; the future never raises for a bad image (see JobOutcome). `name` (the image's
        relative path) is for the executor's own log lines. `spool` (only if `writes_spool`): a path that does
        not exist yet, beside the output; the worker writes the output there, fsynced, and returns the
        result with empty `data`; if it cannot (e.g. no space), it returns the data as usual. `alone`: run it
        in a task of its own, never with companions (its last attempt died with its worker: if it kills
        workers, it must not take other images' attempts with it)."""
        ...

    def flush(self) -> None:
        """Send what `submit` may have kept back to batch (the daemon calls it after each round of submits)."""
        ...

    def healthy(self) -> bool:
        """False when the executor can no longer run jobs (the daemon reports it to systemd)."""
        ...

    def failure(self) -> str | None:
        """Why no job can run at all (then job failures are not the images' fault), or None. Cheap."""
        ...

    def stop_starting(self) -> None:
        """Start no more jobs: those no worker has begun end at once with CancelledError (the daemon is
        draining, and only running jobs are worth waiting for). Jobs already running go on."""
        ...

    def shutdown(self, *, cancel: bool) -> None:
        """Release workers; with cancel, abandon running jobs (they are retried on the next start)."""
        ...


class ProcessExecutor:
    """A process pool that survives its workers: a pool broken by a killed worker is replaced.

    Workers are started by a fork server (safe while the parent runs watchdog threads) that has
    already imported the core, ignore SIGINT (the parent decides when to stop), and use one BLAS/
    OpenMP thread each (worker_server.WORKER_ENV, and threadpoolctl in case the server was started elsewhere) so N
    workers do not oversubscribe N cores.
    """

    name = "process"
    writes_spool = True  # the output is written by the worker, off the daemon's thread (docs/scale.md)
    reads_inputs = True  # and the input read and hashed there too

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._context = multiprocessing.get_context("forkserver")
        start_worker_server()
        # Set by stop_starting; every worker of every pool checks it before it begins a job.
        self._stopping = self._context.Event()
        self._jobs: set[Future[JobOutcome]] = set()  # submitted and not done (stop_starting cancels them)
        self._jobs_lock = threading.Lock()
        # Small images submitted and not yet sent (see flush): (data, params, spool, the image's future).
        self._pending: list[_KeptBack] = []
        self._pool = self._new_pool()
        self._quarantine = _Quarantine(functools.partial(self._new_pool, workers=1))
        self._probes: list[Future[None]] = []
        self._probes_sent = threading.Event()
        self._failure: str | None = None
        # Starting the workers waits for the fork server's imports: do it in the background, so it
        # overlaps with the daemon's own start-up and folder scan instead of delaying image one.
        threading.Thread(target=self._start_workers, name="icsd-pool-start", daemon=True).start()

    @property
    def in_flight_hint(self) -> int:
        """Images the daemon should keep in flight: two full batches per worker, so small images travel
        several to a task and a worker never waits for its next one (the byte window bounds big ones)."""
        return 2 * BATCH_IMAGES * self.workers

    def submit(
        self, data: bytes | SourceFile, params: CompressParams, *, name: str = "", spool: str | None = None,
        alone: bool = False,
    ) -> Future[JobOutcome]:
        """A large image is sent at once; a small one waits for `flush` (the daemon flushes after each round
        of submits), which sends small images several to a task. One to run `alone` goes to the quarantine: a
        pool of one worker that runs one image at a time (see _Quarantine)."""
        if alone:
            return self._quarantine.submit(data, params, spool)
        if job_size(data) >= SMALL_IMAGE_BYTES:
            return self._send(_run_job, data, params, spool)
        if self._pending and self._pending[0][1] is not params:  # a task has one params object
            self._send_batches(everything=True)
        job: Future[JobOutcome] = Future()
        self._pending.append((data, params, spool, job))
        return job

    def flush(self) -> None:
        """Send the small images kept back, by batches_to_send: a worker is idle here when it has no task
        queued behind its running one. A pool task costs ~0.3 ms of the daemon's CPU in concurrent.futures'
        threads (pickling, pipes, wake-ups): as much as the rest of a small image's bookkeeping
        (docs/scale.md)."""
        self._send_batches()

    def _send_batches(self, *, everything: bool = False) -> None:
        with self._jobs_lock:
            tasks_out = len(self._jobs)  # about: some may be ending
        idle = min(self.workers, 2 * self.workers - tasks_out)
        for size in batches_to_send(len(self._pending), idle, everything=everything):
            batch, self._pending = self._pending[:size], self._pending[size:]
            self._send_batch(batch)

    def _send_batch(self, batch: list[_KeptBack]) -> None:
        jobs = [job for _data, _params, _spool, job in batch]
        try:
            task = self._send(run_jobs, [(data, spool) for data, _params, spool, _job in batch], batch[0][1])
        except Exception as exc:  # a pool that cannot take work: each image's future says so
            for job in jobs:
                job.set_exception(exc)
            return
        task.add_done_callback(functools.partial(_settle_jobs, jobs))

    def _send(self, function: Callable[..., object], *args: object) -> Future:
        """Submit one pool task, replacing a pool that a killed worker broke."""
        self._probes_sent.wait()  # a pool's first calls are its probes (see failure)
        try:
            future = self._pool.submit(function, *args)
        except BrokenProcessPool:
            if self.failure() is not None:
                raise  # no new pool would fare better
            self._replace_pool()
            future = self._pool.submit(function, *args)
        with self._jobs_lock:
            self._jobs.add(future)
        future.add_done_callback(self._forget_job)
        return future

    def healthy(self) -> bool:
        return self.failure() is None  # a pool broken by one worker's death is replaced on the next submit

    def failure(self) -> str | None:
        """Each pool first runs one probe per worker that loads the image stack (`_ready`). If every probe
        failed, the workers die as they start or cannot import what they need: a broken installation,
        which would otherwise fail every image in turn. A probe that succeeded rules that out (a worker
        killed later, e.g. by the OOM killer on a huge image, is that image's attempt). Once found, the
        failure stays: the daemon stops, and its next start tries again with fresh processes."""
        probes = self._probes
        if self._failure is not None or not probes:
            return self._failure
        if not all(probe.done() and not probe.cancelled() for probe in probes):
            return None
        errors = [probe.exception() for probe in probes]
        if any(error is None for error in errors):
            return None
        error = errors[0]
        if isinstance(error, BrokenProcessPool):
            self._failure = "worker processes exit as soon as they start (their own error is logged above)"
        else:
            self._failure = f"worker processes cannot load the image stack: {type(error).__name__}: {error}"
        return self._failure

    def stop_starting(self) -> None:
        # Jobs still in the pool's own queue can be cancelled; those already handed to the workers' call
        # queue (up to workers + 1 of them) cannot, so the workers decline them through the event instead.
        self._stopping.set()
        self._quarantine.stop_starting()
        kept_back, self._pending = self._pending, []
        for _data, _params, _spool, job in kept_back:
            job.cancel()
        with self._jobs_lock:
            jobs = list(self._jobs)
        for future in jobs:
            future.cancel()  # False for a job already handed to the workers: fine

    def shutdown(self, *, cancel: bool) -> None:
        _shut_down(self._pool, cancel=cancel)
        self._quarantine.shutdown(cancel=cancel)

    def _forget_job(self, future: Future[JobOutcome]) -> None:
        with self._jobs_lock:
            self._jobs.discard(future)

    def _start_workers(self) -> None:
        try:
            with contextlib.suppress(RuntimeError):  # shut down meanwhile: fine
                self._send_probes()
        finally:
            self._probes_sent.set()

    def _send_probes(self) -> None:
        """Queue the current pool's probes; submitting them is what starts its workers."""
        try:
            self._probes = [self._pool.submit(_ready) for _ in range(self.workers)]
        except BrokenProcessPool as exc:  # broke while its first workers were being started
            broken: Future[None] = Future()
            broken.set_exception(exc)
            self._probes = [broken]

    def _new_pool(self, workers: int | None = None) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers or self.workers,
            mp_context=self._context,
            initializer=_init_worker,
            initargs=(os.getpid(), self._stopping),
        )

    def _replace_pool(self) -> None:
        log.warning("a worker process died; starting a new pool (affected images are retried)")
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()
        self._send_probes()


class _Quarantine:
    """Where an image runs whose last job died with its pool: alone, in a pool of one worker, one image at a time.

    A worker that dies in the shared pool breaks every job in flight there (concurrent.futures cannot tell which
    one it ran), so such a death says nothing about any one image: the daemon counts no attempt for it and sends
    each image it broke here (Executor.submit's `alone`). A worker that dies here was killed by that image: its
    job ends with TransientError(WORKER_DIED), an attempt the daemon counts, and the next image gets a fresh pool.
    So a poison image fails after its attempts, and the images that shared its pool only pay one run here each.
    """

    def __init__(self, new_pool: Callable[[], ProcessPoolExecutor]) -> None:
        self._new_pool = new_pool
        self._pool: ProcessPoolExecutor | None = None  # made when first needed (most runs never need it)
        self._waiting: collections.deque[_KeptBack] = collections.deque()
        self._busy = False
        self._stopped = False
        self._lock = threading.Lock()

    def submit(self, data: bytes | SourceFile, params: CompressParams, spool: str | None) -> Future[JobOutcome]:
        job: Future[JobOutcome] = Future()
        with self._lock:
            self._waiting.append((data, params, spool, job))
        self._start_next()
        return job

    def stop_starting(self) -> None:
        """Start no more (those waiting end cancelled); the one running goes on, as in the shared pool."""
        with self._lock:
            self._stopped = True
            waiting, self._waiting = list(self._waiting), collections.deque()
        for _data, _params, _spool, job in waiting:
            job.cancel()

    def shutdown(self, *, cancel: bool) -> None:
        self.stop_starting()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            _shut_down(pool, cancel=cancel)

    def _start_next(self) -> None:
        with self._lock:
            if self._busy or self._stopped or not self._waiting:
                return
            data, params, spool, job = self._waiting.popleft()
            self._busy = True
            if self._pool is None:
                self._pool = self._new_pool()
            pool = self._pool
        try:
            task = pool.submit(run_jobs, [(data, spool)], params)
        except Exception as exc:  # broken as it started (its worker could not start): the image is retried
            job.set_exception(TransientError(f"the pool for images run alone could not take this one: {exc}"))
            self._ended(None)
            return
        task.add_done_callback(functools.partial(self._settle, job))

    def _settle(self, job: Future[JobOutcome], task: Future) -> None:
        """Runs in the pool's manager thread when the image's task ends."""
        if not task.cancelled() and isinstance(task.exception(), BrokenProcessPool):
            job.set_exception(TransientError(WORKER_DIED))  # this image killed its worker
            self._ended(task)
        else:
            _settle_jobs([job], task)
            self._ended(None)

    def _ended(self, broken: Future | None) -> None:
        """One image done with; after a death, the next one gets a fresh pool."""
        with self._lock:
            self._busy = False
            pool = self._pool if broken is not None else None
            if pool is not None:
                self._pool = None
        if pool is not None:
            log.warning("a worker process died running one image alone; starting a new pool for the next")
            pool.shutdown(wait=False)
        self._start_next()


def _shut_down(pool: ProcessPoolExecutor, *, cancel: bool) -> None:
    """Shut `pool` down; with cancel, abandon running jobs, stopping their workers (SIGTERM, then SIGKILL)."""
    # ProcessPoolExecutor.shutdown() forgets its processes and manager thread (Python 3.11-3.13), so take
    # them first: a worker left running would be joined, without a bound, by multiprocessing's exit handler.
    processes = list((pool._processes or {}).values())
    manager = pool._executor_manager_thread
    pool.shutdown(wait=not cancel, cancel_futures=cancel)
    if cancel:
        _stop_processes(processes, timeout=STOP_SECONDS)
        if manager is not None:  # it notices the dead workers and settles their futures
            manager.join(STOP_SECONDS)


def create_executor(
    kind: str, *, workers: int, scheduler: str = "local", state: Path | None = None, inputs: Path | None = None
) -> Executor:
    """The executor named by ICSD_EXECUTOR. `state`: a folder in the output folder (its `.icsd`) where a Dask
    executor leaves the token by which a worker tells it sees the same files; `inputs`: the input folder, which
    Dask workers that see it read themselves (see DaskExecutor)."""
    if kind == "process":
        return ProcessExecutor(workers)
    if kind == "dask":
        try:
            from icsd.daemon.executor_dask import DaskExecutor
        except ImportError as exc:
            raise SettingsError(
                f"ICSD_EXECUTOR=dask needs the dask extra: pip install 'icsd[dask]' ({exc})"
            ) from None
        return DaskExecutor(scheduler, workers=workers, state=state, inputs=inputs)
    raise SettingsError(f"ICSD_EXECUTOR must be process or dask, got {kind!r}")


def _ready() -> None:
    """A pool's probe: submitting it starts a worker, running it proves the worker can load the image stack
    (preloaded by the fork server, so normally a no-op; the server ignores a preload that fails)."""
    from icsd.core import compress  # noqa: F401


_stopping: EventType | None = None  # in a worker: the executor's stop_starting event
_syncer: ThreadPoolExecutor | None = None  # in a worker: fsyncs its spooled outputs (see run_jobs)


def _run_job(data: bytes | SourceFile, params: CompressParams, spool: str | None = None) -> JobOutcome:
    """One image in a pool task: run_jobs' outcome for it, or what it raised."""
    (outcome,) = run_jobs([(data, spool)], params)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def run_jobs(
    jobs: list[tuple[bytes | SourceFile, str | None]], params: CompressParams
) -> list[JobOutcome | BaseException]:
    """Several images in one task (the pool's, or a Dask worker's): for each, in order, compress_job's outcome
    or what it raised (CancelledError(NOT_STARTED) once the daemon stopped starting jobs). An image given as a
    SourceFile is read here (SourceChanged if it is no longer that version), and its outcome carries the digest.
    With a `spool` path, the output is written there (see Executor.submit) instead of sent back: its fsync, which
    waits on the disk (~0.4 ms here, a tenth of a small image's work), runs on a thread while the next image is
    compressed; the task returns once every output is durable. An output that could not be spooled (no space,
    no folder yet) is sent back for the daemon to write, and to report why if it cannot either."""
    outcomes: list[JobOutcome | BaseException] = []
    syncing: list[tuple[int, Future[None]]] = []
    for source, spool in jobs:
        if _stopping is not None and _stopping.is_set():
            outcomes.append(CancelledError(NOT_STARTED))
            continue
        if isinstance(source, SourceFile):
            try:
                data = read_source(source)
            except SourceChanged as exc:
                outcomes.append(exc)
                continue
            outcome = dataclasses.replace(compress_job(data, params), digest=content_digest(data))
        else:
            outcome = compress_job(source, params)
        if spool is not None and outcome.result is not None:
            with contextlib.suppress(OSError):
                fd = begin_spool(spool, outcome.result.data)
                syncing.append((len(outcomes), _spool_syncer().submit(finish_spool, spool, fd)))
        outcomes.append(outcome)
    for index, synced in syncing:
        if synced.exception() is None:
            outcome = outcomes[index]
            assert isinstance(outcome, JobOutcome) and outcome.result is not None
            outcomes[index] = dataclasses.replace(outcome, result=dataclasses.replace(outcome.result, data=b""))
    return outcomes


def _spool_syncer() -> ThreadPoolExecutor:
    global _syncer
    if _syncer is None:
        _syncer = ThreadPoolExecutor(1, thread_name_prefix="icsd-spool-sync")
    return _syncer


def _settle_jobs(jobs: list[Future[JobOutcome]], task: Future) -> None:
    """Hand a pool task's outcome to the futures of the images in it (a cancelled or broken task: to each)."""
    if task.cancelled():
        for job in jobs:
            job.cancel()
        return
    error = task.exception()
    outcomes = [error] * len(jobs) if error is not None else task.result()
    for job, outcome in zip(jobs, outcomes, strict=True):
        if job.done():
            continue
        if isinstance(outcome, BaseException):
            job.set_exception(outcome)
        else:
            job.set_result(outcome)


def _init_worker(parent: int, stopping: EventType) -> None:
    global _stopping
    _stopping = stopping
    init_worker()
    _exit_with_parent(parent)


def _exit_with_parent(parent: int) -> None:
    """Exit when the daemon dies, even by SIGKILL: otherwise workers wait forever on their queue.

    A pidfd becomes readable when the process exits (Linux >= 5.3); where pidfds are missing,
    workers rely on the service manager killing the whole control group (systemd's default).
    """
    try:
        pidfd = os.pidfd_open(parent)
    except (AttributeError, OSError):
        return

    def watch() -> None:
        select.select([pidfd], [], [])
        os._exit(1)

    threading.Thread(target=watch, name="icsd-parent-watch", daemon=True).start()


def _stop_processes(processes: list[BaseProcess], *, timeout: float) -> None:
    """SIGTERM `processes` and wait up to `timeout` for them to exit; SIGKILL any that did not, and wait again.

    (ProcessPoolExecutor has no public way to stop running workers before Python 3.14's terminate_workers.)
    """
    for stop in (BaseProcess.terminate, BaseProcess.kill):
        alive = [process for process in processes if process.is_alive()]
        for process in alive:
            stop(process)
        deadline = time.monotonic() + timeout
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
    stuck = [process.pid for process in processes if process.is_alive()]
    if stuck:
        log.warning("worker processes %s did not exit even after SIGKILL", stuck)
