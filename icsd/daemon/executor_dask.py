"""Run compression jobs on a Dask cluster (ICSD_EXECUTOR=dask): scale out past one machine.

Longer than ~400 lines on purpose: submission, batching of small images and lost-worker reporting share
one client's state and lifecycle; split, they would pass it around.

Only bytes and a frozen params object cross the wire, so workers need icsd installed but no shared
file system. A worker that does see the daemon's output folder (the same machine, or a shared file system:
it finds the token this executor left there) writes each output beside its final place, as a pool worker
does, and sends back only the stats; the others send the PNG's bytes, which the daemon writes. When every
worker sees the input folder too, they read new inputs themselves (inputs.SourceFile), as pool workers do. The daemon
stays the single watcher and journal owner and consumes each future once, so a task the scheduler re-ran
on another worker (because its first worker died) is placed once.

Small images travel several to a task (up to BATCH_IMAGES, each under SMALL_IMAGE_BYTES): a Dask
task costs milliseconds of scheduling and round trips, as much as compressing a 640x480 frame, so
one task per small image ran at half the pool's speed. Submits wait at most BATCH_WAIT seconds for
companions; a batch never takes more than its share of the pending images, so every worker gets
work. Large images go alone, in the daemon's largest-first order. See docs/dask.md.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, InvalidStateError, wait
from contextlib import suppress
from functools import partial
from pathlib import Path

import dask
from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin
from distributed import Future as DaskFuture
from distributed.comm import get_address_host_port, parse_address

from icsd.core import CompressParams, JobOutcome
from icsd.daemon.executor import BATCH_IMAGES, SMALL_IMAGE_BYTES, batches_to_send, run_jobs
from icsd.daemon.fork_server import limit_native_threads
from icsd.daemon.inputs import SourceFile, job_size
from icsd.daemon.output import write_atomic
from icsd.errors import SettingsError, TransientError

__all__ = ["CONNECT_TIMEOUT", "GATHER_TIMEOUT", "RECONNECT_PAUSE", "RECONNECT_TIMEOUT", "DaskExecutor"]

log = logging.getLogger("icsd.executor")

CONNECT_TIMEOUT = 10.0  # seconds to reach a remote scheduler before giving up
GATHER_TIMEOUT = 120.0  # bound on fetching one finished result: a stuck fetch becomes a retry, never a hang
# After a failed reconnect, submits fail fast for this long: each attempt blocks the daemon's loop.
RECONNECT_PAUSE = 30.0
RECONNECT_TIMEOUT = 2.0  # a scheduler that is back answers at once
BATCH_WAIT = 0.004  # seconds a submit waits for companions before its batch leaves anyway
TOKEN_NAME = "dask-token"  # in the output folder's .icsd: see _sees_our_files


class _Job:
    """One image on its way: its bytes or file (until sent), its name for log lines, and the daemon's future."""

    __slots__ = ("bridge", "data", "name", "spool")

    def __init__(
        self, data: bytes | SourceFile, name: str, bridge: Future[JobOutcome], spool: str | None = None
    ) -> None:
        self.data: bytes | SourceFile | None = data
        self.name = name
        self.bridge = bridge
        self.spool = spool


