"""The daemon shell: watcher -> journal -> executor -> durable writer, with progress and shutdown.

One coordinator thread owns the journal and every file operation; the watcher and the executor
only put events on its queue. That keeps SQLite single-threaded and the ordering of "output
durable -> journal done -> original disposed" in one place.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import logging
import os
import queue
import stat
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from icsd import __version__
from icsd.core import CompressParams, JobOutcome, Result
from icsd.daemon.delivery import (
    Identity,
    Outputs,
    StorageFull,
    StorageGate,
    Task,
    UnsafePathError,
    identity_of,
    replaced,
)
from icsd.daemon.executor import NOT_STARTED, WORKER_DIED, Executor, create_executor
from icsd.daemon.inputs import printable, read_regular, scan_tree
from icsd.daemon.journal import FileId, Journal, content_digest
from icsd.daemon.manifest import done_stats
from icsd.daemon.metrics import Metrics, NullMetrics, create_metrics
from icsd.daemon.notify import Notifier, WatchdogPinger
from icsd.daemon.output import output_name, output_names, remove_stray_temps
from icsd.daemon.progress import Tally, human_duration, image_fields, image_line, images
from icsd.errors import EX_SOFTWARE, IcsdError, InputError, TransientError
from icsd.settings import Settings

__all__ = ["Service", "RunOutcome"]

if TYPE_CHECKING:
    from icsd.daemon.watcher import Watcher

log = logging.getLogger("icsd")

TICK_SECONDS = 0.2
DISK_FULL_PROBE_SECONDS = 5.0  # how often held results are retried while output/journal storage is full


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended: the exit code for the CLI and the counts."""

    exit_code: int
    tally: Tally


