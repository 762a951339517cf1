"""Admitting a file, in-process: real files in tmp_path, a real SQLite journal, no daemon.

What the intake decides (skip, read again later, or work on this version under this output name) used
to be tested only through `icsd batch`; the end-to-end runs stay in test_names.py and test_faults.py.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from icsd.daemon.identity import FileVersion, content_digest
from icsd.daemon.inputs import SourceChanged, SourceFile, read_source
from icsd.daemon.intake import Admitted, Intake, Skipped, Unreadable
from icsd.daemon.journal import UNREAD, Journal, State


@pytest.fixture
def journal(tmp_path: Path):
    with Journal(tmp_path / "state" / "journal.sqlite3") as journal:
        yield journal


@pytest.fixture
def intake(tmp_path: Path, journal: Journal) -> Intake:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return Intake(journal, input_root=tmp_path / "in", output_root=tmp_path / "out")


def put(intake: Intake, rel: str, data: bytes = b"image bytes") -> Path:
    path = intake.input_root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def admitted(intake: Intake, rel: str) -> Admitted:
    admission = intake.admit(rel)
    assert isinstance(admission, Admitted), admission
    return admission


def test_a_new_file_is_claimed_with_its_version_and_output_name(intake: Intake, journal: Journal) -> None:
    path = put(intake, "sub/a.jpg", b"abc")
    admission = admitted(intake, "sub/a.jpg")
    st = os.lstat(path)
    assert admission.data == b"abc"
    assert admission.task.version == FileVersion("sub/a.jpg", 3, st.st_mtime_ns, st.st_ino, content_digest(b"abc"))
    assert (admission.task.path, admission.task.output) == (str(path), "sub/a.png")
    entry = journal.get("sub/a.jpg")
    assert entry is not None and (entry.state, entry.attempts, entry.output) == (State.IN_PROGRESS, 1, "sub/a.png")


def test_a_finished_file_is_skipped_by_its_metadata_without_being_read(intake: Intake, journal: Journal) -> None:
    path = put(intake, "a.jpg")
    task = admitted(intake, "a.jpg").task
    journal.mark_done("a.jpg", task.output, digest=task.version.digest)
    path.chmod(0)  # (root reads it anyway; what matters is the reason: decided before reading)
    assert intake.admit("a.jpg") == Skipped("finished already (same size and mtime)")


def test_a_touched_file_with_the_same_content_is_not_work_again(intake: Intake, journal: Journal) -> None:
    path = put(intake, "a.jpg")
    task = admitted(intake, "a.jpg").task
    journal.mark_done("a.jpg", task.output, digest=task.version.digest)
    os.utime(path, ns=(1, 1))
    assert intake.admit("a.jpg") == Skipped("same content as a version already done or failed")
    assert intake.admit("a.jpg") == Skipped("finished already (same size and mtime)")  # the new mtime is recorded


def test_a_replaced_file_is_work_again_from_its_first_attempt(intake: Intake, journal: Journal) -> None:
    put(intake, "a.jpg", b"one")
    task = admitted(intake, "a.jpg").task
    journal.mark_done("a.jpg", task.output, digest=task.version.digest)
    put(intake, "a.jpg", b"other content")
    again = admitted(intake, "a.jpg")
    assert again.task.version.digest == content_digest(b"other content") and again.task.output == "a.png"
    assert journal.get("a.jpg").attempts == 1  # type: ignore[union-attr]


def test_vanished_links_and_special_files_are_skipped(intake: Intake, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    assert intake.admit("gone.jpg") == Skipped("vanished before it was read")
    (tmp_path / "target.jpg").write_bytes(b"x")
    (intake.input_root / "link.jpg").symlink_to(tmp_path / "target.jpg")
    os.mkfifo(intake.input_root / "pipe.jpg")
    with caplog.at_level(logging.WARNING, logger="icsd"):
        link, pipe = intake.admit("link.jpg"), intake.admit("pipe.jpg")
    assert isinstance(link, Skipped) and "is a symlink; icsd never follows links" in link.reason
    assert isinstance(pipe, Skipped) and "is not a regular file" in pipe.reason
    assert [r.getMessage().split(": ", 1)[0] for r in caplog.records] == ["link.jpg", "pipe.jpg"]


def test_a_file_that_cannot_be_read_now_is_worth_another_attempt(intake: Intake) -> None:
    """(Tests run as root, which reads a chmod 000 file; test_faults.py drops that privilege in a real daemon.
    A name too long to open fails for anyone.)"""
    assert intake.admit("x" * 300 + ".jpg") == Unreadable("cannot read: File name too long")


# -- output names ----------------------------------------------------------------------------------


def test_chained_names_each_get_their_own_output(intake: Intake, caplog: pytest.LogCaptureFixture) -> None:
    """a.bmp takes a.png, so a.png falls back to a.png.png, which is input a.png.png's own output: a.png
    goes on to a third name instead of overwriting it."""
    for rel in ("a.bmp", "a.png.png", "a.png"):
        put(intake, rel, rel.encode())
    with caplog.at_level(logging.WARNING, logger="icsd"):
        outputs = [admitted(intake, rel).task.output for rel in ("a.bmp", "a.png.png", "a.png")]
    assert outputs == ["a.png", "a.png.png", "a.png.2.png"]
    assert [r.getMessage() for r in caplog.records] == ["a.png: a.png already belongs to a.bmp; writing a.png.2.png"]


def test_an_output_name_taken_by_a_folder_in_the_output_moves_aside(intake: Intake,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    (intake.output_root / "x.png").mkdir()  # mirrors an input folder x.png/
    put(intake, "x.jpg")
    with caplog.at_level(logging.WARNING, logger="icsd"):
        assert admitted(intake, "x.jpg").task.output == "x.jpg.png"
    assert [r.getMessage() for r in caplog.records] == ["x.jpg: x.png already belongs to a folder; writing x.jpg.png"]


def test_an_output_name_that_an_input_folder_needs_moves_aside(intake: Intake) -> None:
    """x.jpg, admitted before the input folder x.png/'s images, may not take the file name out/x.png: the folder
    could then not be mirrored and its images would fail."""
    put(intake, "x.png/inner.jpg")
    put(intake, "x.jpg")
    assert admitted(intake, "x.jpg").task.output == "x.jpg.png"
    assert admitted(intake, "x.png/inner.jpg").task.output == "x.png/inner.png"


def test_a_fallback_name_is_announced_once_not_on_every_retry(intake: Intake, journal: Journal,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    put(intake, "a.bmp", b"one")
    put(intake, "a.png", b"two")
    admitted(intake, "a.bmp")
    with caplog.at_level(logging.WARNING, logger="icsd"):
        for _attempt in range(3):
            assert admitted(intake, "a.png").task.output == "a.png.png"
            journal.mark_pending("a.png", "truncated")  # a retry claims it again
    assert [r.getMessage() for r in caplog.records] == ["a.png: a.png already belongs to a.bmp; writing a.png.png"]


def test_an_output_reserved_by_an_earlier_crash_keeps_its_owner(tmp_path: Path, intake: Intake) -> None:
    """The output name is reserved in the journal before the job runs, so a restart after a crash still sees it."""
    put(intake, "a.bmp", b"one")
    admitted(intake, "a.bmp")  # in progress when the daemon died
    with Journal(intake.journal.path) as reopened:
        fresh = Intake(reopened, input_root=intake.input_root, output_root=intake.output_root)
        put(fresh, "a.png", b"two")
        assert admitted(fresh, "a.png").task.output == "a.png.png"


# -- claimed unread, for a worker that reads the file itself (the process pool) -----------------------


def test_a_new_file_is_claimed_unread_and_its_digest_recorded_when_done(intake: Intake, journal: Journal) -> None:
    path = put(intake, "a.jpg", b"abc")
    admission = intake.admit("a.jpg", read=False)
    assert isinstance(admission, Admitted)
    st = os.lstat(path)
    assert admission.data == SourceFile(str(path), 3, st.st_mtime_ns, st.st_ino)
    assert admission.task.version == FileVersion("a.jpg", 3, st.st_mtime_ns, st.st_ino, None)
    assert journal.get("a.jpg").digest == UNREAD  # type: ignore[union-attr]
    data = read_source(admission.data)
    assert data == b"abc"
    assert journal.mark_done("a.jpg", admission.task.output, digest=content_digest(data))
    assert journal.get("a.jpg").digest == content_digest(b"abc")  # type: ignore[union-attr]
    os.utime(path, ns=(1, 1))  # touched only: the recorded digest says it is the same content
    assert intake.admit("a.jpg", read=False) == Skipped("same content as a version already done or failed")


def test_a_file_the_journal_knows_is_read_by_the_daemon(intake: Intake, journal: Journal) -> None:
    """An unread claim left by a crash: the daemon reads it now, and its attempts go on counting."""
    put(intake, "a.jpg", b"abc")
    first = intake.admit("a.jpg", read=False)
    assert isinstance(first, Admitted) and isinstance(first.data, SourceFile)
    again = intake.admit("a.jpg", read=False)
    assert isinstance(again, Admitted) and again.data == b"abc"
    assert again.task.version.digest == content_digest(b"abc") and again.task.output == first.task.output
    assert journal.get("a.jpg").attempts == 2  # type: ignore[union-attr]


def test_links_and_special_files_are_skipped_unread_too(intake: Intake, tmp_path: Path) -> None:
    (tmp_path / "target.jpg").write_bytes(b"x")
    (intake.input_root / "link.jpg").symlink_to(tmp_path / "target.jpg")
    os.mkfifo(intake.input_root / "pipe.jpg")
    link, pipe = intake.admit("link.jpg", read=False), intake.admit("pipe.jpg", read=False)
    assert isinstance(link, Skipped) and "is a symlink" in link.reason
    assert isinstance(pipe, Skipped) and "is not a regular file" in pipe.reason
    assert intake.admit("gone.jpg", read=False) == Skipped("vanished before it was read")


def test_a_source_that_changed_vanished_or_became_a_link_is_not_read(intake: Intake, tmp_path: Path) -> None:
    path = put(intake, "a.jpg", b"abc")
    admission = intake.admit("a.jpg", read=False)
    assert isinstance(admission, Admitted) and isinstance(admission.data, SourceFile)
    path.write_bytes(b"abcd")
    with pytest.raises(SourceChanged, match="changed after it was admitted"):
        read_source(admission.data)
    path.unlink()
    with pytest.raises(SourceChanged, match="No such file"):
        read_source(admission.data)
    path.symlink_to(tmp_path / "elsewhere.jpg")
    with pytest.raises(SourceChanged, match="is a symlink"):
        read_source(admission.data)


def test_a_failure_without_a_digest_does_not_hide_a_changed_file(intake: Intake, journal: Journal) -> None:
    """A worker that died with an unread image recorded no digest: a same-size replacement is work again."""
    path = put(intake, "a.jpg", b"abc")
    admission = intake.admit("a.jpg", read=False)
    assert isinstance(admission, Admitted)
    journal.mark_failed("a.jpg", "worker process died")
    path.write_bytes(b"xyz")
    again = intake.admit("a.jpg", read=False)
    assert isinstance(again, Admitted) and again.data == b"xyz"
    assert journal.get("a.jpg").attempts == 1  # type: ignore[union-attr]
