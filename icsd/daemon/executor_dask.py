"""Run compression jobs on a Dask cluster (ICSD_EXECUTOR=dask): scale out past one machine.

Only bytes and a frozen params object cross the wire, so workers need icsd installed but no shared
file system. The daemon stays the single watcher, journal owner and writer and consumes each future
once, so a task the scheduler re-ran on another worker (because its first worker died) is written once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import CancelledError, Future, InvalidStateError, wait
from contextlib import suppress
from functools import partial

import dask
from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin
from distributed import Future as DaskFuture
from distributed.comm import get_address_host_port, parse_address

from icsd.core import CompressParams, JobOutcome, compress_job
from icsd.daemon.fork_server import limit_native_threads
from icsd.errors import SettingsError, TransientError

__all__ = ["CONNECT_TIMEOUT", "GATHER_TIMEOUT", "RECONNECT_PAUSE", "RECONNECT_TIMEOUT", "DaskExecutor"]

log = logging.getLogger("icsd.executor")

CONNECT_TIMEOUT = 10.0  # seconds to reach a remote scheduler before giving up
GATHER_TIMEOUT = 120.0  # bound on fetching one finished result: a stuck fetch becomes a retry, never a hang
# After a failed reconnect, submits fail fast for this long: each attempt blocks the daemon's loop.
RECONNECT_PAUSE = 30.0
RECONNECT_TIMEOUT = 2.0  # a scheduler that is back answers at once


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

    def __init__(self, scheduler: str, *, workers: int, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.scheduler = scheduler
        self.workers = workers
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._jobs: dict[str, tuple[DaskFuture, Future[JobOutcome]]] = {}
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

    def submit(self, data: bytes, params: CompressParams) -> Future[JobOutcome]:
        client = self._live_client()
        bridge: Future[JobOutcome] = Future()
        bridge.set_running_or_notify_cancel()  # the daemon never cancels a job; cancel() becomes a no-op
        # One image is one task carrying its own bytes: the intended shape, so a large photo is no
        # reason for Dask's "large graph" warning. retries=0: compress_job reports bad images in its
        # outcome, and anything it raises is retried by the daemon with backoff and attempt counting.
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "2GiB"}):
            task = client.submit(_compress_on_worker, data, params, pure=False, retries=0)
        with self._lock:
            self._jobs[task.key] = (task, bridge)
        task.add_done_callback(partial(self._settle, bridge))
        return bridge

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
        """Nothing: a client cannot tell a task a worker has begun from a queued one without a scheduler
        round trip per task, so queued tasks may still start during the drain; its bound then cancels them."""

    def shutdown(self, *, cancel: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            jobs = list(self._jobs.values())
        if cancel:
            with suppress(Exception):  # an already lost scheduler has nothing left to cancel
                self._client.cancel([task for task, _ in jobs])
        else:
            wait([bridge for _, bridge in jobs])
        with suppress(Exception):
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        for _, bridge in jobs:  # callbacks that never ran after the close still owe the daemon an answer
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

    def _settle(self, bridge: Future[JobOutcome], task: DaskFuture) -> None:
        """Runs in Dask's callback thread: fetch the outcome, or turn engine failures into retries."""
        try:
            outcome = task.result(timeout=GATHER_TIMEOUT)
        except KilledWorker as exc:
            _resolve(bridge, error=TransientError(f"dask workers kept dying while running this image: {exc}"))
        except (CancelledError, asyncio.CancelledError) as exc:
            _resolve(bridge, error=TransientError(f"dask cancelled the job: {exc}"))
        except Exception as exc:
            if task.status == "error":  # compress_job itself raised: pass it on, as the process pool does
                _resolve(bridge, error=exc)
            else:
                _resolve(bridge, error=TransientError(f"could not fetch the result from dask: {exc!r}"))
        else:
            _resolve(bridge, result=outcome)
        finally:
            with self._lock:
                self._jobs.pop(task.key, None)


class _LocalWorkerSetup(WorkerPlugin):
    """Local workers share our terminal's process group: let Ctrl-C reach only the daemon, which
    then drains; otherwise every worker would die mid-image and be restarted by its nanny."""

    def setup(self, worker: object) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


_thread_state = threading.local()


def _compress_on_worker(data: bytes, params: CompressParams) -> JobOutcome:
    """compress_job with one BLAS/OpenMP thread per task thread, so N task threads use N cores.

    Nannies already export OMP_NUM_THREADS=1 and friends, but a worker started without one does not;
    OpenMP limits are per calling thread, hence once per task thread rather than once per process.
    """
    if not getattr(_thread_state, "limited", False):
        limit_native_threads()
        _thread_state.limited = True
    return compress_job(data, params)


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


def _resolve(
    bridge: Future[JobOutcome], *, result: JobOutcome | None = None, error: BaseException | None = None
) -> None:
    """Settle the bridge once; a later settle (shutdown racing a callback) is ignored."""
    with suppress(InvalidStateError):
        if error is not None:
            bridge.set_exception(error)
        else:
            bridge.set_result(result)  # type: ignore[arg-type]
