"""The scheduler's transitions, in-process with a fake clock (no files, no daemon, no threads).

Each test drives icsd.daemon.scheduler.Scheduler through events as the service would and checks the
decisions it returns; the end-to-end behaviour (real daemon, real files, real signals) stays in
test_daemon.py, test_faults.py and test_shutdown.py.
"""

from __future__ import annotations

import pytest

from icsd.daemon.scheduler import GiveUp, Retry, Scheduler


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(window: int = 4, max_attempts: int = 5, probe: float = 5.0) -> Scheduler[str]:
    return Scheduler(window=window, max_attempts=max_attempts, probe_seconds=probe)


def start_all(s: Scheduler[str], now: float) -> list[str]:
    """Start whatever the scheduler lets start now, as the service's fill loop does."""
    started = []
    while (rel := s.next_start(now)) is not None:
        s.started(rel, now)
        started.append(rel)
    return started


# -- backlog and the in-flight window ---------------------------------------------------------


def test_files_start_in_the_order_offered_up_to_the_window(clock: Clock) -> None:
    s = make(window=2)
    for rel in ("a", "b", "c", "d"):
        s.offer(rel)
    assert start_all(s, clock.now) == ["a", "b"]
    assert (s.in_flight, s.queue_depth, s.queued) == (2, 2, 4)
    assert s.finished("a", "result a", clock.now) is True
    s.settled("a")
    assert start_all(s, clock.now) == ["c"]  # one slot freed, one start
    assert s.finished("b", "result b", clock.now)
    s.settled("b")
    assert s.finished("c", "result c", clock.now)
    s.settled("c")
    assert start_all(s, clock.now) == ["d"]


def test_a_withdrawn_start_frees_its_place_in_the_window(clock: Clock) -> None:
    """A round of claims that could not be saved is withdrawn and put back in its order: the window is free
    again and the files start first once storage works."""
    s = Scheduler(window=3, max_attempts=3, probe_seconds=5.0, window_bytes=100)
    for rel in ("a", "b", "c", "d"):
        s.offer(rel)
    for rel in ("a", "b"):
        assert s.next_start(clock.now) == rel
        s.started(rel, clock.now, 60)
    assert s.next_start(clock.now) is None  # the byte window is full
    for rel in ("b", "a"):
        s.withdraw(rel)
        s.put_back(rel, clock.now, "journal full")
    s.withdraw("never started")  # no-op
    assert s.in_flight == 0 and s.next_start(clock.now) is None  # storage known full until the probe
    clock.advance(5.0)
    assert start_all(s, clock.now) == ["a", "b", "c"]


def test_an_offer_of_a_queued_file_is_not_queued_twice(clock: Clock) -> None:
    s = make()
    s.offer("a")
    s.offer("a")
    assert s.queue_depth == 1
    assert start_all(s, clock.now) == ["a"]


def test_a_file_that_needs_no_job_leaves_no_trace(clock: Clock) -> None:
    s = make()
    s.offer("a")
    assert s.next_start(clock.now) == "a"
    s.not_started("a")
    assert s.idle()
    assert s.queued == 0


def test_a_byte_bound_keeps_big_files_few_in_flight_but_always_lets_one_start(clock: Clock) -> None:
    s = Scheduler(window=8, max_attempts=3, window_bytes=100)
    for rel in ("big1", "big2", "small1", "small2"):
        s.offer(rel)
    assert s.next_start(clock.now) == "big1"
    s.started("big1", clock.now, size=150)  # alone over the bound: it may still run
    assert s.next_start(clock.now) is None
    assert s.finished("big1", "ok", clock.now) and s.settled("big1") is False
    assert s.next_start(clock.now) == "big2"
    s.started("big2", clock.now, size=60)
    assert s.next_start(clock.now) == "small1"
    s.started("small1", clock.now, size=30)
    assert s.next_start(clock.now) == "small2"  # 90 bytes in flight: under the bound
    s.started("small2", clock.now, size=30)
    assert s.in_flight == 3
    assert s.cut_off() == ["big2", "small1", "small2"]
    s.offer("next")
    assert s.next_start(clock.now) == "next"  # cut_off forgot their bytes too