class DaskExecutor:
    """Submit each job as one Dask task and bridge its future to a `concurrent.futures.Future`.

    `scheduler="local"` starts a LocalCluster of `workers` single-threaded worker processes that this
    executor owns and closes. Any other value is the address of a scheduler we only connect to; its
    cluster size is the operator's business, and `workers` then only sets the daemon's in-flight bound.

    Worker death needs no code here: the scheduler re-runs the task elsewhere and only gives up with
    KilledWorker after `distributed.scheduler.allowed-failures` deaths; that, a lost scheduler or a
    cancel becomes a TransientError on the future, which the daemon retries later.
    """

    name = "dask"
    writes_spool = True  # by the workers that see the token in `state` (the others send bytes)

    def __init__(
        self, scheduler: str, *, workers: int, connect_timeout: float = CONNECT_TIMEOUT, state: Path | None = None,
        inputs: Path | None = None,
    ) -> None:
        """`state`: a folder in the daemon's output folder, where a random token for this run is left: a worker
        that reads the same token there sees the same files, and writes its outputs to the spool paths.
        `inputs`: the input folder; when every worker connected at the start sees it and the token, they read new
        inputs themselves (`reads_inputs`, see _workers_share_files)."""
        self.scheduler = scheduler
        self._token = _leave_token(state)
        self.workers = workers
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._jobs: dict[str, tuple[DaskFuture, list[_Job]]] = {}  # by task key
        self._wake = threading.Condition(self._lock)
        self._pending: list[_Job] = []  # small images waiting for companions (sent by the batcher thread)
        self._pending_params: CompressParams | None = None
        self._pending_since = 0.0
        self._batcher_stop = False  # set by shutdown: the batcher sends what waits, then ends
        self._closed = False
        self._next_reconnect = 0.0
        self._cluster: LocalCluster | None = None
        if scheduler == "local":
            self._cluster = _start_local_cluster(workers)
            try:
                self._client = Client(self._cluster, set_as_default=False)
                self._client.register_plugin(_LocalWorkerSetup(), name="icsd-local-worker")
            except BaseException:
                self._cluster.close()
                raise
        else:
            self._client = self._connect()
            if not self._client.nthreads():
                log.warning("dask scheduler %s has no workers yet; jobs wait until one joins", scheduler)
        self._threads = max(workers, sum(self._client.nthreads().values()), 1)
        self.reads_inputs = self._cluster is not None or self._workers_share_files(inputs)
        self._watch_workers(self._client)
        self._batcher = threading.Thread(target=self._run_batcher, name="icsd-dask-batcher", daemon=True)
        self._batcher.start()

    def _workers_share_files(self, inputs: Path | None) -> bool:
        """Do the workers connected now see the daemon's files (its token, and the input folder)? Then new inputs
        are theirs to read (Executor.reads_inputs): the daemon neither reads nor sends them. A worker that joins
        later and does not see them refuses such an image (SourceChanged: no such file); the daemon then admits
        it again and sends its bytes. Asked once, for at most the connect timeout (a silent worker: no)."""
        if inputs is None or self._token is None:
            return False
        answers: dict[str, object] = {}

        def ask_workers() -> None:
            with suppress(Exception):  # a scheduler or worker that fails to answer: no
                answers.update(self._client.run(_sees_inputs, self._token, str(inputs), on_error="return"))

        ask = threading.Thread(target=ask_workers, name="icsd-dask-probe", daemon=True)
        ask.start()
        ask.join(self._connect_timeout)
        return not ask.is_alive() and bool(answers) and all(answer is True for answer in answers.values())

    @property
    def in_flight_hint(self) -> int:
        """Images the daemon should keep in flight: two full batches per worker thread, so a worker never
        waits for the round trip of its next task (the process pool needs only 2 per worker)."""
        return 2 * BATCH_IMAGES * self._threads

    def submit(
        self, data: bytes | SourceFile, params: CompressParams, *, name: str = "", spool: str | None = None,
        alone: bool = False,
    ) -> Future[JobOutcome]:
        """`name` (the image's relative path) only appears in log lines about lost workers. `spool`: see
        Executor.submit; a worker that does not see the daemon's files sends the bytes. `alone`: see
        Executor.submit."""
        self._live_client()  # a lost scheduler refuses the job now, not after the batch wait
        bridge: Future[JobOutcome] = Future()
        bridge.set_running_or_notify_cancel()  # the daemon never cancels a job; cancel() becomes a no-op
        size = job_size(data)
        job = _Job(data, name or f"{size}-byte image", bridge, spool)
        if alone or size >= SMALL_IMAGE_BYTES:
            self._send([job], params)
            return bridge
        with self._wake:
            if self._pending and self._pending_params != params:
                batch, self._pending = self._pending, []
                self._send_later(batch)
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append(job)
            self._pending_params = params
            self._wake.notify()
        return bridge

    def flush(self) -> None:
        """Nothing to do: the batcher thread sends small images itself, after at most BATCH_WAIT."""

    def healthy(self) -> bool:
        """Connected to the scheduler, which has at least one worker (one round trip)."""
        if self._closed or self._client.status != "running":
            return False
        try:
            return bool(self._client.nthreads())
        except Exception:  # a scheduler that stopped answering is unhealthy, whatever the error
            return False

    def failure(self) -> str | None:
        """None: Dask reports a lost worker per job (KilledWorker, counted as that image's attempt) and a lost
        scheduler through healthy()."""
        return None

    def stop_starting(self) -> None:
        """Images still waiting for companions end now (never sent). Tasks already sent may still start:
        a client cannot tell a task a worker has begun from a queued one without a scheduler round trip
        per task; the drain bound then cancels them."""
        with self._wake:
            batch, self._pending = self._pending, []
        for job in batch:
            _resolve(job.bridge, error=CancelledError())

    def shutdown(self, *, cancel: bool) -> None:
        with self._wake:
            if self._batcher_stop:
                return
            self._batcher_stop = True
            self._wake.notify()
        self._batcher.join()  # sends what was waiting for companions
        with self._lock:
            self._closed = True
            tasks = list(self._jobs.values())
        bridges = [job.bridge for _, jobs in tasks for job in jobs]
        if cancel:
            with suppress(Exception):  # an already lost scheduler has nothing left to cancel
                self._client.cancel([task for task, _ in tasks])
        else:
            wait(bridges)
        with suppress(Exception):
            self._client.unsubscribe_topic("all")  # else the scheduler logs a CRITICAL line about our closed comm
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        for bridge in bridges:  # callbacks that never ran after the close still owe the daemon an answer
            _resolve(bridge, error=TransientError("the dask executor shut down before this image finished"))

    @property
    def client(self) -> Client:
        """The distributed Client (diagnostics and tests)."""
        return self._client

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (fault tests kill one of them)."""
        return list(self._client.run(os.getpid).values())

    # -- private ----------------------------------------------------------------------------------

    def _connect(self) -> Client:
        try:
            return self._open_client(self._connect_timeout)
        except Exception as exc:  # refused, unresolvable, bad scheme, or not a dask scheduler at all
            raise SettingsError(
                f"ICSD_DASK_SCHEDULER={self.scheduler}: cannot reach a dask scheduler ({exc}); check that "
                "`dask scheduler` runs there, that the address is tcp://HOST:PORT (default port 8786) and "
                "that no firewall blocks it, or use 'local' for a cluster on this machine"
            ) from None

    def _live_client(self) -> Client:
        """The client, reconnected if a remote scheduler went away for longer than Dask's own retry."""
        if self._closed:
            raise TransientError("the dask executor is shut down")
        if self._client.status in ("closing", "closed") and self._cluster is None:
            if time.monotonic() < self._next_reconnect:
                raise TransientError(f"dask scheduler {self.scheduler} is unreachable; will try again shortly")
            try:
                self._client = self._open_client(RECONNECT_TIMEOUT)
            except Exception as exc:
                self._next_reconnect = time.monotonic() + RECONNECT_PAUSE
                raise TransientError(f"dask scheduler {self.scheduler} is unreachable: {exc}") from None
            self._watch_workers(self._client)
            log.info("reconnected to dask scheduler %s", self.scheduler)
        return self._client

    def _open_client(self, timeout: float) -> Client:
        """A Client for the remote scheduler, after a TCP probe: a refused connection then fails at once
        (a Client retries it until its timeout) and leaves no event-loop thread behind, as a failed
        Client does on every attempt."""
        if parse_address(self.scheduler)[0] in ("tcp", "tls"):  # other protocols: the Client finds out
            with socket.create_connection(get_address_host_port(self.scheduler), timeout=timeout):
                pass
        return Client(self.scheduler, timeout=timeout, set_as_default=False)

    # -- batching ---------------------------------------------------------------------------------

    def _run_batcher(self) -> None:
        """Send waiting small images as batches, Nagle-style: a full batch at once; a partial one only when
        a worker thread has nothing queued (fewer of our tasks out than threads) and BATCH_WAIT has passed.
        So batches grow by themselves while the workers are busy, and a lone image waits 4 ms at most."""
        while True:
            with self._wake:
                while not self._batcher_stop and not self._ready_to_send():
                    self._wake.wait(self._wait_seconds())
                pending, params = self._pending, self._pending_params
                sizes = batches_to_send(len(pending), self._threads - len(self._jobs), everything=self._batcher_stop)
                jobs, self._pending = pending[: sum(sizes)], pending[sum(sizes) :]  # the rest waits for companions
                if self._pending:
                    self._pending_since = time.monotonic()
                stop = self._batcher_stop
            if jobs and params is not None:
                start = 0
                for size in sizes:
                    self._send(jobs[start : start + size], params)
                    start += size
            if stop:
                return

    def _wait_seconds(self) -> float | None:
        """(lock held) Until the partial batch's BATCH_WAIT ends if a thread is idle; else until notified."""
        if self._pending and len(self._jobs) < self._threads:
            return max(0.0, self._pending_since + BATCH_WAIT - time.monotonic())
        return None

    def _ready_to_send(self) -> bool:
        """(lock held) A full batch waits, or a partial one may leave (a thread is idle, BATCH_WAIT is over)."""
        if len(self._pending) >= BATCH_IMAGES:
            return True
        return (bool(self._pending) and len(self._jobs) < self._threads
                and time.monotonic() >= self._pending_since + BATCH_WAIT)

    def _send_later(self, jobs: list[_Job]) -> None:
        """(lock held) A batch with other params than the new image's: sent at once, by a short thread."""
        params = self._pending_params
        assert params is not None
        threading.Thread(target=self._send, args=(jobs, params), daemon=True).start()

    def _send(self, jobs: list[_Job], params: CompressParams) -> None:
        """One task for `jobs`; a refused submit (lost scheduler) becomes a retry for each image."""
        datas = [job.data for job in jobs]
        for job in jobs:
            job.data = None  # the task holds the bytes now
        try:
            client = self._live_client()
            # A task carries its own bytes: the intended shape, so a large photo is no reason for Dask's
            # "large graph" warning. retries=0: compress_job reports bad images in its outcome, and anything
            # it raises is retried by the daemon with backoff and attempt counting.
            with dask.config.set({"distributed.admin.large-graph-warning-threshold": "2GiB"}):
                task = client.submit(_compress_on_worker, datas, params, [job.spool for job in jobs], self._token,
                                     pure=False, retries=0)
        except Exception as exc:
            error = exc if isinstance(exc, TransientError) else TransientError(f"dask refused the job: {exc}")
            for job in jobs:
                _resolve(job.bridge, error=error)
            return
        with self._lock:
            self._jobs[task.key] = (task, jobs)
        task.add_done_callback(partial(self._settle, jobs, params, datas))

    def _settle(self, jobs: list[_Job], params: CompressParams, datas: list[bytes], task: DaskFuture) -> None:
        """Runs in Dask's callback thread: fetch the outcomes, or turn engine failures into retries."""
        try:
            outcomes = task.result(timeout=GATHER_TIMEOUT)
        except KilledWorker as exc:
            if len(jobs) > 1:  # one of them may be what kills workers: each alone, so only it pays
                log.warning("dask workers kept dying while running %s; running each of them alone",
                            _names(jobs))
                for job, data in zip(jobs, datas, strict=True):
                    job.data = data
                    self._send([job], params)
                return
            _fail_all(jobs, TransientError(f"dask workers kept dying while running this image: {exc}"))
        except (CancelledError, asyncio.CancelledError) as exc:
            _fail_all(jobs, TransientError(f"dask cancelled the job: {exc}"))
        except Exception as exc:
            if task.status == "error":  # the batch function itself raised: pass it on, as the pool does
                _fail_all(jobs, exc)
            else:
                _fail_all(jobs, TransientError(f"could not fetch the result from dask: {exc!r}"))
        else:
            for job, outcome in zip(jobs, outcomes, strict=True):
                if isinstance(outcome, BaseException):  # compress_job raised for this image
                    _resolve(job.bridge, error=outcome)
                else:
                    _resolve(job.bridge, result=outcome)
        finally:
            with self._wake:
                self._jobs.pop(task.key, None)
                self._wake.notify()  # a thread may be idle now: a partial batch can leave

    # -- lost workers ------------------------------------------------------------------------------

    def _watch_workers(self, client: Client) -> None:
        """Subscribe to the scheduler's worker-removal events: a lost worker is one WARNING per task of ours."""
        with suppress(Exception):  # diagnostics only: a scheduler that refuses costs us no image
            client.subscribe_topic("all", self._on_cluster_event)

    def _on_cluster_event(self, event: tuple[float, dict]) -> None:
        """Runs on the client's event loop: look up our tasks the removed worker held; log; nothing else."""
        _, msg = event
        if not isinstance(msg, dict) or msg.get("action") != "remove-worker":
            return
        worker = msg.get("worker", "?")
        expected = " (retired)" if msg.get("expected") else ""
        with self._lock:
            running = [self._jobs[k][1] for k in msg.get("processing-tasks", ()) if k in self._jobs]
            unfetched = [self._jobs[k][1] for k in msg.get("lost-computed-tasks", ()) if k in self._jobs]
        for jobs in running:
            log.warning("dask worker %s%s was lost while running %s; the scheduler runs it again on another "
                        "worker", worker, expected, _names(jobs))
        for jobs in unfetched:
            log.warning("dask worker %s%s was lost holding the result of %s before icsd fetched it; the "
                        "scheduler computes it again", worker, expected, _names(jobs))


