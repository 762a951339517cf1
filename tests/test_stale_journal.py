"""Settings fingerprints in the journal (schema 3): the migration, the stale query, claims that remake."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from icsd.core import CompressParams
from icsd.daemon.identity import FileVersion
from icsd.daemon.journal import SCHEMA_VERSION, Journal, State
from icsd.daemon.stale import stale_outputs

OLD, NEW = "sha1:old", "sha1:new"

# Schema 2 as icsd wrote it: fingerprints only inside the stats JSON.
_SCHEMA_2 = """
CREATE TABLE files (rel TEXT PRIMARY KEY NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, output TEXT, error TEXT,
    updated REAL NOT NULL, stats TEXT) WITHOUT ROWID;
CREATE INDEX files_by_state ON files (state, updated);
INSERT INTO files VALUES ('a.jpg', 10, 1, 'da', 'done', 1, 'a.png', NULL, 1.0, '{"colors":4,"fingerprint":"sha1:old"}');
INSERT INTO files VALUES ('b.jpg', 10, 1, 'db', 'done', 1, 'b.png', NULL, 1.0, '{"colors":4,"fingerprint":"sha1:new"}');
INSERT INTO files VALUES ('c.jpg', 10, 1, 'dc', 'done', 1, 'c.png', NULL, 1.0, NULL);
INSERT INTO files VALUES ('d.jpg', 10, 1, 'dd', 'failed', 1, NULL, 'bad', 1.0, NULL);
INSERT INTO files VALUES ('e.jpg', 10, 1, 'de', 'done', 1, 'e.png', NULL, 1.0, 'not json');
PRAGMA user_version = 2;
"""


def _schema_2(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_2)
    return path


def _version(rel: str, digest: str) -> FileVersion:
    return FileVersion(rel=rel, size=10, mtime_ns=1, digest=digest)


def test_schema_2_reads_as_it_is_and_upgrades_with_fingerprints_from_stats(tmp_path: Path) -> None:
    path = _schema_2(tmp_path / "journal.sqlite3")
    with Journal.open_readonly(path) as journal:  # `icsd status` on a journal the daemon has not upgraded yet
        assert [entry.rel for entry in journal.stale(NEW)] == ["a.jpg"]
    with Journal(path) as journal:
        assert [entry.rel for entry in journal.stale(NEW)] == ["a.jpg"]
        assert [entry.rel for entry in journal.stale(OLD)] == ["b.jpg"]  # unknown (c, e) and failed (d): not stale
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert dict(db.execute("SELECT rel, fingerprint FROM files")) == {
            "a.jpg": OLD, "b.jpg": NEW, "c.jpg": None, "d.jpg": None, "e.jpg": None}
        plan = " ".join(row[-1] for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT rel FROM files WHERE state = 'done' AND fingerprint != 'x'"))
        assert "files_by_fingerprint" in plan


def test_settled_only_with_the_same_settings_and_a_remake_keeps_the_output_name(tmp_path: Path) -> None:
    with Journal(_schema_2(tmp_path / "journal.sqlite3")) as journal:
        assert journal.is_settled("a.jpg", 10, 1, OLD) and not journal.is_settled("a.jpg", 10, 1, NEW)
        assert journal.is_settled("a.jpg", 10, 1)  # no fingerprint given: as before
        assert journal.is_settled("c.jpg", 10, 1, NEW)  # made before fingerprints: trusted, not remade
        assert journal.is_settled("d.jpg", 10, 1, NEW)  # failed stays failed
        assert not journal.claim(_version("b.jpg", "db"), NEW)
        assert journal.claim(_version("a.jpg", "da"), NEW)  # the remake
        entry = journal.get("a.jpg")
        assert (entry.state, entry.attempts, entry.output) == (State.IN_PROGRESS, 1, "a.png")
        assert journal.output_owner("a.png") == "a.jpg"  # so the intake picks the same name again
        assert journal.stale(NEW) == []  # being remade: not counted as stale
        assert journal.mark_done("a.jpg", "a.png", digest="da", stats={"fingerprint": NEW})
        assert journal.is_settled("a.jpg", 10, 1, NEW) and not journal.claim(_version("a.jpg", "da"), NEW)


def test_a_replaced_file_loses_its_fingerprint_and_a_failure_has_none(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite3") as journal:
        assert journal.claim(_version("a.jpg", "d1"), OLD)
        journal.mark_done("a.jpg", "a.png", stats={"fingerprint": OLD})
        assert [entry.rel for entry in journal.stale(NEW)] == ["a.jpg"]
        assert journal.claim(_version("a.jpg", "d2"), NEW)  # new content: processed anyway
        journal.mark_failed("a.jpg", "broken")
        assert journal.stale(NEW) == [] and journal.stale(OLD) == []


def test_stale_outputs_counts_those_without_an_original(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "kept.jpg").write_bytes(b"x")
    with Journal(tmp_path / "journal.sqlite3") as journal:
        for rel in ("kept.jpg", "deleted.jpg", "current.jpg"):
            journal.claim(_version(rel, rel))
            journal.mark_done(rel, rel + ".png", stats={"fingerprint": NEW if rel == "current.jpg" else OLD})
        stale = stale_outputs(journal, NEW, tmp_path / "in")
    assert (stale.total, stale.orphaned) == (2, 1)
    assert stale.status_line() == "stale: 2 made with other settings; 1 cannot be remade (original deleted or archived)"
    assert stale.warning() is not None and stale.warning().startswith("1 output made with other settings cannot")


def test_fingerprint_leaves_defaults_out_so_a_new_setting_keeps_old_fingerprints() -> None:
    default = CompressParams().fingerprint()
    empty = "sha1:" + hashlib.sha1(b"{}").hexdigest()[:16]
    assert default == empty  # the digest of no field: what a field added later at its default leaves unchanged
    assert CompressParams(colors=8).fingerprint() != default
    assert CompressParams(colors=8).fingerprint() == CompressParams(colors=8, seed=0).fingerprint()


def test_a_failure_is_tried_again_with_other_settings_only(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite3") as journal:
        assert journal.claim(_version("a.jpg", "d1"), OLD)
        assert journal.mark_failed("a.jpg", "too many pixels", digest="d1", fingerprint=OLD)
        assert journal.is_settled("a.jpg", 10, 1, OLD) and not journal.claim(_version("a.jpg", "d1"), OLD)
        assert not journal.is_settled("a.jpg", 10, 1, NEW)
        assert journal.claim(_version("a.jpg", "d1"), NEW)  # the failure may have been the settings'
        entry = journal.get("a.jpg")
        assert entry is not None and (entry.state, entry.attempts, entry.error) == (State.IN_PROGRESS, 1, None)
        assert journal.stale(NEW) == []
