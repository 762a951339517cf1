"""Which file to work on next, and what to do when a job ends: a sans-I/O state machine.

The scheduler owns the per-file state the daemon keeps in memory: the backlog, the jobs in flight
(at most `window` of them), retries waiting for their backoff, versions that changed while their file
was busy (rechecked afterwards), finished results held while storage is full (saved later, in the
order they finished), read failures of files the journal has not claimed, and the drain. Like h11
for HTTP it does no I/O at all (no filesystem, no SQLite, no threads) and has no clock of its own:
the service passes `now` (monotonic seconds) in, tells it what happened, and carries out the
decisions it returns. So every transition is tested in-process with a fake clock
(tests/test_scheduler.py), and the service is left with wiring.

Per file (`rel`, the path relative to the input folder) the states are:

    queued ──next_start──► starting ──started──► in flight ──finished──► saving ──settled──► (none)
      ▲                       │ not_started ──► (none)            │ (storage full)   │ hold
      │                       │ put_back ──► queued (front)       ▼                  ▼
      │                       └ failed_attempt ─┐              held ──next_held──► saving
      └──── due ──── retry waiting ◄────────────┘ (or GiveUp: the service fails the file)

An `offer` for a file in flight or held marks it for a recheck: offered again once it has settled.
An `offer` for a file already queued or waiting for a retry is a no-op (the retry reads the newest version).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["GiveUp", "Retry", "Scheduler"]

J = TypeVar("J")  # what the service keeps of a finished job while it is held (opaque here)

MAX_BACKOFF_SECONDS = 60.0
PROBE_SECONDS = 5.0  # how often held results are retried while output/journal storage is full


@dataclass(frozen=True, slots=True)
class Retry:
    """Try `rel` again at `at` (after `delay` seconds); `attempt` is the number of the coming attempt."""

    rel: str
    at: float
    delay: float
    attempt: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    """`rel` failed `attempts` times, the most allowed: the service fails it for good."""

    rel: str
    attempts: int


class Scheduler(Generic[J]):
    """Per-file scheduling of the daemon. Single-threaded: the coordinator thread calls every method
    (the counters may be read from another thread for a status line)."""

    def __init__(self, *, window: int, max_attempts: int, probe_seconds: float = PROBE_SECONDS,
                 max_backoff: float = MAX_BACKOFF_SECONDS, window_bytes: int | None = None) -> None:
        """`window`: jobs in flight at most; `window_bytes`: input bytes in flight at most (None: no bound),
        so a wide window for small images does not hold as many big ones in memory (one job always may)."""
        if window < 1 or max_attempts < 1:
            raise ValueError("window and max_attempts must be at least 1")
        self.window = window
        self.window_bytes = window_bytes
        self._in_flight_bytes = 0
        self.max_attempts = max_attempts
        self.probe_seconds = probe_seconds
        self.max_backoff = max_backoff
        self._backlog: deque[str] = deque()
        self._retries: list[tuple[float, str]] = []  # heap of (due, rel)
        self._waiting: set[str] = set()  # rels in the backlog or the retry heap
        self._in_flight: dict[str, int] = {}  # rel -> its input bytes, insertion-ordered
        self._held: deque[tuple[str, J]] = deque()
        self._recheck: set[str] = set()
        self._read_failures: dict[str, int] = {}  # attempts of files not claimed yet (they have no journal row)
        self._storage_error: str | None = None
        self._next_probe = 0.0
        self._last_progress: float | None = None
        self._draining = False

    # -- discovery ---------------------------------------------------------------------------

    def offer(self, rel: str) -> None:
        """A (new version of a) file is ready to be looked at."""
        if rel in self._in_flight or any(held == rel for held, _ in self._held):
            self._recheck.add(rel)  # a new version arrived while the old one is being handled
        elif rel not in self._waiting:
            self._waiting.add(rel)
            self._backlog.append(rel)

    # -- starting ----------------------------------------------------------------------------

    def next_start(self, now: float) -> str | None:
        """The next file to admit now, or None: nothing queued, the window full, results held or storage full.

        Retries whose backoff has passed join the backlog first. The caller admits the file and answers with
        `started`, `not_started`, `put_back` or `failed_attempt`.
        """
        self._release_due(now)
        if not self._backlog or len(self._in_flight) >= self.window or self._held or self.storage_blocked(now):
            return None
        if self.window_bytes is not None and self._in_flight and self._in_flight_bytes >= self.window_bytes:
            return None
        rel = self._backlog.popleft()
        self._waiting.discard(rel)
        return rel

    def started(self, rel: str, now: float, size: int = 0) -> None:
        """`rel`'s job was submitted; `size`: its input bytes (counted against window_bytes)."""
        if not self._in_flight:
            self._last_progress = now  # an idle spell is not a stall
        self._in_flight_bytes += size - self._in_flight.get(rel, 0)
        self._in_flight[rel] = size
        self._read_failures.pop(rel, None)

    def withdraw(self, rel: str) -> None:
        """`rel` was counted as started but its job never began (its claim was not saved, or the executor refused
        it): it is no longer in flight. The caller puts it back or records the attempt. No-op if not in flight."""
        self._in_flight_bytes -= self._in_flight.pop(rel, 0)

    def not_started(self, rel: str) -> None:
        """`rel` needed no job (finished already, vanished, claimed by nobody): nothing to track."""
        self._read_failures.pop(rel, None)

    def put_back(self, rel: str, now: float, reason: str) -> bool:
        """The journal could not be written while admitting `rel` (disk full, locked): `rel` goes back to the
        front and nothing starts until the next storage probe. True when this starts a storage-full episode."""
        self._backlog.appendleft(rel)
        self._waiting.add(rel)
        return self.storage_failed(now, reason)

    # -- attempts ----------------------------------------------------------------------------

    def failed_attempt(self, rel: str, now: float, *, attempts: int | None) -> Retry | GiveUp:
        """An attempt at `rel` failed for a reason that may pass. `attempts`: those made so far, as the journal
        counts them, or None for a file not claimed yet (unreadable), counted here.

        Backoff doubles from 1 s up to `max_backoff`; after `max_attempts` attempts the file is given up.
        """
        if attempts is None:
            attempts = self._read_failures[rel] = self._read_failures.get(rel, 0) + 1
        if attempts >= self.max_attempts:
            self._read_failures.pop(rel, None)
            return GiveUp(rel, attempts)
        delay = min(2.0 ** (attempts - 1), self.max_backoff)
        heapq.heappush(self._retries, (now + delay, rel))
        self._waiting.add(rel)
        return Retry(rel, now + delay, delay, attempts + 1)

    # -- finishing ---------------------------------------------------------------------------

    def finished(self, rel: str, result: J, now: float) -> bool:
        """`rel`'s job ended with `result`. True: save it now (then `settled`, or `hold` if storage is full).
        False: it is held, because storage is full or older results wait (they are saved in order)."""
        self._in_flight_bytes -= self._in_flight.pop(rel, 0)
        self._last_progress = now
        if self._held or self.storage_blocked(now):
            self._held.append((rel, result))
            return False
        return True

    def hold(self, rel: str, result: J, now: float, reason: str) -> bool:
        """Saving a fresh result failed for lack of storage: hold it. True when a storage-full episode starts."""
        self._held.append((rel, result))
        return self.storage_failed(now, reason)

    def next_held(self, now: float) -> tuple[str, J] | None:
        """The oldest held result, when one is held and a storage probe is due (or storage is not known full).

        The caller saves it and answers `settled`, or `storage_failed` (it stays first in line)."""
        if not self._held or self.storage_blocked(now):
            return None
        return self._held[0]

    def settled(self, rel: str) -> bool:
        """`rel`'s outcome is recorded (done, failed, retry scheduled or given back). A version offered while it
        was busy is queued now. True when this was the last held result: storage works again."""
        recovered = False
        if self._held and self._held[0][0] == rel:
            self._held.popleft()
            recovered = not self._held and self.storage_recovered()
        if rel in self._recheck:
            self._recheck.discard(rel)
            self.offer(rel)
        return recovered

    # -- storage -----------------------------------------------------------------------------

    def storage_failed(self, now: float, reason: str) -> bool:
        """Results cannot be saved now: no file starts and results are held until `now + probe_seconds`.
        True when this starts an episode (say it once), False while it goes on."""
        first = self._storage_error is None
        self._storage_error = reason
        self._next_probe = now + self.probe_seconds
        return first

    def storage_blocked(self, now: float) -> bool:
        """True while storage is known to be full and the next probe is not due."""
        return self._storage_error is not None and now < self._next_probe

    def storage_recovered(self) -> bool:
        """An output was saved with nothing held: storage works. True when that ends an episode."""
        if self._storage_error is None or self._held:
            return False
        self._storage_error = None
        return True

    def probe_now(self) -> None:
        """Make the next check try storage at once (the last chance before shutdown)."""
        self._next_probe = float("-inf")

    @property
    def storage_error(self) -> str | None:
        return self._storage_error

    # -- drain -------------------------------------------------------------------------------

    def drain(self) -> None:
        """Stop starting files: from now on a cancelled job is one the executor never began (give it back)."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    def cut_off(self) -> list[str]:
        """The drain bound passed: the files still in flight, to give back (pending, done on the next start)."""
        rels, self._in_flight, self._in_flight_bytes = list(self._in_flight), {}, 0
        return rels

    # -- counters ----------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def queue_depth(self) -> int:
        """Files waiting to start (queued or waiting for a retry)."""
        return len(self._backlog) + len(self._retries)

    @property
    def queued(self) -> int:
        """Files not finished: waiting to start or in flight."""
        return self.queue_depth + len(self._in_flight)

    def busy_with(self, rel: str) -> bool:
        return rel in self._in_flight

    def idle(self) -> bool:
        """Nothing queued, waiting, in flight or held."""
        return not (self._backlog or self._retries or self._in_flight or self._held)

    def seconds_since_progress(self, now: float) -> float:
        """How long jobs in flight have gone without one finishing (0 when none is in flight)."""
        if not self._in_flight or self._last_progress is None:
            return 0.0
        return now - self._last_progress

    # -- private -----------------------------------------------------------------------------

    def _release_due(self, now: float) -> None:
        while self._retries and self._retries[0][0] <= now:
            _due, rel = heapq.heappop(self._retries)
            self._waiting.discard(rel)
            self.offer(rel)