def test_window_and_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Scheduler(window=0, max_attempts=1)
    with pytest.raises(ValueError, match="at least 1"):
        Scheduler(window=1, max_attempts=0)


# -- retries and backoff ------------------------------------------------------------------------


def test_backoff_doubles_from_one_second_up_to_the_cap_then_gives_up(clock: Clock) -> None:
    s = Scheduler(window=1, max_attempts=9, max_backoff=60.0)
    s.offer("a")
    decisions = []
    for attempts in range(1, 10):  # the journal counts each claim; the service passes the count in
        rel = s.next_start(clock.now)
        assert rel == "a", f"attempt {attempts} should start at once when due"
        s.started(rel, clock.now)
        s.finished(rel, "transient error", clock.now)
        decision = s.failed_attempt(rel, clock.now, attempts=attempts)
        s.settled(rel)
        decisions.append(decision)
        if isinstance(decision, Retry):
            assert s.next_start(clock.advance(decision.delay - 0.01)) is None  # not before it is due
            clock.advance(0.01)
    assert [d.delay for d in decisions if isinstance(d, Retry)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [d.attempt for d in decisions if isinstance(d, Retry)] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert decisions[-1] == GiveUp("a", 9)
    assert s.idle()


def test_a_retry_is_due_at_now_plus_its_delay(clock: Clock) -> None:
    s = make()
    decision = s.failed_attempt("a", clock.now, attempts=3)
    assert decision == Retry("a", clock.now + 4.0, 4.0, 4)
    assert s.queue_depth == 1 and not s.idle()
    assert s.next_start(clock.advance(3.9)) is None
    assert s.next_start(clock.advance(0.1)) == "a"


def test_retries_come_back_in_due_order(clock: Clock) -> None:
    s = make()
    s.failed_attempt("late", clock.now, attempts=3)  # 4 s
    s.failed_attempt("early", clock.now, attempts=1)  # 1 s
    s.failed_attempt("middle", clock.now, attempts=2)  # 2 s
    assert start_all(s, clock.advance(10)) == ["early", "middle", "late"]


def test_unreadable_files_are_counted_here_until_claimed(clock: Clock) -> None:
    s = make(max_attempts=3)
    assert s.failed_attempt("a", clock.now, attempts=None) == Retry("a", clock.now + 1, 1.0, 2)
    assert s.next_start(clock.advance(1)) == "a"
    assert s.failed_attempt("a", clock.now, attempts=None) == Retry("a", clock.now + 2, 2.0, 3)
    assert s.next_start(clock.advance(2)) == "a"
    assert s.failed_attempt("a", clock.now, attempts=None) == GiveUp("a", 3)
    # given up: a later version starts counting afresh
    assert s.failed_attempt("a", clock.now, attempts=None) == Retry("a", clock.now + 1, 1.0, 2)


def test_a_file_read_at_last_forgets_its_read_failures(clock: Clock) -> None:
    s = make(max_attempts=3)
    s.failed_attempt("a", clock.now, attempts=None)
    s.failed_attempt("b", clock.now, attempts=None)
    clock.advance(1)
    assert start_all(s, clock.now) == ["a", "b"]  # b's read worked this time ...
    s.finished("b", "r", clock.now)
    s.settled("b")
    s.finished("a", "r", clock.now)
    s.settled("a")
    s.offer("c")
    assert s.next_start(clock.now) == "c"
    s.not_started("c")
    # ... so a new read failure of either is its first again
    assert s.failed_attempt("a", clock.now, attempts=None).attempt == 2  # type: ignore[union-attr]
    assert s.failed_attempt("b", clock.now, attempts=None).attempt == 2  # type: ignore[union-attr]


def test_an_offer_while_a_retry_waits_does_not_start_it_early(clock: Clock) -> None:
    s = make()
    s.failed_attempt("a", clock.now, attempts=2)  # due in 2 s
    s.offer("a")  # the watcher saw it again: the retry will read the newest version anyway
    assert s.next_start(clock.now) is None
    assert start_all(s, clock.advance(2)) == ["a"]
    assert s.next_start(clock.now) is None


# -- rechecks -------------------------------------------------------------------------------


def test_a_version_offered_while_busy_is_queued_once_the_old_one_settles(clock: Clock) -> None:
    s = make()
    s.offer("a")
    assert start_all(s, clock.now) == ["a"]
    s.offer("a")  # a new version arrived while the old one is in flight
    s.offer("a")
    assert s.next_start(clock.now) is None  # never two jobs for one file
    assert s.finished("a", "r", clock.now)
    assert s.next_start(clock.now) is None  # not before its outcome is recorded
    s.settled("a")
    assert start_all(s, clock.now) == ["a"]  # once
    s.finished("a", "r", clock.now)
    s.settled("a")
    assert s.idle()


def test_a_recheck_of_a_file_that_is_retried_joins_the_retry(clock: Clock) -> None:
    s = make()
    s.offer("a")
    start_all(s, clock.now)
    s.offer("a")
    s.finished("a", "r", clock.now)
    s.failed_attempt("a", clock.now, attempts=1)
    s.settled("a")
    assert s.next_start(clock.now) is None  # the retry waits for its backoff, recheck or not
    assert start_all(s, clock.advance(1)) == ["a"]


def test_a_replaced_file_offered_during_its_save_is_queued(clock: Clock) -> None:
    s = make()
    s.offer("a")
    start_all(s, clock.now)
    assert s.finished("a", "r", clock.now)
    s.offer("a")  # the service found another version at the path while saving
    s.settled("a")
    assert start_all(s, clock.now) == ["a"]


# -- storage full: held results ---------------------------------------------------------------


def test_results_are_held_while_storage_is_full_and_saved_in_the_order_they_finished(clock: Clock) -> None:
    s = make(window=4, probe=5.0)
    for rel in ("a", "b", "c"):
        s.offer(rel)
    start_all(s, clock.now)
    assert s.finished("a", "result a", clock.now)
    assert s.hold("a", "result a", clock.now, "output disk full") is True  # the episode starts: say it once
    assert s.finished("b", "result b", clock.advance(1)) is False  # held behind a, not saved out of order
    assert s.finished("c", "result c", clock.advance(1)) is False
    assert (s.held, s.in_flight, s.storage_error) == (3, 0, "output disk full")
    assert s.next_held(clock.advance(1)) is None  # the probe is not due yet
    head = s.next_held(clock.advance(2))  # 5 s after the failure
    assert head == ("a", "result a")
    assert s.storage_failed(clock.now, "still full") is False  # the same episode: not said again
    assert s.next_held(clock.advance(4.9)) is None
    saved = []
    while (head := s.next_held(clock.advance(0.1))) is not None:
        saved.append(head[1])
        recovered = s.settled(head[0])
    assert saved == ["result a", "result b", "result c"]
    assert recovered is True  # the last held result saved: storage works again
    assert s.storage_error is None and s.held == 0 and s.idle()


def test_a_held_result_that_still_does_not_fit_stops_the_round_and_keeps_its_place(clock: Clock) -> None:
    s = make(probe=5.0)
    s.offer("a")
    s.offer("b")
    start_all(s, clock.now)
    s.finished("a", "ra", clock.now)
    s.hold("a", "ra", clock.now, "full")
    s.finished("b", "rb", clock.now)
    assert s.next_held(clock.advance(5)) == ("a", "ra")
    assert not s.settled("a")  # a fits ...
    assert s.next_held(clock.now) == ("b", "rb")
    s.storage_failed(clock.now, "full again")  # ... b does not
    assert s.next_held(clock.now) is None
    assert s.next_held(clock.advance(5)) == ("b", "rb")


def test_nothing_starts_while_results_are_held_or_storage_is_known_full(clock: Clock) -> None:
    s = make(window=4, probe=5.0)
    for rel in ("a", "b"):
        s.offer(rel)
    assert s.next_start(clock.now) == "a"
    s.started("a", clock.now)
    s.finished("a", "ra", clock.now)
    s.hold("a", "ra", clock.now, "full")
    assert s.next_start(clock.now) is None  # held results first
    assert s.next_start(clock.advance(10)) is None  # even with the probe due: they are saved before new work
    head = s.next_held(clock.now)
    assert head is not None
    s.settled("a")
    assert s.next_start(clock.now) == "b"


def test_a_journal_that_cannot_be_written_puts_the_file_back_first_in_line(clock: Clock) -> None:
    s = make(probe=5.0)
    for rel in ("a", "b"):
        s.offer(rel)
    assert s.next_start(clock.now) == "a"
    assert s.put_back("a", clock.now, "journal: database or disk is full") is True
    assert s.next_start(clock.advance(4.9)) is None  # storage known full until the probe
    assert s.next_start(clock.advance(0.1)) == "a"  # the probe: a first, as before
    s.started("a", clock.now)
    assert s.storage_recovered() is True  # an output was saved with nothing held
    assert s.storage_recovered() is False  # said once
    assert s.next_start(clock.now) == "b"


def test_storage_is_not_recovered_while_results_are_still_held(clock: Clock) -> None:
    s = make()
    s.offer("a")
    s.offer("b")
    start_all(s, clock.now)
    s.finished("a", "ra", clock.now)
    s.hold("a", "ra", clock.now, "full")
    s.probe_now()
    assert s.next_held(clock.now) == ("a", "ra")
    assert s.storage_recovered() is False  # a (the head) is being saved; still held
    assert s.settled("a") is True


def test_a_recheck_of_a_held_file_is_queued_once_it_is_saved(clock: Clock) -> None:
    s = make()
    s.offer("a")
    start_all(s, clock.now)
    s.finished("a", "ra", clock.now)
    s.hold("a", "ra", clock.now, "full")
    s.offer("a")  # a new version while the old result waits for space
    assert s.queue_depth == 0
    s.probe_now()
    assert s.next_held(clock.now) == ("a", "ra")
    s.settled("a")
    assert start_all(s, clock.now) == ["a"]


# -- drain and give-back ------------------------------------------------------------------------


def test_drain_tells_cancelled_jobs_apart_and_gives_back_what_the_bound_cuts_off(clock: Clock) -> None:
    s = make(window=3)
    for rel in ("a", "b", "c", "d"):
        s.offer(rel)
    start_all(s, clock.now)
    assert not s.draining
    s.drain()
    assert s.draining  # a cancelled job is now one the executor never started: given back, not retried
    assert s.finished("c", "cancelled", clock.now)
    s.settled("c")
    assert s.finished("a", "ra", clock.now)  # a running job that finished within the bound is saved
    s.settled("a")
    assert s.cut_off() == ["b"]  # still running at the bound
    assert s.in_flight == 0


def test_held_results_are_saved_at_drain_when_the_last_probe_works(clock: Clock) -> None:
    s = make(probe=5.0)
    s.offer("a")
    start_all(s, clock.now)
    s.finished("a", "ra", clock.now)
    s.hold("a", "ra", clock.now, "full")
    s.drain()
    assert s.next_held(clock.now) is None  # the probe is not due ...
    s.probe_now()  # ... but shutdown is the last chance
    assert s.next_held(clock.now) == ("a", "ra")


# -- progress, for the systemd watchdog --------------------------------------------------------


def test_seconds_since_progress_counts_only_while_jobs_are_in_flight(clock: Clock) -> None:
    s = make()
    assert s.seconds_since_progress(clock.now) == 0.0
    clock.advance(3600)  # an idle hour is no stall
    s.offer("a")
    s.offer("b")
    start_all(s, clock.now)
    assert s.seconds_since_progress(clock.advance(7)) == 7.0
    s.finished("a", "ra", clock.now)
    s.settled("a")
    assert s.seconds_since_progress(clock.advance(2)) == 2.0
    s.finished("b", "rb", clock.now)
    s.settled("b")
    assert s.seconds_since_progress(clock.advance(100)) == 0.0
