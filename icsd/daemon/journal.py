"""Durable per-file state in SQLite, so every input is processed exactly once across restarts.

Longer than ~400 lines on purpose: every SQL statement of the schema lives here, next to its migrations.

A file's identity is a FileVersion (relative path, size, mtime_ns, content digest). `claim` decides, in one
transaction, whether a file needs work; `mark_*` record the outcome. WAL mode lets `icsd status`
read the journal from another process while the daemon writes, and keeps the file consistent when
the daemon is killed mid-transaction (an uncommitted transaction simply never happened).
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from icsd.daemon.identity import FileVersion
from icsd.errors import SettingsError, TransientError

__all__ = ["SCHEMA_VERSION", "DoneMark", "DoneRow", "Entry", "Journal", "Known", "OwnerOf", "State"]

SCHEMA_VERSION = 3
# Steps from each older schema to the next, run in one transaction on open (read-write). 1 -> 2: `stats`,
# what a done row's output is (JSON: sizes, colours, strategy, palette, fingerprint, PSNR) for the manifest.
# 2 -> 3: `fingerprint`, the settings a done row's output was made with, in its own indexed column (filled
# from `stats`) so "is this output stale?" is one indexed query; NULL: made before icsd recorded it.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE files ADD COLUMN stats TEXT",),
    2: (
        "ALTER TABLE files ADD COLUMN fingerprint TEXT",
        "UPDATE files SET fingerprint = json_extract(stats, '$.fingerprint') WHERE stats IS NOT NULL"
        " AND json_valid(stats)",
        "CREATE INDEX IF NOT EXISTS files_by_fingerprint ON files (state, fingerprint)",
    ),
}
# SQLite result codes that mean "not now" rather than "never": retried by the caller.
_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR")


class State(enum.StrEnum):
    """Lifecycle of one input file."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal row."""

    rel: str
    size: int
    mtime_ns: int
    digest: str
    state: State
    attempts: int
    output: str | None
    error: str | None
    updated: float


@dataclass(frozen=True, slots=True)
class DoneRow:
    """A done row with the stats recorded for its output (None for rows done before the journal kept them)."""

    entry: Entry
    stats: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class DoneMark:
    """One output to record as done (see Journal.mark_done, mark_done_many)."""

    rel: str
    output: str
    digest: str | None = None
    stats: dict[str, Any] | None = None


OwnerOf = Callable[[str], "str | None"]  # an output name -> the input that owns it (Journal.output_owner)
Known = tuple[Any, ...]  # a path's row as Journal.known returns it (_KNOWN's columns)
_KNOWN = "size, mtime_ns, digest, state, fingerprint, output"


class _Unset(enum.Enum):
    """The type of UNSET: "not looked up yet", where None means "no row"."""

    UNSET = enum.auto()