class Service:
    """Compress every image that arrives in the input folder (`watch`), or that is there (`batch`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        mode: Literal["watch", "batch"] = "watch",
        stop_event: threading.Event | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.settings = settings
        self.params: CompressParams = settings.validate_all()
        self.mode = mode
        self.stop_event = stop_event or threading.Event()
        self.input_root = settings.input_dir.resolve()
        self.output_root = settings.output_dir.resolve()
        self.failed_root = settings.failed_path.resolve()
        self.archive_root = settings.archive_dir.resolve() if settings.archive_dir else None
        self.tally = Tally(grey=self.params.grayscale)
        self.in_flight_limit = 2 * settings.worker_count
        self._executor = executor
        self._events: queue.Queue[tuple] = queue.Queue()
        self._backlog: deque[Path] = deque()
        self._waiting: set[str] = set()  # rels in the backlog or the retry heap
        self._in_flight: dict[str, Task] = {}
        self._recheck: dict[str, Path] = {}  # rels that changed while in flight or held: looked at again after
        self._retries: list[tuple[float, str, Path]] = []
        self._read_failures: dict[str, int] = {}  # unreadable files have no journal row yet
        self._held: list[tuple[Task, Future[JobOutcome]]] = []  # finished jobs waiting for disk space
        self._storage = StorageGate(DISK_FULL_PROBE_SECONDS)
        self.outputs = Outputs(
            self.output_root, self.failed_root, archive_root=self.archive_root, on_success=settings.on_success
        )
        self._last_completion = time.monotonic()
        self._scan_done = threading.Event()
        self._draining = False  # set by _drain: a cancelled job is then one the executor never started
        self._watcher: Watcher | None = None
        self._executor_in_use: Executor | None = None
        self.metrics: Metrics | NullMetrics = NullMetrics()
        self.on_progress: list = []  # callables(fields) — the batch progress bar hooks in here

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run loop to stop taking files and drain (safe from a signal handler)."""
        self.stop_event.set()

    def run(self) -> RunOutcome:
        """Run until stopped (watch) or until the folder is done (batch); returns the exit code."""
        for folder in (self.input_root, self.output_root, self.failed_root, self.settings.state_path):
            folder.mkdir(parents=True, exist_ok=True)
        # Before touching anything shared: one icsd per journal, and one per output folder (two daemons with
        # their own journals would otherwise both write a.png there).
        state = self.settings.state_path.resolve()
        self._locks: list[BinaryIO] = []
        try:
            self._locks.append(_hold_lock(state / "lock", f"the state folder {state}"))
            self._locks.append(_hold_lock(self.output_root / ".icsd" / "output.lock",
                                          f"the output folder {self.output_root}"))
        except TransientError:
            for lock in self._locks:
                lock.close()
            raise
        stray = sum(remove_stray_temps(root) for root in self._our_roots())  # logged after the first line
        self.journal = Journal(self.settings.state_path.resolve() / "journal.sqlite3")
        self.metrics = create_metrics(self.settings.metrics_port, self.settings.metrics_host)
        self.metrics.set_runtime_source(lambda: self.tally.runtime)
        executor = self._executor_in_use = self._executor or create_executor(
            self.settings.executor, workers=self.settings.worker_count, scheduler=self.settings.dask_scheduler
        )
        watcher = self._watcher = self._start_discovery()
        self._requeue_unfinished()
        notifier = Notifier()
        pinger = WatchdogPinger(notifier, healthy=self.healthy, status=self.status_text)
        notifier.ready(self.status_text())
        pinger.start()
        log.info(
            "icsd %s %s: %s -> %s, %s, %d colours%s, %d %s workers",
            __version__,
            "watching" if self.mode == "watch" else "batch",
            self.input_root,
            self.output_root,
            self.params.strategy,
            self.params.colors,
            ", grayscale" if self.params.grayscale else "",
            self.settings.worker_count,
            executor.name,
        )
        if stray:
            log.info("removed %d temporary files left by an earlier crash", stray)
        exit_code = 0
        try:
            exit_code = self._loop(executor, watcher)
        finally:
            notifier.stopping("draining images in progress")
            pinger.stop()
            if watcher is not None:
                watcher.stop()
            self._drain(executor)
            self.journal.close()
            for lock in self._locks:
                lock.close()
            self.metrics.stop()
            notifier.close()
            log.info("icsd stopped: %s", self.tally.summary())  # also when interrupted (Ctrl-C in batch)
        if self.mode == "batch" and self.tally.failed and not exit_code:
            exit_code = 1
        return RunOutcome(exit_code, self.tally)

    # -- the coordinator loop -----------------------------------------------------------------

    def _loop(self, executor: Executor, watcher: Watcher | None) -> int:
        while not self.stop_event.is_set():
            if self.mode == "batch" and self._scan_done.is_set() and self._idle():
                return 0  # checked before waiting: an empty folder must not cost a tick
            self._handle_events(timeout=TICK_SECONDS)
            failure = executor.failure()
            if failure is not None:
                log.error("%s; icsd stops without failing any image: they are retried on the next start", failure)
                return EX_SOFTWARE
            self._release_due_retries()
            self._flush_held_results()
            self._fill(executor)
            self.metrics.set_queue_depth(len(self._backlog) + len(self._retries))
            self.metrics.set_in_flight(len(self._in_flight))
            if watcher is not None and not watcher.healthy():
                log.error("the folder watcher stopped working (%s); exiting so the service manager restarts icsd",
                          watcher.failure())
                return EX_SOFTWARE
        log.info("stopping: no new files are taken; waiting up to %g s for %s in progress",
                 self.settings.drain_seconds, images(len(self._in_flight)))
        return 0

    def _idle(self) -> bool:
        return not (self._backlog or self._in_flight or self._retries or self._held or not self._events.empty())

    def _handle_events(self, timeout: float) -> None:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            kind, payload = event
            if kind == "ready":
                self._enqueue(payload)
            elif kind == "done":
                self._finish(*payload)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return

    def _fill(self, executor: Executor) -> None:
        while self._backlog and len(self._in_flight) < self.in_flight_limit:
            if self._held or self._storage.blocked():
                return
            path = self._backlog.popleft()
            rel = self._rel(path)
            self._waiting.discard(rel)
            try:
                self._start(executor, path)
            except TransientError as exc:  # the journal cannot be written (disk full, locked): try again later
                self._backlog.appendleft(path)
                self._waiting.add(rel)
                self._storage.failed(exc.message)

    # -- starting a job ---------------------------------------------------------------------

    def _enqueue(self, path: Path) -> None:
        rel = self._rel(path)
        if rel in self._in_flight or any(task.rel == rel for task, _future in self._held):
            self._recheck[rel] = path  # a new version arrived while the old one is being handled
            return
        if rel in self._waiting:
            return
        self._waiting.add(rel)
        self._backlog.append(path)

    def _start(self, executor: Executor, path: Path) -> None:
        rel = self._rel(path)
        if self._settled_by_metadata(rel, path):
            return
        try:
            data, info = read_regular(path)
        except FileNotFoundError:
            log.debug("%s vanished before it was read", rel)
            return
        except InputError as exc:
            log.warning("%s: %s", rel, exc.message)
            return
        except OSError as exc:
            self._retry_later(rel, path, f"cannot read: {exc.strerror or exc}")
            return
        self._read_failures.pop(rel, None)
        digest = content_digest(data)
        if not self.journal.claim(FileId(rel, info.st_size, info.st_mtime_ns, digest)):
            return
        output = self._free_output(rel)
        self.journal.reserve_output(rel, output)
        task = Task(rel, path, output, digest, time.monotonic(), identity_of(info))
        try:
            future = executor.submit(data, self.params)
        except Exception as exc:  # an executor that cannot take work now (e.g. cluster unreachable)
            if not self._executor_failed(rel):
                self._retry_later(rel, path, f"executor refused the job: {exc}")
            return
        self._in_flight[rel] = task
        future.add_done_callback(lambda done, task=task: self._events.put(("done", (task, done))))

    def _free_output(self, rel: str) -> str:
        """The first of `rel`'s output names (output.output_names) that no other input owns and no folder
        occupies, in the output or the input (whose folders the output mirrors): an output is never shared,
        so never silently overwritten, however input names collide."""
        natural, holder = output_name(rel), None
        for output in output_names(rel):
            owner = self.journal.output_owner(output)
            folder = os.path.isdir(self.output_root / output) or os.path.isdir(self.input_root / output)
            if (owner is None or owner == rel) and not folder:
                break
            holder = holder or (owner if owner not in (None, rel) else "a folder")  # who has the natural name
        entry = self.journal.get(rel)
        if output != natural and (entry is None or entry.output != output):  # said once, not on every retry
            log.warning("%s: %s already belongs to %s; writing %s", rel, natural, holder, output)
        return output

    def _settled_by_metadata(self, rel: str, path: Path) -> bool:
        """Finished already (same size and mtime)? Decided before reading, so a restart with ON_SUCCESS=keep
        does not reread every original, and an unreadable finished file is not retried (and redone)."""
        try:
            st = os.lstat(path)
        except OSError:
            return False  # the read reports it
        return stat.S_ISREG(st.st_mode) and self.journal.is_settled(rel, st.st_size, st.st_mtime_ns)

    # -- finishing a job ----------------------------------------------------------------------

    def _finish(self, task: Task, future: Future[JobOutcome]) -> None:
        """Save a finished job's outcome, or hold it if storage is full (then nothing about it changed)."""
        if self._storage.blocked():
            self._in_flight.pop(task.rel, None)
            self._held.append((task, future))
            return
        try:
            self._complete(task, future)
        except (StorageFull, TransientError) as exc:
            self._held.append((task, future))
            self._storage.failed(str(exc) if isinstance(exc, StorageFull) else exc.message)
            return
        self._look_again(task.rel)

    def _look_again(self, rel: str) -> None:
        """A version that arrived while `rel` was busy is enqueued now (the journal skips it if unchanged)."""
        path = self._recheck.pop(rel, None)
        if path is not None:
            self._enqueue(path)

    def _complete(self, task: Task, future: Future[JobOutcome]) -> None:
        """Record the outcome; idempotent, so a held job can run through here again after a disk-full."""
        self._in_flight.pop(task.rel, None)
        self._last_completion = time.monotonic()
        try:
            outcome = future.result()
        except Exception as exc:  # the pool broke (worker killed), the job was cancelled, the cluster was lost
            log.debug("job for %s ended with %r", task.rel, exc)
            if self._draining and isinstance(exc, CancelledError):  # never started (Executor.stop_starting)
                self._give_back(task.rel, NOT_STARTED)
                return
            if not self._executor_failed(task.rel):
                reason = exc.message if isinstance(exc, IcsdError) else WORKER_DIED
                self._retry_later(task.rel, task.path, reason, identity=task.identity)
            return
        if outcome.result is not None:
            self._deliver(task, outcome.result)
        elif self._executor_failed(task.rel):
            return
        elif outcome.permanent:
            self._fail(task.rel, task.path, outcome.error or "unknown error", identity=task.identity)
        else:
            self._retry_later(task.rel, task.path, outcome.error or "transient error", identity=task.identity)

    def _deliver(self, task: Task, result: Result) -> None:
        try:
            self.outputs.write(task, result.data)
        except UnsafePathError as exc:  # the output folder holds a link leading out of it: never write there
            self._fail(task.rel, task.path, f"unsafe output path: {exc}", identity=task.identity)
            return
        except StorageFull:
            raise
        except OSError as exc:
            self._retry_later(task.rel, task.path, f"cannot write output {task.output}: {exc.strerror or exc}",
                              identity=task.identity)
            return
        if not self.journal.mark_done(task.rel, task.output, digest=task.digest, stats=done_stats(result, self.params)):
            log.info("%s changed while it was processed; the new version is processed next", task.rel)
            return
        if not self._held:
            self._storage.recovered()
        if not self._replaced(task.rel, task.path, task.identity):
            self.outputs.dispose_original(task)
        self.tally.add(result.input_bytes, result.output_bytes, result.seconds)
        self.metrics.image_done(str(result.strategy), result.input_bytes, result.output_bytes, result.seconds,
                                psnr=result.psnr)
        fields = image_fields(
            task.rel,
            size_in=result.input_size,
            size_out=result.output_size,
            bytes_in=result.input_bytes,
            bytes_out=result.output_bytes,
            colors=result.colors,
            strategy=str(result.strategy),
            seconds=result.seconds,
            tally=self.tally,
            queued=self.queued,
            grayscale=self.params.grayscale,
            psnr=result.psnr,
        )
        log.info(image_line(fields), extra={"fields": fields})
        for callback in self.on_progress:
            callback(fields)

    def _flush_held_results(self) -> None:
        """When a probe is due, save held outcomes in order; the first that still does not fit stops the round."""
        if not self._held or self._storage.blocked():
            return
        while self._held:
            task, future = self._held[0]
            try:
                self._complete(task, future)
            except (StorageFull, TransientError) as exc:
                self._storage.failed(str(exc) if isinstance(exc, StorageFull) else exc.message)
                return
            self._held.pop(0)
            self._look_again(task.rel)
        self._storage.recovered()

    def _fail(self, rel: str, path: Path, error: str, *, identity: Identity | None = None) -> None:
        """Record a permanent failure and set the original aside (only the version that failed)."""
        entry = self.journal.get(rel)
        if entry is not None:
            self.journal.mark_failed(rel, error)
        self.tally.failed += 1
        self.metrics.image_failed(str(self.params.strategy))
        if identity is not None and self._replaced(rel, path, identity):
            where = "the file was replaced meanwhile; the new version is processed next"
        else:
            where = self.outputs.set_aside(rel, path, error, attempts=entry.attempts if entry else 1)
        log.error("FAILED %s: %s (%s)", rel, error, where, extra={"fields": {"name": rel, "error": error}})
        for callback in self.on_progress:
            callback({"name": rel, "error": error})

    def _executor_failed(self, rel: str) -> bool:
        """True when the executor cannot run anything (see Executor.failure): then a failed job says nothing
        about its image, so its claim is given back and the image waits, pending, for the next start."""
        failure = self._executor_in_use.failure() if self._executor_in_use is not None else None
        if failure is None:
            return False
        self.journal.unclaim(rel, failure)
        return True

    def _retry_later(self, rel: str, path: Path, error: str, *, identity: Identity | None = None) -> None:
        if self.journal.get(rel) is not None:
            attempts = self.journal.mark_pending(rel, error)
        else:  # failed before it was claimed (unreadable): count in memory
            attempts = self._read_failures[rel] = self._read_failures.get(rel, 0) + 1
        if attempts >= self.settings.max_attempts:
            self._fail(rel, path, f"{error} (gave up after {attempts} attempts)", identity=identity)
            return
        delay = min(2.0 ** (attempts - 1), 60.0)
        log.warning("%s: %s; retrying in %.0f s (attempt %d of %d)", rel, error, delay, attempts + 1,
                    self.settings.max_attempts)
        heapq.heappush(self._retries, (time.monotonic() + delay, rel, path))
        self._waiting.add(rel)

    def _release_due_retries(self) -> None:
        now = time.monotonic()
        while self._retries and self._retries[0][0] <= now:
            _due, rel, path = heapq.heappop(self._retries)
            self._waiting.discard(rel)
            self._enqueue(path)

    # -- discovery, startup and shutdown ------------------------------------------------------

    def _start_discovery(self) -> Watcher | None:
        def ready(path: Path) -> None:
            self._events.put(("ready", path))

        def skipped(path: Path, reason: str) -> None:
            log.warning("%s: %s", printable(path), reason)

        if self.mode == "batch":  # one scan, no watcher (nor watchdog's import: ~15 ms of start-up)
            found = scan_tree(self.input_root, exclude=self._our_roots(), on_skip=skipped)
            # Largest first: the long jobs start early and small ones fill in at the end, instead of a big
            # image finishing alone on one worker while the others sit idle (LPT scheduling).
            for path, _size in sorted(found, key=lambda item: item[1], reverse=True):
                ready(path)
            self._scan_done.set()
            return None
        from icsd.daemon.watcher import Watcher

        watcher = Watcher(
            self.input_root,
            ready,
            stable_seconds=self.settings.stable_seconds,
            rescan_seconds=self.settings.rescan_seconds,
            polling=self.settings.polling,
            exclude=self._our_roots(),
            on_skip=skipped,
        )
        watcher.start()
        log.info("watching %s with %s (%s)", self.input_root, watcher.mode, watcher.reason)
        return watcher

    def _requeue_unfinished(self) -> None:
        for entry in self.journal.unfinished():
            path = self.input_root / entry.rel
            if path.exists():
                self._events.put(("ready", path))
            else:
                with contextlib.suppress(TransientError):  # a stale row is harmless; dropped on a later start
                    self.journal.forget(entry.rel)

    def _drain(self, executor: Executor) -> None:
        """Let running jobs finish within the drain bound; queued ones are not started. Both the jobs not
        started and those the bound cuts off give their claims back: pending, done on the next start."""
        self._draining = True
        try:
            executor.stop_starting()  # queued jobs come back at once: the bound is spent on running ones only
            self._wait_for_running_jobs(deadline=time.monotonic() + self.settings.drain_seconds)
            self._storage.probe_now()
            self._flush_held_results()
            if self._held:
                log.warning("%d finished %s not be saved (%s); they will be processed again on the next start",
                            len(self._held), "image could" if len(self._held) == 1 else "images could",
                            self._storage.error)
            if self._in_flight:
                log.warning("%s still in progress; %s processed on the next start",
                            *(("1 image was", "it will be") if len(self._in_flight) == 1
                              else (f"{len(self._in_flight)} images were", "they will be")))
                for rel in self._in_flight:
                    self._give_back(rel, "cut off by the drain bound when icsd stopped")
        finally:  # even if interrupted (a second Ctrl-C): a busy worker left alive would block the exit
            executor.shutdown(cancel=bool(self._in_flight))

    def _wait_for_running_jobs(self, *, deadline: float) -> None:
        """Save results as they arrive, until no job is left or `deadline` (monotonic) passes."""
        while self._in_flight and time.monotonic() < deadline:
            try:
                kind, payload = self._events.get(timeout=min(TICK_SECONDS, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                continue
            if kind == "done":
                self._finish(*payload)

    def _give_back(self, rel: str, reason: str) -> None:
        """Unclaim `rel` (pending again, the attempt not counted): stopping the daemon is no image's fault."""
        with contextlib.suppress(TransientError, KeyError):  # the row stays in progress: requeued on the next start
            self.journal.unclaim(rel, reason)

    def _our_roots(self) -> list[Path]:
        return [folder.resolve() for folder in self.settings.folders().values()]

    # -- health, for the systemd watchdog (called from the pinger thread) ----------------------

    def healthy(self) -> bool:
        """Watcher alive, executor usable, and in-flight work still finishing within the stall bound."""
        watcher, executor = self._watcher, self._executor_in_use
        if watcher is not None and not watcher.healthy():
            return False
        if executor is not None and not executor.healthy():
            return False
        return self.seconds_since_progress < self.settings.stall_seconds

    def status_text(self) -> str:
        """One line for systemd's STATUS=: what `systemctl status icsd` shows."""
        return (f"done {self.tally.done}, failed {self.tally.failed}, queued {self.queued}, "
                f"runtime {human_duration(self.tally.runtime)}")

    # -- helpers ------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._backlog) + len(self._retries) + len(self._in_flight)

    @property
    def seconds_since_progress(self) -> float:
        """How long in-flight work has gone without any job finishing (0 when idle)."""
        return time.monotonic() - self._last_completion if self._in_flight else 0.0

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.input_root).as_posix()

    def _replaced(self, rel: str, path: Path, identity: Identity) -> bool:
        """Is another version at `path` than the one read? Then it must not be deleted, archived or failed.

        The new version is enqueued (also if the watcher reported it while the old one was in flight).
        """
        if not replaced(path, identity):
            return False
        log.info("%s was replaced while it was processed; the new version is kept and processed next", rel)
        self._recheck.pop(rel, None)
        self._enqueue(path)
        return True


def _hold_lock(path: Path, what: str) -> BinaryIO:
    """Hold an exclusive lock on `path`, which guards `what`, for the daemon's life (the kernel drops it when
    the process dies): two daemons sharing a journal would both claim every new file, two sharing an output
    folder would write the same outputs. Temporary (exit 75), not a bad setting (78, which systemd does not
    restart): a service started while a manual `icsd batch` holds the folder comes back once the batch is done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+b")  # noqa: SIM115 - kept open on purpose, closed by run()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().decode(errors="replace").strip() or "unknown"
        handle.close()
        raise TransientError(
            f"another icsd (pid {owner}) is already using {what}: stop it, or give this one its own "
            "ICSD_OUTPUT_DIR / ICSD_STATE_DIR"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()).encode())
    handle.flush()
    return handle