class _LocalWorkerSetup(WorkerPlugin):
    """Local workers share our terminal's process group: let Ctrl-C reach only the daemon, which
    then drains; otherwise every worker would die mid-image and be restarted by its nanny."""

    def setup(self, worker: object) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


_thread_state = threading.local()
NANNY_MALLOC_TRIM = "65536"  # MALLOC_TRIM_THRESHOLD_ as Dask's nanny sets it (distributed.nanny.pre-spawn-environ)


def _undo_nanny_malloc_trim() -> None:
    """In a worker process that Dask's nanny started with MALLOC_TRIM_THRESHOLD_=65536: put glibc's mmap and trim
    thresholds where its own dynamic adjustment ends (32 and 64 MiB; setting the variable froze the mmap threshold
    at 128 KiB). Frozen there, every array of an image's work is mmapped and unmapped again, its pages faulted in
    anew for each image: Dask workers used ~35 % more CPU per small image than pool workers, twice the system
    time (bench/smallfiles.py: 5,000 images in 18.9 s against 22.6 s, median of 2). Idempotent."""
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") != NANNY_MALLOC_TRIM:
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
    except (OSError, AttributeError):  # not glibc
        pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt(3)'s parameter numbers


def _compress_on_worker(
    datas: Sequence[bytes], params: CompressParams, spools: Sequence[str | None] | None = None,
    token: tuple[str, str] | None = None,
) -> list[JobOutcome | BaseException]:
    """compress_job for each image, with one BLAS/OpenMP thread per task thread, so N task threads use N
    cores; each output written to its spool path when this worker sees the daemon's files (`token`: where the
    daemon left it, and what it says), else sent back. As in the process pool (executor.run_jobs, which this
    runs): an exception from one image is returned in its place, the others of the batch are not lost with it.

    Nannies already export OMP_NUM_THREADS=1 and friends, but a worker started without one does not;
    OpenMP limits are per calling thread, hence once per task thread rather than once per process.
    """
    if not getattr(_thread_state, "limited", False):
        limit_native_threads()
        _undo_nanny_malloc_trim()
        _thread_state.limited = True
    if spools is None or not _sees_our_files(token):
        spools = [None] * len(datas)
    return run_jobs(list(zip(datas, spools, strict=True)), params)


