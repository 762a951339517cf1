"""The daemon shell: watcher -> intake -> executor -> durable writer, with progress and shutdown.

About 500 lines: the start-up stack, the coordinator's event handlers and the group commit, which share
the service's state; decisions live in scheduler.py and intake.py, file placement in delivery.py.

Wiring only. The scheduler (sans-I/O) decides what starts, retries, waits or is held; the intake
admits a file (read, digest, claim, output name); delivery puts results in place. One coordinator
thread owns the journal and every file operation; the watcher and the executor only put typed
events (Ready, Done) on its queue. That keeps SQLite single-threaded and the ordering of "output
durable -> journal done -> original disposed" in one place.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import CancelledError, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from icsd import __version__
from icsd.core import CompressParams, JobOutcome, Result
from icsd.daemon.delivery import Outputs, StorageFull, Task, UnsafePathError
from icsd.daemon.discovery import requeue_unfinished, scan_largest_first, start_watcher
from icsd.daemon.executor import NOT_STARTED, WORKER_DIED, Executor, create_executor
from icsd.daemon.folders import create_folders, hold_lock
from icsd.daemon.inputs import SourceChanged
from icsd.daemon.intake import Admitted, Intake, Unreadable
from icsd.daemon.journal import DoneMark, Journal
from icsd.daemon.leftovers import reclaim_semaphores
from icsd.daemon.manifest import done_stats
from icsd.daemon.metrics import Metrics, NullMetrics, create_metrics
from icsd.daemon.notify import Notifier, WatchdogPinger
from icsd.daemon.output import remove_stray_temps
from icsd.daemon.progress import Tally, human_duration, image_fields, image_line, images
from icsd.daemon.scheduler import PROBE_SECONDS, GiveUp, Scheduler
from icsd.daemon.stale import stale_outputs
from icsd.errors import EX_SOFTWARE, IcsdError, TransientError
from icsd.settings import Settings

__all__ = ["Done", "Ready", "RunOutcome", "Service"]

if TYPE_CHECKING:
    from icsd.daemon.watcher import Watcher

log = logging.getLogger("icsd")

TICK_SECONDS = 0.2
# Input bytes in flight per worker at most: a wide window for small images holds few big ones (one always runs).
WINDOW_BYTES_PER_WORKER = 16 * 1024 * 1024
GROUP_MAX = 64  # outputs saved per group commit at most (bounds its latency and transaction)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended: the exit code for the CLI and the counts."""

    exit_code: int
    tally: Tally


@dataclass(frozen=True, slots=True)
class Ready:
    """A complete version of the input file at `rel` (relative to the input folder) is there."""

    rel: str


@dataclass(slots=True)
class Done:
    """A job ended (well or not): its task, the future that holds its outcome, and the spool path its worker
    was given (see Executor.submit). `placed`: where the spooled output was renamed into place, once it was
    (a group whose commit failed is saved again later: the rename is not repeated)."""

    task: Task
    future: Future[JobOutcome]
    spool: str | None = None
    placed: str | None = None