UNSET = _Unset.UNSET
# The digest of a row claimed unread (a worker reads the file, see inputs.SourceFile) until it is finished.
UNREAD = ""


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS files (
    rel      TEXT PRIMARY KEY NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    state    TEXT NOT NULL CHECK (state IN ({", ".join(repr(s.value) for s in State)})),
    attempts INTEGER NOT NULL DEFAULT 0,
    output   TEXT,
    error    TEXT,
    updated  REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_by_state ON files (state, updated);
CREATE INDEX IF NOT EXISTS files_by_output ON files (output) WHERE output IS NOT NULL;
"""
_COLUMNS = "rel, size, mtime_ns, digest, state, attempts, output, error, updated"
_SETTLED = (State.DONE.value, State.FAILED.value)
# States whose reserved output path is taken: written, being written, or about to be retried.
_OWNING = (State.DONE.value, State.IN_PROGRESS.value, State.PENDING.value)


class Journal:
    """The daemon's state file. Thread-safe (one internal lock), but meant for one coordinator thread."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0, _readonly: bool = False) -> None:
        """`busy_timeout`: seconds a write waits for another writer's lock before TransientError."""
        self.path = Path(path)
        self.readonly = _readonly
        self._lock = threading.RLock()  # re-entrant: a write inside `transaction()` runs on the same thread
        self._outer: bool | None = None  # inside transaction(): whether its commit is durable
        if _readonly:
            if not self.path.is_file():
                raise SettingsError(f"no journal at {self.path}: has icsd run with this state folder yet?")
            uri = f"{self.path.absolute().as_uri()}?mode=ro"
            self._db = _connect(uri, self.path, uri=True, timeout=busy_timeout)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = _connect(str(self.path), self.path, uri=False, timeout=busy_timeout)
        try:
            self._setup()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open_readonly(cls, path: Path) -> Journal:
        """Open for reading while the daemon may be writing (`icsd status`); writes raise PermissionError."""
        return cls(path, _readonly=True)

    # -- queries -------------------------------------------------------------------------------

    def known(self, rel: str) -> Known | None:
        """What the journal knows of `rel`, as `is_settled` and `claim_output` need it: the daemon looks a file up
        once per admission and passes the row to both."""
        return self._one(f"SELECT {_KNOWN} FROM files WHERE rel = ?", (rel,))

    def is_settled(
        self, rel: str, size: int, mtime_ns: int, fingerprint: str | None = None, *,
        known: Known | _Unset | None = UNSET,
    ) -> bool:
        """True if this exact (rel, size, mtime) already ended DONE or FAILED: skip without hashing.

        With `fingerprint` (the current settings'), a DONE or FAILED row counts only if it was made (or failed) with
        them, or with unknown settings (recorded before fingerprints were: trusted, not redone on an upgrade).
        `known`: the row from `known(rel)`, if looked up already.
        """
        row = self.known(rel) if isinstance(known, _Unset) else known
        if row is None:
            return False
        row_size, row_mtime, _digest, state, made_with, _output = row
        if (row_size, row_mtime) != (size, mtime_ns):
            return False
        return state in _SETTLED and (fingerprint is None or made_with is None or made_with == fingerprint)

    def stale(self, fingerprint: str) -> list[Entry]:
        """DONE rows whose output was made with other settings than `fingerprint`'s, by relative path."""
        column = self._fingerprint_column()
        if column == "NULL":
            return []
        return self._all(
            f"SELECT {_COLUMNS} FROM files WHERE state = ? AND {column} IS NOT NULL AND {column} != ? ORDER BY rel",
            (State.DONE.value, fingerprint),
        )

    def get(self, rel: str) -> Entry | None:
        row = self._one(f"SELECT {_COLUMNS} FROM files WHERE rel = ?", (rel,))
        return None if row is None else _entry(row)

    def output_owner(self, output: str) -> str | None:
        """The input that owns `output` (done, in progress or awaiting retry), so two inputs never share one."""
        with self._lock:
            return _owner(self._db, output)

    def unfinished(self) -> list[Entry]:
        """PENDING and IN_PROGRESS rows, oldest first: what a restart must requeue."""
        return self._all(
            f"SELECT {_COLUMNS} FROM files WHERE state IN (?, ?) ORDER BY updated, rel",
            (State.PENDING.value, State.IN_PROGRESS.value),
        )

    def counts(self) -> dict[State, int]:
        """Rows per state; every state is present, zeros included."""
        result = dict.fromkeys(State, 0)
        with self._lock:
            for state, n in self._db.execute("SELECT state, COUNT(*) FROM files GROUP BY state"):
                result[State(state)] = int(n)
        return result

    def recent_failures(self, limit: int = 10) -> list[Entry]:
        """The newest permanent failures, newest first."""
        return self._all(
            f"SELECT {_COLUMNS} FROM files WHERE state = ? ORDER BY updated DESC, rel LIMIT ?",
            (State.FAILED.value, limit),
        )

    def done_rows(self) -> list[DoneRow]:
        """Every DONE row with its recorded stats, by relative path (what `icsd manifest` lists)."""
        stats = "stats" if "stats" in self._columns() else "NULL"
        rows = self._rows(f"SELECT {_COLUMNS}, {stats} FROM files WHERE state = ? ORDER BY rel", (State.DONE.value,))
        return [DoneRow(_entry(row[:-1]), None if row[-1] is None else json.loads(str(row[-1]))) for row in rows]

    # -- transitions ---------------------------------------------------------------------------

    def claim(self, version: FileVersion, fingerprint: str | None = None) -> bool:
        """Decide atomically whether to work on `version` now; if so mark it IN_PROGRESS and count the attempt.

        True for: an unknown path; a replaced file (size or digest differ: attempts restart at 1);
        a PENDING or IN_PROGRESS row (retry, or left over from a crash); the same content DONE with other
        settings than `fingerprint`'s (a remake: attempts restart at 1, the output name is kept, so the new
        output replaces the old one), or FAILED with other settings (another try). False for the same content
        already DONE or FAILED with these settings (or unknown ones); a touched-only file (same digest, new
        mtime) gets its mtime updated so the cheap `is_settled` check matches next time. `version` must have
        been read (digest known)."""
        if version.digest is None:
            raise ValueError(f"claim needs the digest of {version.rel!r}: read the file first")
        with self._write(durable=False) as db:
            return bool(_claim(db, version, fingerprint))

    def claim_output(
        self, version: FileVersion, fingerprint: str | None, choose: Callable[[OwnerOf, str | None], str], *,
        known: Known | _Unset | None = UNSET,
    ) -> str | None:
        """`claim`, and when claimed, reserve the output name `choose(owner_of, previous)` picks, in one
        transaction (one commit per admitted file, not two). `owner_of(name)` is `output_owner` inside it;
        `previous` is the output the row already had (a retry or a remake keeps it). None: not claimed.
        `known`: the row from `known(rel)`, if looked up already in this transaction (see transaction()).
        A path the journal does not know may be claimed unread (digest None): its row records the digest
        when it is marked done or failed (a worker read it, see inputs.SourceFile)."""
        with self._write(durable=False) as db:
            output = _claim(db, version, fingerprint, choose, known)
            return output if isinstance(output, str) else None

    def reserve_output(self, rel: str, output: str) -> None:
        """Record the intended output path before writing it, so `output_owner` sees it even after a crash."""
        with self._write(durable=False) as db:
            _require(db.execute("UPDATE files SET output = ? WHERE rel = ?", (output, rel)), rel)

    def mark_done(
        self, rel: str, output: str, *, digest: str | None = None, stats: dict[str, Any] | None = None
    ) -> bool:
        """Record success, with the output's `stats` (JSON-able, for the manifest). With `digest`, only if the row
        still holds that content (False: it was replaced)."""
        return self._finish(rel, State.DONE, output=output, error=None, digest=digest, stats=stats)

    def mark_done_many(self, done: Sequence[DoneMark]) -> list[bool]:
        """`mark_done` for several outputs in one durable transaction (group commit: one WAL fsync for the
        group, not one per file); all or none. One bool per mark, in order."""
        with self._write() as db:
            if done and all(mark.digest is not None for mark in done):  # the daemon's case: one executemany
                now = time.time()
                rows = [(*_finish_values(State.DONE, mark.output, None, now, mark.stats),
                         *_read_as(mark.rel, mark.digest)) for mark in done]
                if db.executemany(_FINISH_READ, rows).rowcount == len(rows):
                    return [True] * len(rows)
            # Some row no longer holds the content read (replaced meanwhile): row by row, which (KeyError if gone).
            return [_finish_row(db, mark.rel, State.DONE, output=mark.output, error=None, digest=mark.digest,
                                stats=mark.stats) for mark in done]

    def mark_failed(
        self, rel: str, error: str, *, digest: str | None = None, fingerprint: str | None = None
    ) -> bool:
        """Record a permanent failure: the same content is not retried with the same settings (`fingerprint`, the
        current settings'; with other settings it is, as the failure may have been theirs). `digest` as in
        `mark_done`."""
        return self._finish(rel, State.FAILED, output=None, error=error, digest=digest, fingerprint=fingerprint)

    def mark_pending(self, rel: str, error: str) -> int:
        """Record a transient failure: back to PENDING for a retry. Returns the attempts made so far."""
        with self._write(durable=False) as db:
            cur = db.execute(
                "UPDATE files SET state = ?, error = ?, updated = ? WHERE rel = ? RETURNING attempts",
                (State.PENDING.value, error, time.time(), rel),
            )
            row = cur.fetchone()
            if row is None:
                raise KeyError(f"journal has no entry for {rel!r}")
            return int(row[0])

    def unclaim(self, rel: str, reason: str) -> None:
        """Give back a claim whose attempt never ran (the workers could not start): PENDING again, with the
        reason, and the attempt `claim` counted taken back, so a broken installation fails no image."""
        with self._write(durable=False) as db:
            _require(
                db.execute(
                    "UPDATE files SET state = ?, error = ?, attempts = MAX(attempts - 1, 0), updated = ?"
                    " WHERE rel = ?",
                    (State.PENDING.value, reason, time.time(), rel),
                ),
                rel,
            )

    def forget(self, rel: str) -> None:
        """Drop the row (the input vanished before it was processed). Unknown paths are fine."""
        with self._write(durable=False) as db:
            db.execute("DELETE FROM files WHERE rel = ?", (rel,))

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[None]:
        """Make the writes inside one transaction: one commit for several files (the daemon claims a round of
        files so, committed before any of their jobs starts), all or none. `durable` as in _write; a durable
        write inside one that is not raises RuntimeError. TransientError as for a single write."""
        with self._write(durable=durable):
            self._outer = durable
            try:
                yield
            finally:
                self._outer = None

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- private -------------------------------------------------------------------------------

    def _setup(self) -> None:
        db = self._db
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise SettingsError(
                f"{self.path} is not an icsd journal ({exc}): move it away or fix ICSD_STATE_DIR"
            ) from exc
        if version > SCHEMA_VERSION:
            raise SettingsError(
                f"journal {self.path} was written by a newer icsd (schema {version} > {SCHEMA_VERSION}): upgrade icsd"
            )
        if self.readonly:  # an older schema reads as it is (the daemon upgrades it when it opens it)
            if version < 1:
                raise SettingsError(f"{self.path} is not an initialised icsd journal (schema {version})")
            db.execute("PRAGMA query_only = ON")
            return
        # WAL: readers never block the writer and vice versa; a killed writer leaves no torn pages.
        # Durability per transaction (see _write): DONE and FAILED commit with synchronous=FULL (the WAL is
        # fsynced: they survive power loss, and only then is an original deleted or archived); claims,
        # reservations and retries commit with NORMAL (no fsync: they survive a killed process, not a
        # power loss). A FULL commit fsyncs the WAL up to itself, so every earlier NORMAL commit becomes
        # durable with it. A power loss can so only undo what came after the last DONE/FAILED: a claim
        # (the file is redone), a reservation (the output, if written, is rewritten), a retry count.
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SettingsError(f"journal {self.path}: SQLite refused WAL mode ({mode}); use a local state folder")
        db.execute("PRAGMA synchronous = FULL")
        self._durable = True
        if version < SCHEMA_VERSION:
            with self._write() as tx:
                if version == 0:  # a new journal: the first schema, then every step below
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            tx.execute(statement)
                    version = 1
                for step in range(version, SCHEMA_VERSION):
                    for statement in _MIGRATIONS[step]:
                        tx.execute(statement)
                tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all or nothing, even if the process dies halfway.

        `durable`: its commit fsyncs the WAL (survives power loss); else it survives a killed process only
        (two of a file's three commits: measured in docs/scale.md). Busy, full-disk and I/O errors become
        TransientError (retry later); anything else is a bug. Inside `transaction()`, a write is part of it.
        """
        if self.readonly:
            raise PermissionError(f"journal {self.path} is open read-only")
        with self._lock:
            db = self._db
            if self._outer is not None:  # the enclosing transaction() commits (or rolls back) this write
                if durable and not self._outer:
                    raise RuntimeError("a durable journal write inside a transaction that is not durable")
                yield db
                return
            try:
                if durable != self._durable:  # outside a transaction: SQLite ignores it inside one
                    db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                    self._durable = durable
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if not getattr(exc, "sqlite_errorname", "").startswith(_TRANSIENT):
                    raise
                raise TransientError(f"journal {self.path}: {exc}; the change was not saved, will retry") from exc

    def _finish(
        self, rel: str, state: State, *, output: str | None, error: str | None, digest: str | None,
        stats: dict[str, Any] | None = None, fingerprint: str | None = None,
    ) -> bool:
        with self._write() as db:
            return _finish_row(db, rel, state, output=output, error=error, digest=digest, stats=stats,
                               fingerprint=fingerprint)

    def _columns(self) -> set[str]:
        return {str(row[1]) for row in self._rows("PRAGMA table_info(files)")}

    def _fingerprint_column(self) -> str:
        """The SQL for a row's fingerprint: its column, or (a read-only journal of schema 2) the JSON's."""
        columns = self._columns()
        if "fingerprint" in columns:
            return "fingerprint"
        if "stats" not in columns:
            return "NULL"
        return "CASE WHEN json_valid(stats) THEN json_extract(stats, '$.fingerprint') END"

    def _one(self, sql: str, args: tuple[object, ...]) -> tuple[object, ...] | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()  # type: ignore[no-any-return]

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args))

    def _all(self, sql: str, args: tuple[object, ...]) -> list[Entry]:
        with self._lock:
            return [_entry(row) for row in self._db.execute(sql, args)]


def _connect(target: str, path: Path, *, uri: bool, timeout: float) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; `_write` issues BEGIN IMMEDIATE/COMMIT itself.
    # check_same_thread=False: the object may be created on one thread and used on another (locked).
    # timeout sets SQLite's busy_timeout: how long to wait for another connection's write lock.
    try:
        return sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False, timeout=timeout)
    except sqlite3.Error as exc:
        raise SettingsError(f"cannot open journal {path}: {exc}; check ICSD_STATE_DIR and its permissions") from exc


def _require(cur: sqlite3.Cursor, rel: str, *, select: bool = False) -> None:
    missing = cur.fetchone() is None if select else cur.rowcount == 0
    if missing:
        raise KeyError(f"journal has no entry for {rel!r}")


def _entry(row: tuple[object, ...]) -> Entry:
    rel, size, mtime_ns, digest, state, attempts, output, error, updated = row
    return Entry(
        rel=str(rel),
        size=int(size),  # type: ignore[call-overload]
        mtime_ns=int(mtime_ns),  # type: ignore[call-overload]
        digest=str(digest),
        state=State(state),
        attempts=int(attempts),  # type: ignore[call-overload]
        output=None if output is None else str(output),
        error=None if error is None else str(error),
        updated=float(updated),  # type: ignore[arg-type]
    )


def _claim(
    db: sqlite3.Connection, version: FileVersion, fingerprint: str | None,
    choose: Callable[[OwnerOf, str | None], str] | None = None, known: Known | _Unset | None = UNSET,
) -> bool | str | None:
    """Journal.claim inside an open transaction; with `choose`, Journal.claim_output (the output name or None)."""
    now = time.time()
    if isinstance(known, _Unset):
        row = db.execute(f"SELECT {_KNOWN} FROM files WHERE rel = ?", (version.rel,)).fetchone()
    else:
        row = known
    if row is None:  # a new file (the common case): its output chosen first, then one INSERT
        output = None if choose is None else choose(lambda name: _owner(db, name), None)
        db.execute(
            f"INSERT INTO files ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, 1, ?, NULL, ?)",
            (version.rel, version.size, version.mtime_ns, version.digest or UNREAD, State.IN_PROGRESS.value, output,
             now),
        )
        return True if choose is None else output
    if version.digest is None:
        raise ValueError(f"claim needs the digest of {version.rel!r}: the journal knows it, so read the file first")
    claimed = _claim_known(db, version, fingerprint, row, now)
    if choose is None:
        return claimed
    if not claimed:
        return None
    previous = row[5] if _same_content(row, version) else None  # a replaced file's is reset
    output = choose(lambda name: _owner(db, name), previous)
    db.execute("UPDATE files SET output = ? WHERE rel = ?", (output, version.rel))
    return output


def _claim_known(
    db: sqlite3.Connection, version: FileVersion, fingerprint: str | None, row: tuple[Any, ...], now: float
) -> bool:
    """_claim for a path the journal knows."""
    _size, _mtime_ns, _digest, state, made_with, _output = row
    if not _same_content(row, version):
        db.execute(
            "UPDATE files SET size = ?, mtime_ns = ?, digest = ?, state = ?, attempts = 1,"
            " output = NULL, error = NULL, stats = NULL, fingerprint = NULL, updated = ? WHERE rel = ?",
            (version.size, version.mtime_ns, version.digest, State.IN_PROGRESS.value, now, version.rel),
        )
        return True
    if state in _SETTLED and None not in (fingerprint, made_with) and made_with != fingerprint:  # other settings
        db.execute(
            "UPDATE files SET mtime_ns = ?, state = ?, attempts = 1, error = NULL, updated = ? WHERE rel = ?",
            (version.mtime_ns, State.IN_PROGRESS.value, now, version.rel),
        )
        return True
    if state in _SETTLED:
        db.execute(
            "UPDATE files SET mtime_ns = ? WHERE rel = ? AND mtime_ns != ?",
            (version.mtime_ns, version.rel, version.mtime_ns),
        )
        return False
    db.execute(
        "UPDATE files SET mtime_ns = ?, state = ?, attempts = attempts + 1, updated = ? WHERE rel = ?",
        (version.mtime_ns, State.IN_PROGRESS.value, now, version.rel),
    )
    return True


def _same_content(row: tuple[Any, ...], version: FileVersion) -> bool:
    """Does a row (a Known) hold `version`'s content? One claimed unread and not finished (a crash or a retry):
    the same size counts as the same content, so its attempts go on counting; one finished without a digest
    (a worker died with it) never does, so a changed file gets another try."""
    size, _mtime_ns, digest, state = row[:4]
    if digest == UNREAD:
        return size == version.size and state not in _SETTLED
    return size == version.size and digest == version.digest


def _owner(db: sqlite3.Connection, output: str) -> str | None:
    """Journal.output_owner on `db`."""
    row = db.execute(
        "SELECT rel FROM files WHERE output = ? AND state IN (?, ?, ?) ORDER BY rel LIMIT 1", (output, *_OWNING)
    ).fetchone()
    return None if row is None else str(row[0])


def _finish_row(
    db: sqlite3.Connection, rel: str, state: State, *, output: str | None, error: str | None, digest: str | None,
    stats: dict[str, Any] | None, fingerprint: str | None = None,
) -> bool:
    """Set a row DONE or FAILED inside an open transaction; with `digest`, only if the row still holds it (or was
    claimed unread: see _FINISH_READ)."""
    values = _finish_values(state, output, error, time.time(), stats, fingerprint)
    if digest is None:
        _require(db.execute(_FINISH, (*values, rel)), rel)
        return True
    cur = db.execute(_FINISH_READ, (*values, *_read_as(rel, digest)))
    if cur.rowcount == 0:
        _require(db.execute("SELECT 1 FROM files WHERE rel = ?", (rel,)), rel, select=True)
        return False
    return True


_FINISH = ("UPDATE files SET state = ?, output = COALESCE(?, output), error = ?, updated = ?, stats = ?,"
           " fingerprint = ? WHERE rel = ?")
# _FINISH for the content read (digest known): only if the row still holds it, or was claimed unread (then the
# worker read the version claimed, and the row records its digest now).
_FINISH_READ = ("UPDATE files SET state = ?, output = COALESCE(?, output), error = ?, updated = ?, stats = ?,"
                " fingerprint = ?, digest = ? WHERE rel = ? AND digest IN (?, ?)")


def _read_as(rel: str, digest: str) -> tuple[str, str, str, str]:
    """_FINISH_READ's last values."""
    return digest, rel, digest, UNREAD


def _finish_values(
    state: State, output: str | None, error: str | None, now: float, stats: dict[str, Any] | None,
    fingerprint: str | None = None,
) -> tuple[object, ...]:
    """_FINISH's values but the row's key: the stats as compact JSON, their fingerprint (or, without stats, the
    settings' `fingerprint`: a failure's) in its own column."""
    recorded = None if stats is None else json.dumps(stats, separators=(",", ":"), sort_keys=True)
    if stats is not None:
        fingerprint = stats.get("fingerprint")
    return state.value, output, error, now, recorded, fingerprint