_seen_tokens: dict[tuple[str, str], bool] = {}  # in a worker: the daemons' tokens it found (or not)


def _sees_inputs(token: tuple[str, str], inputs: str) -> bool:
    """On a worker: does it see the daemon's files, the input folder too (DaskExecutor._workers_share_files)?"""
    return _sees_our_files(token) and os.path.isdir(inputs)


def _sees_our_files(token: tuple[str, str] | None) -> bool:
    """Does this worker see the daemon's output folder? It does if the daemon's token file holds the same random
    text here: the same machine, or a shared file system. A worker elsewhere finds no such file (or, on a machine
    with the same paths, another daemon's token), and must not write outputs there. Read once per daemon run."""
    if token is None:
        return False
    if token not in _seen_tokens:
        path, text = token
        try:
            with open(path, encoding="ascii") as handle:
                _seen_tokens[token] = handle.read() == text
        except (OSError, ValueError):
            _seen_tokens[token] = False
    return _seen_tokens[token]


def _leave_token(state: Path | None) -> tuple[str, str] | None:
    """Write a random token for this run into `state` (see _sees_our_files); None if there is nowhere to."""
    if state is None:
        return None
    text = secrets.token_hex(16)
    try:
        write_atomic(state, TOKEN_NAME, text.encode("ascii"))
    except (OSError, ValueError) as exc:
        log.debug("no token for dask workers in %s (%s): every worker sends its outputs back", state, exc)
        return None
    return str(state / TOKEN_NAME), text


def _start_local_cluster(workers: int) -> LocalCluster:
    # processes=True: the core is CPU-bound Python/numpy, so threads would share one GIL.
    # The scheduler always serves HTTP (status, and the dashboard if bokeh is installed): on a free
    # loopback port, because the default 8787 warns and moves when a second cluster runs.
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address="127.0.0.1:0",
    )


def _names(jobs: Sequence[_Job], shown: int = 4) -> str:
    names = ", ".join(job.name for job in jobs[:shown])
    return names + (f" and {len(jobs) - shown} more" if len(jobs) > shown else "")


def _fail_all(jobs: Sequence[_Job], error: BaseException) -> None:
    for job in jobs:
        _resolve(job.bridge, error=error)


def _resolve(
    bridge: Future[JobOutcome], *, result: JobOutcome | None = None, error: BaseException | None = None
) -> None:
    """Settle the bridge once; a later settle (shutdown racing a callback) is ignored."""
    with suppress(InvalidStateError):
        if error is not None:
            bridge.set_exception(error)
        else:
            bridge.set_result(result)  # type: ignore[arg-type]