class Service:
    """Compress every image that arrives in the input folder (`watch`), or that is there (`batch`)."""

    def __init__(self, settings: Settings, *, mode: Literal["watch", "batch"] = "watch") -> None:
        self.settings = settings
        self.params: CompressParams = settings.validate_all()
        self.mode = mode
        self.input_root = settings.input_dir.resolve()
        self.output_root = settings.output_dir.resolve()
        self.tally = Tally(grey=self.params.grayscale)
        self.scheduler: Scheduler[Done] = Scheduler(window=2 * settings.worker_count,
                                                    max_attempts=settings.max_attempts,
                                                    window_bytes=WINDOW_BYTES_PER_WORKER * settings.worker_count)
        self.outputs = Outputs(self.output_root, settings.failed_path.resolve(),
                               archive_root=settings.archive_dir.resolve() if settings.archive_dir else None,
                               on_success=settings.on_success)
        self.metrics: Metrics | NullMetrics = NullMetrics()
        self.on_progress: list = []  # callables(fields) — the batch progress bar hooks in here
        self._stop = threading.Event()
        self._events: queue.Queue[Ready | Done] = queue.Queue()
        self._watcher: Watcher | None = None
        self._executor: Executor | None = None
        # Files a worker's death in the shared pool broke: they run alone until done or failed (see _run_alone).
        self._alone: set[str] = set()

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run loop to stop taking files and drain (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> RunOutcome:
        """Run until stopped (watch) or until the folder is done (batch); returns the exit code.

        Whatever start-up took (locks, journal, metrics server, executor, watcher, notifier) is released
        whatever fails, in reverse order: the executor's release is the drain."""
        started = False
        try:
            with contextlib.ExitStack() as stack:
                executor, watcher = self._start(stack)
                started = True
                exit_code = self._loop(executor, watcher)
        finally:
            if started:  # also when interrupted (Ctrl-C in batch)
                log.info("icsd stopped: %s", self.tally.summary())
        if self.mode == "batch" and self.tally.failed and not exit_code:
            exit_code = 1
        return RunOutcome(exit_code, self.tally)

    def _start(self, stack: contextlib.ExitStack) -> tuple[Executor, Watcher | None]:
        settings = self.settings
        create_folders(settings, watch=self.mode == "watch")
        # Before touching anything shared: one icsd per journal, and one per output folder (two daemons with
        # their own journals would otherwise both write a.png there).
        state = settings.state_path.resolve()
        stack.enter_context(hold_lock(state / "lock", f"the state folder {state}"))
        stack.enter_context(hold_lock(self.output_root / ".icsd" / "output.lock", f"the output folder "
                                      f"{self.output_root}"))
        stray = sum(remove_stray_temps(root) for root in self._our_roots())  # logged after the first line
        semaphores = reclaim_semaphores(state)  # what a kill -9 of an earlier icsd left in /dev/shm
        self.journal = stack.enter_context(Journal(state / "journal.sqlite3"))
        fingerprint = self.params.fingerprint()
        self.intake = Intake(self.journal, input_root=self.input_root, output_root=self.output_root,
                             fingerprint=fingerprint)
        stale = stale_outputs(self.journal, fingerprint, self.input_root)  # before any is remade; logged below
        self.metrics = create_metrics(settings.metrics_port, settings.metrics_host)
        stack.callback(self.metrics.stop)
        self.metrics.set_runtime_source(lambda: self.tally.runtime)
        executor = self._executor = create_executor(settings.executor, workers=settings.worker_count,
                                                    scheduler=settings.dask_scheduler, state=self.output_root / ".icsd",
                                                    inputs=self.input_root)
        # Both executors send small images several to a task: the window is wide, and bounded in bytes too.
        self.scheduler.window = max(self.scheduler.window, getattr(executor, "in_flight_hint", 0))
        stack.callback(self._drain, executor)
        watcher = None
        if self.mode == "batch":
            scan_largest_first(self.input_root, exclude=self._our_roots(), ready=self._ready)
        else:
            watcher = self._watcher = start_watcher(settings, self.input_root, exclude=self._our_roots(),
                                                    ready=self._ready)
            stack.callback(watcher.stop)
        requeue_unfinished(self.journal, self.input_root, self._ready)
        notifier = stack.enter_context(contextlib.closing(Notifier()))
        pinger = WatchdogPinger(notifier, healthy=self.healthy, status=self.status_text)
        notifier.ready(self.status_text())
        pinger.start()
        stack.callback(pinger.stop)
        stack.callback(notifier.stopping, "draining images in progress")
        log.info("icsd %s %s: %s -> %s, %s, %d colours%s, %d %s workers", __version__,
                 "watching" if self.mode == "watch" else "batch", self.input_root, self.output_root,
                 self.params.strategy, self.params.colors, ", grayscale" if self.params.grayscale else "",
                 settings.worker_count, executor.name)
        if remade := stale.total - stale.orphaned:
            log.info("%d %s made with other settings %s remade from %s", remade,
                     *(("output", "is", "its original") if remade == 1 else ("outputs", "are", "their originals")))
        if warning := stale.warning():
            log.warning(warning)
        if stray:
            log.info("removed %d temporary files left by an earlier crash", stray)
        if semaphores:
            log.info("removed %d semaphores left in /dev/shm by an icsd that was killed", semaphores)
        return executor, watcher

    # -- the coordinator loop -----------------------------------------------------------------

    def _loop(self, executor: Executor, watcher: Watcher | None) -> int:
        while not self._stop.is_set():
            if self.mode == "batch" and self.scheduler.idle() and self._events.empty():  # the scan is done by now
                return 0  # checked before waiting: an empty folder must not cost a tick
            self._handle_events(timeout=TICK_SECONDS)
            failure = executor.failure()
            if failure is not None:
                log.error("%s; icsd stops without failing any image: they are retried on the next start", failure)
                return EX_SOFTWARE
            self._flush_held()
            self._fill(executor)
            self.metrics.set_queue_depth(self.scheduler.queue_depth)
            self.metrics.set_in_flight(self.scheduler.in_flight)
            if watcher is not None and not watcher.healthy():
                log.error("the folder watcher stopped working (%s); exiting so the service manager restarts icsd",
                          watcher.failure())
                return EX_SOFTWARE
        log.info("stopping: no new files are taken; waiting up to %g s for %s in progress",
                 self.settings.drain_seconds, images(self.scheduler.in_flight))
        return 0

    def _ready(self, rel: str) -> None:
        """A file to look at (from the scan, the watcher's thread or the journal's leftovers)."""
        self._events.put(Ready(rel))

    def _handle_events(self, timeout: float) -> None:
        """Take every event waiting (or the first within `timeout`); jobs that ended meanwhile are saved as one
        group (see _save)."""
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        ended: list[Done] = []
        while True:
            if isinstance(event, Ready):
                self.scheduler.offer(event.rel)
            else:
                ended.append(event)
                if len(ended) >= GROUP_MAX:
                    self._finish(ended)
                    ended = []
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
        self._finish(ended)

    def _fill(self, executor: Executor) -> None:
        """Start what the scheduler lets start now, a round at a time (see _admit_round)."""
        now = time.monotonic()
        try:
            while admitted := self._admit_round(now, read=not executor.reads_inputs):
                for admission in admitted:
                    self._submit(executor, admission)
        finally:
            executor.flush()  # small images go several to a task

    def _admit_round(self, now: float, *, read: bool) -> list[Admitted]:
        """Admit files until the window is full, their claims one journal transaction committed before any of their
        jobs starts (one commit per round, not per file). If the journal cannot be written (disk full, locked),
        the whole round goes back to the front of the queue, and nothing starts until the next storage probe.
        `read`: new files are read here (the executor's workers cannot read them, see Executor.reads_inputs)."""
        admitted: list[Admitted] = []
        unreadable: list[tuple[str, Unreadable]] = []
        rel = None
        try:
            with self.journal.transaction():
                while (rel := self.scheduler.next_start(now)) is not None:
                    admission = self.intake.admit(rel, read=read)
                    if isinstance(admission, Admitted):
                        self.scheduler.started(rel, now, admission.task.version.size)  # counted against the window
                        admitted.append(admission)
                    elif isinstance(admission, Unreadable):
                        unreadable.append((rel, admission))  # recorded once the round's claims are
                    else:
                        self.scheduler.not_started(rel)
                        self._alone.discard(rel)
        except TransientError as exc:
            back = [admission.task.rel for admission in admitted] + [name for name, _unreadable in unreadable]
            first = False
            for name in reversed([*back, rel] if rel is not None else back):  # put_back puts each at the front
                self.scheduler.withdraw(name)
                first = self.scheduler.put_back(name, now, exc.message) or first
            self._storage_failed(first, exc.message)
            return []
        for rel, admission in unreadable:
            self._retry_later(rel, admission.error, claimed=False)
        return admitted

    def _submit(self, executor: Executor, admission: Admitted) -> None:
        task = admission.task
        spool = self.outputs.spool_for(task) if executor.writes_spool else None
        try:
            future = executor.submit(admission.data, self.params, name=task.rel, spool=spool,
                                     alone=task.rel in self._alone)
        except Exception as exc:  # an executor that cannot take work now (e.g. cluster unreachable)
            self.scheduler.withdraw(task.rel)
            if self._executor_failed(task.rel):
                self.scheduler.not_started(task.rel)
            else:
                self._retry_later(task.rel, f"executor refused the job: {exc}")
            return
        future.add_done_callback(lambda done, task=task: self._events.put(Done(task, done, spool)))

    # -- finishing jobs ------------------------------------------------------------------------

    def _finish(self, ended: list[Done]) -> None:
        """Save the outcomes of jobs that ended, in the order they ended; held instead while storage is full
        or older results are held (they are saved first, by _flush_held)."""
        now = time.monotonic()
        self._save([done for done in ended if self.scheduler.finished(done.task.rel, done, now)], held=False)

    def _flush_held(self) -> None:
        """When a probe is due, save held outcomes in order; the first that still does not fit stops the round."""
        while (head := self.scheduler.next_held(time.monotonic())) is not None:
            if not self._save([head[1]], held=True):
                return

    def _save(self, dones: list[Done], *, held: bool) -> bool:
        """Record outcomes as one group (group commit): every output written and its data fsynced, each folder
        written to fsynced once, one durable journal transaction marking them all done, and only then the
        originals disposed of. Per small image that is one folder fsync and one journal fsync per group
        instead of one each (docs/scale.md). Outcomes without a result (failures, retries) are recorded one by
        one. False when storage is full: the outcome that did not fit and those after it are held (`held`: they
        are held already, from the first), and nothing about them changed."""
        written: list[tuple[Done, Result, str | Path]] = []
        for index, done in enumerate(dones):
            try:
                result = self._complete(done)
                output = None if result is None else self._write_output(done, result)
            except (StorageFull, TransientError) as exc:
                self._storage_full([done for done, _result, _path in written] + dones[index:], exc, held=held)
                return False
            if output is None:
                self._settled(done.task.rel)  # a failure or retry recorded
            else:
                written.append((done, result, output))  # type: ignore[arg-type]  # result is set with output
        if not written:
            return True
        marks = [DoneMark(done.task.rel, done.task.output, digest=done.task.version.digest,
                          stats=done_stats(result, self.params)) for done, result, _path in written]
        try:
            self.outputs.sync_folders(path for _done, _result, path in written)
            recorded = self.journal.mark_done_many(marks)
        except (StorageFull, TransientError, OSError) as exc:  # the outputs are rewritten when saved again
            self._storage_full([done for done, _result, _path in written], exc, held=held)
            return False
        for (done, result, _path), is_done in zip(written, recorded, strict=True):
            self._done(done.task, result, recorded=is_done)
            self._settled(done.task.rel)
        return True

    def _storage_full(self, dones: list[Done], exc: Exception, *, held: bool) -> None:
        reason = exc.message if isinstance(exc, TransientError) else str(exc)
        now = time.monotonic()
        if held:
            first = self.scheduler.storage_failed(now, reason)
        else:
            first = any([self.scheduler.hold(done.task.rel, done, now, reason) for done in dones])
        self._storage_failed(first, reason)

    def _complete(self, done: Done) -> Result | None:
        """A job's result to save, or None after recording why it has none (retry, failure, given back).
        Idempotent, so a held job can run through here again after a disk-full."""
        task = done.task
        try:
            outcome = done.future.result()
        except Exception as exc:  # the pool broke (worker killed), the job was cancelled, the cluster was lost
            log.debug("job for %s ended with %r", task.rel, exc)
            self.outputs.discard_spool(done.spool)
            if self.scheduler.draining and isinstance(exc, CancelledError):  # never started (stop_starting)
                self._give_back(task.rel, NOT_STARTED)
            elif isinstance(exc, SourceChanged):  # not the version claimed any more: admitted again, as it is now
                self._admit_again(task.rel, str(exc))
            elif self._executor_failed(task.rel):
                pass
            elif isinstance(exc, BrokenProcessPool):  # a worker died in the shared pool: maybe not this image's doing
                self._run_alone(task.rel)
            else:
                self._retry_later(task.rel, exc.message if isinstance(exc, IcsdError) else WORKER_DIED, task=task)
            return None
        if outcome.digest is not None:  # the worker read the input: the version claimed, its digest now known
            task = done.task = replace(task, version=task.version.read_as(outcome.digest))
        if outcome.result is not None:
            return outcome.result
        self.outputs.discard_spool(done.spool)
        if self._executor_failed(task.rel):
            pass
        elif outcome.permanent:
            self._fail(task.rel, outcome.error or "unknown error", task=task)
        else:
            self._retry_later(task.rel, outcome.error or "transient error", task=task)
        return None

    def _write_output(self, done: Done, result: Result) -> str | Path | None:
        """Put the output in place, its data durable (its name once the group's folders are synced): rename what
        the worker wrote to the spool, or write the bytes it sent back. None after recording why it could not
        be. StorageFull propagates (the result is held)."""
        task = done.task
        try:
            if done.spool is not None and not result.data:
                if done.placed is None:
                    done.placed = self.outputs.place_spooled(task, done.spool)
                return done.placed
            self.outputs.discard_spool(done.spool)  # what a worker killed mid-write may have left (Dask reruns it)
            return self.outputs.write(task, result.data, sync_folder=False)
        except UnsafePathError as exc:  # the output folder holds a link leading out of it: never write there
            self._fail(task.rel, f"unsafe output path: {exc}", task=task)
        except StorageFull:
            raise
        except OSError as exc:
            self._retry_later(task.rel, f"cannot write output {task.output}: {exc.strerror or exc}", task=task)
        return None

    def _done(self, task: Task, result: Result, *, recorded: bool) -> None:
        """After the group's commit: dispose of the original, count, log the progress line."""
        self._alone.discard(task.rel)
        if not recorded:
            log.info("%s changed while it was processed; the new version is processed next", task.rel)
            return
        if self.scheduler.storage_recovered():
            log.info("results can be saved again; resuming")
        if not self._replaced(task):
            self.outputs.dispose_original(task)
        self.tally.add(result.input_bytes, result.output_bytes, result.seconds)
        self.metrics.image_done(str(result.strategy), result.input_bytes, result.output_bytes, result.seconds,
                                psnr=result.psnr)
        fields = image_fields(task.rel, size_in=result.input_size, size_out=result.output_size,
                              bytes_in=result.input_bytes, bytes_out=result.output_bytes, colors=result.colors,
                              strategy=str(result.strategy), seconds=result.seconds, tally=self.tally,
                              queued=self.queued, grayscale=self.params.grayscale, psnr=result.psnr)
        log.info(image_line(fields), extra={"fields": fields})
        for callback in self.on_progress:
            callback(fields)

    def _fail(self, rel: str, error: str, *, task: Task | None = None) -> None:
        """Record a permanent failure and set the original aside (only the version that failed)."""
        self._alone.discard(rel)
        entry = self.journal.get(rel)
        if entry is not None:  # the settings recorded: other settings try it again (Journal.mark_failed)
            self.journal.mark_failed(rel, error, digest=None if task is None else task.version.digest,
                                     fingerprint=self.intake.fingerprint)
        self.tally.failed += 1
        self.metrics.image_failed(str(self.params.strategy))
        if task is not None and self._replaced(task):
            where = "the file was replaced meanwhile; the new version is processed next"
        else:
            where = self.outputs.set_aside(rel, self.input_root / rel, error, attempts=entry.attempts if entry else 1)
        log.error("FAILED %s: %s (%s)", rel, error, where, extra={"fields": {"name": rel, "error": error}})
        for callback in self.on_progress:
            callback({"name": rel, "error": error})

    def _retry_later(self, rel: str, error: str, *, task: Task | None = None, claimed: bool = True) -> None:
        """Count a failed attempt and retry after a backoff, or fail. The journal counts the attempts of a claimed
        file; the scheduler those of a file that could not be read (`claimed=False`: reading claims nothing, and
        the journal's count, left by an earlier version or a claim given back, would never grow)."""
        attempts = self.journal.mark_pending(rel, error) if self.journal.get(rel) is not None else None
        decision = self.scheduler.failed_attempt(rel, time.monotonic(), attempts=attempts if claimed else None)
        if isinstance(decision, GiveUp):
            self._fail(rel, f"{error} (gave up after {decision.attempts} attempts)", task=task)
            return
        log.warning("%s: %s; retrying in %.0f s (attempt %d of %d)", rel, error, decision.delay, decision.attempt,
                    self.settings.max_attempts)

    def _run_alone(self, rel: str) -> None:
        """`rel`'s job was in the shared pool when a worker died, which breaks every job there: no attempt is
        counted, and it runs next alone (Executor.submit), where a death is its own (see executor._Quarantine)."""
        self._alone.add(rel)
        self._admit_again(rel, WORKER_DIED)
        log.warning("%s: %s while it shared the pool; it runs alone next (this attempt is not counted)", rel,
                    WORKER_DIED)

    def _executor_failed(self, rel: str) -> bool:
        """True when the executor cannot run anything (see Executor.failure): then a failed job says nothing
        about its image, so its claim is given back and the image waits, pending, for the next start."""
        failure = self._executor.failure() if self._executor is not None else None
        if failure is None:
            return False
        self.journal.unclaim(rel, failure)
        return True

    def _settled(self, rel: str) -> None:
        if self.scheduler.settled(rel):
            log.info("results can be saved again; resuming")

    def _storage_failed(self, first: bool, reason: str) -> None:
        """A full disk is the operator's problem, not the image's: one ERROR line per episode."""
        if first:
            log.error("cannot save results now: %s. Originals are kept; no new images are taken and finished "
                      "ones are held; retrying every %.0f s until space returns", reason, PROBE_SECONDS)
        else:
            log.debug("still cannot save results (%s); next try in %.0f s", reason, PROBE_SECONDS)

    def _replaced(self, task: Task) -> bool:
        """Is another version at the input path than the one read? Then it must not be deleted, archived or
        failed; the new version is offered (also if the watcher reported it while the old one was busy)."""
        if not task.replaced():
            return False
        log.info("%s was replaced while it was processed; the new version is kept and processed next", task.rel)
        self.scheduler.offer(task.rel)
        return True

    # -- discovery, startup and shutdown ------------------------------------------------------

    def _drain(self, executor: Executor) -> None:
        """Let running jobs finish within the drain bound; queued ones are not started. Both the jobs not
        started and those the bound cuts off give their claims back: pending, done on the next start."""
        self.scheduler.drain()
        cut: list[str] = []
        try:
            executor.stop_starting()  # queued jobs come back at once: the bound is spent on running ones only
            self._wait_for_running_jobs(deadline=time.monotonic() + self.settings.drain_seconds)
            self.scheduler.probe_now()
            self._flush_held()
            held = self.scheduler.held
            if held:
                log.warning("%d finished %s not be saved (%s); they will be processed again on the next start",
                            held, "image could" if held == 1 else "images could", self.scheduler.storage_error)
            cut = self.scheduler.cut_off()
            if cut:
                log.warning("%s still in progress; %s processed on the next start",
                            *(("1 image was", "it will be") if len(cut) == 1
                              else (f"{len(cut)} images were", "they will be")))
                for rel in cut:
                    self._give_back(rel, "cut off by the drain bound when icsd stopped")
        finally:  # even if interrupted (a second Ctrl-C): a busy worker left alive would block the exit
            executor.shutdown(cancel=bool(cut) or self.scheduler.in_flight > 0)

    def _wait_for_running_jobs(self, *, deadline: float) -> None:
        """Save results as they arrive, until no job is left or `deadline` (monotonic) passes."""
        while self.scheduler.in_flight and time.monotonic() < deadline:
            try:
                event = self._events.get(timeout=min(TICK_SECONDS, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                continue
            if isinstance(event, Done):
                self._finish([event])

    def _admit_again(self, rel: str, reason: str) -> None:
        """Give `rel`'s claim back (no attempt counted) and offer it again: its job said nothing about the image."""
        self._give_back(rel, reason)
        self.scheduler.offer(rel)

    def _give_back(self, rel: str, reason: str) -> None:
        """Unclaim `rel` (pending again, the attempt not counted): stopping the daemon, or a worker's death in the
        shared pool, is no image's fault."""
        with contextlib.suppress(TransientError, KeyError):  # the row stays in progress: requeued on the next start
            self.journal.unclaim(rel, reason)

    def _our_roots(self) -> list[Path]:
        return [folder.resolve() for folder in self.settings.folders().values()]

    # -- health, for the systemd watchdog (called from the pinger thread) ----------------------

    def healthy(self) -> bool:
        """Watcher alive, executor usable, and in-flight work still finishing within the stall bound."""
        watcher, executor = self._watcher, self._executor
        if watcher is not None and not watcher.healthy():
            return False
        if executor is not None and not executor.healthy():
            return False
        return self.scheduler.seconds_since_progress(time.monotonic()) < self.settings.stall_seconds

    def status_text(self) -> str:
        """One line for systemd's STATUS=: what `systemctl status icsd` shows."""
        return (f"done {self.tally.done}, failed {self.tally.failed}, queued {self.queued}, "
                f"runtime {human_duration(self.tally.runtime)}")

    @property
    def queued(self) -> int:
        return self.scheduler.queued
