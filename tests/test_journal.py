"""Journal: real SQLite files, real second processes for crash and concurrent-reader behaviour."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from icsd.daemon.identity import FileVersion
from icsd.daemon.journal import SCHEMA_VERSION, Journal, State
from icsd.errors import SettingsError, TransientError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.sqlite3"


@pytest.fixture
def journal(db_path: Path) -> Iterator[Journal]:
    with Journal(db_path) as j:
        yield j


def fid(rel: str = "a.jpg", size: int = 100, mtime_ns: int = 1_000, digest: str = "d1") -> FileVersion:
    return FileVersion(rel=rel, size=size, mtime_ns=mtime_ns, digest=digest)


def spawn(code: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stdin=stdin,
        text=True,
        env=env,
    )


def read_until(proc: subprocess.Popen[str], predicate: Callable[[str], bool]) -> str:
    """Read the child's stdout line by line until `predicate(line)`; the per-test timeout bounds it."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if predicate(line):
            return line
    raise AssertionError(f"child exited ({proc.wait()}) before the expected output")


def integrity(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


# -- schema and setup ----------------------------------------------------------------------------


def test_creates_parent_dir_wal_and_schema_version(db_path: Path) -> None:
    with Journal(db_path):
        pass
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        con.close()
    with Journal(db_path) as again:  # reopening an existing journal keeps it
        assert again.counts() == dict.fromkeys(State, 0)


def test_newer_schema_is_refused_with_a_clear_message(db_path: Path) -> None:
    with Journal(db_path):
        pass
    con = sqlite3.connect(db_path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(SettingsError, match="newer icsd"):
        Journal(db_path)


def test_not_a_database_is_a_settings_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SettingsError, match="not an icsd journal"):
        Journal(db_path)


def test_open_readonly_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no journal"):
        Journal.open_readonly(tmp_path / "nope.sqlite3")


def test_readonly_refuses_writes(db_path: Path, journal: Journal) -> None:
    journal.claim(fid())
    with Journal.open_readonly(db_path) as ro:
        assert ro.get("a.jpg") is not None
        with pytest.raises(PermissionError):
            ro.mark_done("a.jpg", "a.png")


# -- transitions ---------------------------------------------------------------------------------


def test_claim_new_then_done_is_not_claimed_again(journal: Journal) -> None:
    assert journal.claim(fid())
    e = journal.get("a.jpg")
    assert e is not None and e.state is State.IN_PROGRESS and e.attempts == 1
    assert journal.mark_done("a.jpg", "a.png")
    assert not journal.claim(fid())
    e = journal.get("a.jpg")
    assert e is not None and e.state is State.DONE and e.output == "a.png" and e.error is None
    assert journal.is_settled("a.jpg", 100, 1_000)
    assert not journal.is_settled("a.jpg", 100, 2_000)
    assert not journal.is_settled("b.jpg", 100, 1_000)


def test_failed_is_permanent_for_same_content(journal: Journal) -> None:
    journal.claim(fid())
    journal.mark_failed("a.jpg", "cannot decode")
    assert not journal.claim(fid())
    assert journal.is_settled("a.jpg", 100, 1_000)
    e = journal.get("a.jpg")
    assert e is not None and e.state is State.FAILED and e.error == "cannot decode"


def test_pending_retry_counts_attempts(journal: Journal) -> None:
    journal.claim(fid())
    assert journal.mark_pending("a.jpg", "disk full") == 1
    assert not journal.is_settled("a.jpg", 100, 1_000)
    assert [e.rel for e in journal.unfinished()] == ["a.jpg"]
    assert journal.claim(fid())
    assert journal.mark_pending("a.jpg", "disk full") == 2
    assert journal.claim(fid())
    e = journal.get("a.jpg")
    assert e is not None and e.state is State.IN_PROGRESS and e.attempts == 3


def test_in_progress_leftover_is_claimed_again(journal: Journal) -> None:
    assert journal.claim(fid())
    assert journal.claim(fid())  # as after a crash: IN_PROGRESS is work to redo
    e = journal.get("a.jpg")
    assert e is not None and e.attempts == 2


@pytest.mark.parametrize("state", [State.DONE, State.FAILED])
def test_replaced_file_is_reprocessed_with_fresh_attempts(journal: Journal, state: State) -> None:
    journal.claim(fid())
    journal.mark_pending("a.jpg", "busy")
    journal.claim(fid())
    if state is State.DONE:
        journal.mark_done("a.jpg", "a.png")
    else:
        journal.mark_failed("a.jpg", "bad")
    assert journal.claim(fid(size=200, mtime_ns=5_000, digest="d2"))
    e = journal.get("a.jpg")
    assert e is not None
    assert (e.state, e.attempts, e.size, e.mtime_ns, e.digest) == (State.IN_PROGRESS, 1, 200, 5_000, "d2")
    assert e.output is None and e.error is None


def test_unclaim_takes_back_the_attempt_that_never_ran(journal: Journal) -> None:
    journal.claim(fid())
    journal.mark_pending("a.jpg", "busy")
    journal.claim(fid())  # attempt 2 claimed, then the workers turn out unable to start
    journal.unclaim("a.jpg", "workers cannot start")
    e = journal.get("a.jpg")
    assert e is not None and (e.state, e.attempts, e.error) == (State.PENDING, 1, "workers cannot start")
    assert journal.claim(fid())  # still work to do
    e = journal.get("a.jpg")
    assert e is not None and (e.state, e.attempts) == (State.IN_PROGRESS, 2)


def test_same_size_new_digest_is_a_replacement(journal: Journal) -> None:
    journal.claim(fid())
    journal.mark_done("a.jpg", "a.png")
    assert journal.claim(fid(digest="other"))


def test_touched_only_is_not_reprocessed_but_mtime_is_updated(journal: Journal) -> None:
    journal.claim(fid())
    journal.mark_done("a.jpg", "a.png")
    assert not journal.claim(fid(mtime_ns=9_999))
    e = journal.get("a.jpg")
    assert e is not None and e.state is State.DONE and e.mtime_ns == 9_999 and e.attempts == 1
    assert journal.is_settled("a.jpg", 100, 9_999)  # next time the cheap check suffices


def test_digest_guard_ignores_stale_results(journal: Journal) -> None:
    journal.claim(fid(digest="old"))
    journal.claim(fid(size=5, digest="new"))  # replaced while the old job was running
    assert not journal.mark_done("a.jpg", "a.png", digest="old")
    assert not journal.mark_failed("a.jpg", "boom", digest="old")
    e = journal.get("a.jpg")
    assert e is not None and e.state is State.IN_PROGRESS
    assert journal.mark_done("a.jpg", "a.png", digest="new")


def test_unknown_rel_raises_keyerror(journal: Journal) -> None:
    for call in (
        lambda: journal.mark_done("x.jpg", "x.png"),
        lambda: journal.mark_failed("x.jpg", "e"),
        lambda: journal.mark_pending("x.jpg", "e"),
        lambda: journal.reserve_output("x.jpg", "x.png"),
        lambda: journal.mark_done("x.jpg", "x.png", digest="d"),
        lambda: journal.unclaim("x.jpg", "e"),
    ):
        with pytest.raises(KeyError, match=r"x\.jpg"):
            call()


def test_forget_removes_row(journal: Journal) -> None:
    journal.claim(fid())
    journal.forget("a.jpg")
    journal.forget("never-seen.jpg")
    assert journal.get("a.jpg") is None
    assert journal.claim(fid())  # a reappearing file is new work


def test_output_ownership(journal: Journal) -> None:
    journal.claim(fid("a.jpg"))
    assert journal.output_owner("a.png") is None
    journal.reserve_output("a.jpg", "a.png")
    assert journal.output_owner("a.png") == "a.jpg"  # in progress
    journal.mark_pending("a.jpg", "busy")
    assert journal.output_owner("a.png") == "a.jpg"  # still owned while awaiting retry
    journal.claim(fid("a.jpg"))
    journal.mark_done("a.jpg", "a.png")
    assert journal.output_owner("a.png") == "a.jpg"  # done
    journal.claim(fid("b.png", digest="d2"))
    assert journal.output_owner("b.png") is None
    journal.reserve_output("b.png", "b.png")
    journal.mark_failed("b.png", "bad")
    assert journal.output_owner("b.png") is None  # failed inputs own nothing
    journal.forget("a.jpg")
    assert journal.output_owner("a.png") is None


def test_counts_include_zeros_and_recent_failures_order(journal: Journal) -> None:
    assert journal.counts() == {State.PENDING: 0, State.IN_PROGRESS: 0, State.DONE: 0, State.FAILED: 0}
    for i in range(5):
        journal.claim(fid(f"f{i}.jpg", digest=str(i)))
    journal.mark_done("f0.jpg", "f0.png")
    journal.mark_pending("f1.jpg", "busy")
    for rel in ("f2.jpg", "f3.jpg", "f4.jpg"):
        journal.mark_failed(rel, f"bad {rel}")
    assert journal.counts() == {State.PENDING: 1, State.IN_PROGRESS: 0, State.DONE: 1, State.FAILED: 3}
    assert [e.rel for e in journal.recent_failures()] == ["f4.jpg", "f3.jpg", "f2.jpg"]
    assert [e.rel for e in journal.recent_failures(limit=2)] == ["f4.jpg", "f3.jpg"]
    assert {e.rel for e in journal.unfinished()} == {"f1.jpg"}


def test_busy_database_is_a_transient_error_and_nothing_is_half_done(db_path: Path) -> None:
    with Journal(db_path, busy_timeout=0.05) as j:
        j.claim(fid())
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            with pytest.raises(TransientError, match="not saved"):
                j.mark_done("a.jpg", "a.png")
            other.execute("ROLLBACK")
        finally:
            other.close()
        e = j.get("a.jpg")
        assert e is not None and e.state is State.IN_PROGRESS
        assert j.mark_done("a.jpg", "a.png")  # usable again once the lock is gone


def test_a_transaction_commits_its_writes_together_or_not_at_all(db_path: Path, journal: Journal) -> None:
    """The daemon claims a round of files in one transaction: another connection sees none of the claims until
    it commits, then all; an error inside leaves none (the earlier claims of the round included)."""
    reader = sqlite3.connect(db_path)
    try:
        with journal.transaction():
            assert journal.claim(fid("a.jpg")) and journal.claim(fid("b.jpg"))
            assert journal.get("a.jpg") is not None  # its own writes are visible inside
            assert reader.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 0
        assert reader.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 2
        with pytest.raises(KeyError), journal.transaction():
            assert journal.claim(fid("c.jpg"))
            journal.mark_pending("nobody.jpg", "no such row")  # raises inside: the whole transaction goes
        assert journal.get("c.jpg") is None and reader.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 2
    finally:
        reader.close()
    with pytest.raises(RuntimeError, match="durable"), journal.transaction():
        journal.mark_done("a.jpg", "a.png")  # a durable write must not ride on a commit that is not
    assert journal.get("a.jpg").state is State.IN_PROGRESS  # type: ignore[union-attr]
    with journal.transaction(durable=True):
        journal.mark_done("a.jpg", "a.png")
    assert journal.get("a.jpg").state is State.DONE  # type: ignore[union-attr]


def test_a_transaction_that_cannot_commit_is_a_transient_error(db_path: Path) -> None:
    with Journal(db_path, busy_timeout=0.05) as j:
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            with pytest.raises(TransientError, match="not saved"), j.transaction():
                j.claim(fid())
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert j.get("a.jpg") is None
        with j.transaction():
            assert j.claim(fid())  # usable again


def test_state_survives_reopen(db_path: Path) -> None:
    with Journal(db_path) as j:
        j.claim(fid())
        j.mark_done("a.jpg", "a.png")
    with Journal(db_path) as j:
        assert not j.claim(fid())
        assert j.counts()[State.DONE] == 1


# -- real processes ------------------------------------------------------------------------------

_BURST_WRITER = """
    import sys
    from pathlib import Path
    from icsd.daemon.identity import FileVersion
    from icsd.daemon.journal import Journal
    j = Journal(Path(sys.argv[1]))
    i = 0
    while True:
        rel = f"f{i:06d}.jpg"
        assert j.claim(FileVersion(rel, i, i, digest=f"d{i}"))
        if i % 2 == 0:
            j.reserve_output(rel, rel + ".png")
            j.mark_done(rel, rel + ".png")
        print(i, flush=True)
        i += 1
"""


def test_sigkill_mid_burst_leaves_consistent_db_and_requeues(db_path: Path) -> None:
    with Journal(db_path):
        pass
    child = spawn(_BURST_WRITER, str(db_path))
    try:
        last = int(read_until(child, lambda line: int(line) >= 120))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert integrity(db_path) == "ok"
    with Journal(db_path) as j:
        rows = {e.rel: e for e in j.unfinished()}
        counts = j.counts()
        # every finished loop iteration is durable; odd files were left in progress
        for i in range(last + 1):
            rel = f"f{i:06d}.jpg"
            e = j.get(rel)
            assert e is not None
            if i % 2:
                assert rel in rows and e.state is State.IN_PROGRESS and e.attempts == 1
            else:
                assert e.state is State.DONE and e.output == rel + ".png"
        assert counts[State.PENDING] == counts[State.FAILED] == 0
        assert all(e.state is State.IN_PROGRESS for e in rows.values())
        # restart: each leftover is claimed again and counts a second attempt
        victim = sorted(rows)[0]
        e = rows[victim]
        assert j.claim(FileVersion(e.rel, e.size, e.mtime_ns, digest=e.digest))
        again = j.get(victim)
        assert again is not None and again.attempts == 2


_TORN_WRITER = """
    import sqlite3, sys, time
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    con.execute("UPDATE files SET state = 'done', output = 'torn.png'")
    con.execute("INSERT INTO files (rel, size, mtime_ns, digest, state, attempts, output, error, updated)"
                " VALUES ('ghost.jpg', 1, 1, 'g', 'done', 1, NULL, NULL, 0)")
    print("inside", flush=True)
    time.sleep(600)  # parked mid-transaction until the parent kills it
"""


def test_killed_inside_a_transaction_changes_nothing(db_path: Path) -> None:
    with Journal(db_path) as j:
        for i in range(20):
            j.claim(fid(f"f{i}.jpg", digest=str(i)))
    child = spawn(_TORN_WRITER, str(db_path))
    try:
        read_until(child, lambda line: line.strip() == "inside")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert integrity(db_path) == "ok"
    with Journal(db_path) as j:
        assert j.get("ghost.jpg") is None
        assert j.counts()[State.IN_PROGRESS] == 20
        assert j.output_owner("torn.png") is None
        assert j.claim(fid("new.jpg"))  # the dead writer's lock is gone


_DAEMON = """
    import sys
    from pathlib import Path
    from icsd.daemon.identity import FileVersion
    from icsd.daemon.journal import Journal
    n = int(sys.argv[2])
    with Journal(Path(sys.argv[1])) as j:
        print("open", flush=True)
        for i in range(n):
            rel = f"f{i:05d}.jpg"
            j.claim(FileVersion(rel, i, i, digest=str(i)))
            j.mark_done(rel, rel + ".png")
        print("finished", flush=True)
        sys.stdin.read()  # keep the connection (and the WAL) open until the parent is done
"""


def test_status_reader_runs_alongside_a_writing_daemon(db_path: Path) -> None:
    n = 150
    child = spawn(_DAEMON, str(db_path), str(n), stdin=subprocess.PIPE)
    try:
        read_until(child, lambda line: line.strip() == "open")
        seen: list[int] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with Journal.open_readonly(db_path) as ro:
                counts = ro.counts()
            seen.append(counts[State.DONE])
            assert counts[State.IN_PROGRESS] in (0, 1)  # each claim/done pair is seen whole or not at all
            if counts[State.DONE] == n:
                break
        assert seen[-1] == n
        assert seen == sorted(seen)  # never goes backwards
        assert len(seen) > 1  # we really read while it was writing
    finally:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.close()
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == 0


_STATUS = """
    import json, sys
    from pathlib import Path
    from icsd.daemon.journal import Journal
    with Journal.open_readonly(Path(sys.argv[1])) as ro:
        print(json.dumps({str(k): v for k, v in ro.counts().items()}))
"""


def test_readonly_process_is_not_blocked_by_an_open_write_transaction(db_path: Path, journal: Journal) -> None:
    journal.claim(fid())
    journal.mark_done("a.jpg", "a.png")
    writer = sqlite3.connect(db_path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE files SET state = 'failed'")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_STATUS), str(db_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=True,
        )
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert json.loads(out.stdout) == {"pending": 0, "in_progress": 0, "done": 1, "failed": 0}
