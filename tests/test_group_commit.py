"""The commit path for many small images: workers write outputs to a spool, the daemon renames them into place
and commits a group of done rows in one durable transaction (docs/scale.md).

Real process pools, real SQLite, real `icsd batch` processes on temporary folders.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from icsd.core import CompressParams, JobOutcome, compress
from icsd.daemon.executor import BATCH_IMAGES, SMALL_IMAGE_BYTES, ProcessExecutor, batches_to_send
from icsd.daemon.identity import FileVersion, content_digest
from icsd.daemon.inputs import SourceChanged, SourceFile
from icsd.daemon.intake import Admitted, Intake
from icsd.daemon.journal import DoneMark, Journal, State
from icsd.daemon.output import TEMP_PREFIX, output_name
from icsd.daemon.service import Service
from icsd.settings import load_settings
from tests.harness import clean_env, journal_states, sample_image, temp_files, write_image

PARAMS = CompressParams(colors=8)


@pytest.fixture(scope="module")
def pool() -> ProcessExecutor:
    executor = ProcessExecutor(1)
    yield executor
    executor.shutdown(cancel=False)


@pytest.fixture(scope="module")
def photo_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_image(tmp_path_factory.mktemp("photo") / "a.jpg", sample_image("flower.jpg", crop=160))


def run(pool: ProcessExecutor, data: bytes | SourceFile, spool: Path) -> JobOutcome:
    future = pool.submit(data, PARAMS, name="a.jpg", spool=str(spool))
    pool.flush()  # a small image waits for the round's flush
    return future.result(timeout=60)


def test_small_images_go_several_to_a_task_and_each_gets_its_own_outcome(
    pool: ProcessExecutor, photo_bytes: bytes, tmp_path: Path
) -> None:
    inputs = [photo_bytes] * 4 + [b"not an image"] + [photo_bytes] * (BATCH_IMAGES - 3)
    futures = [pool.submit(data, PARAMS, spool=str(tmp_path / f"{TEMP_PREFIX}{i}")) for i, data in enumerate(inputs)]
    assert not any(future.done() for future in futures)  # kept back until the flush
    pool.flush()  # one worker: one full task goes, the 2 left wait for companions or an idle worker
    first = [future.result(timeout=60) for future in futures[:BATCH_IMAGES]]
    assert not any(future.done() for future in futures[BATCH_IMAGES:])
    pool.flush()  # as the daemon does after each round: its worker is idle now, so the rest go
    outcomes = first + [future.result(timeout=60) for future in futures[BATCH_IMAGES:]]
    expected = compress(photo_bytes, PARAMS).data
    for i, outcome in enumerate(outcomes):
        if i == 4:  # the bad one fails alone
            assert outcome.result is None and outcome.permanent
            assert not (tmp_path / f"{TEMP_PREFIX}{i}").exists()
        else:
            assert outcome.result is not None and (tmp_path / f"{TEMP_PREFIX}{i}").read_bytes() == expected
    big = photo_bytes + b"\0" * (SMALL_IMAGE_BYTES - len(photo_bytes))  # JPEG decoders stop at the end marker
    assert pool.submit(big, PARAMS).result(timeout=60).result is not None  # a large one is sent at once


def test_an_image_to_run_alone_is_sent_at_once_without_companions(pool: ProcessExecutor, photo_bytes: bytes) -> None:
    """The daemon runs an image whose worker died alone next: it must not wait for companions (nor take any)."""
    kept = pool.submit(photo_bytes, PARAMS)
    alone = pool.submit(photo_bytes, PARAMS, alone=True)
    assert alone.result(timeout=60).result is not None  # no flush needed
    assert not kept.done()  # still waiting for companions: it did not travel with the lone one
    pool.flush()
    assert kept.result(timeout=60).result is not None


def test_the_batching_rule_sends_full_tasks_and_a_share_per_idle_worker_and_otherwise_waits() -> None:
    full = BATCH_IMAGES
    assert full > 5
    assert batches_to_send(0, idle=2) == []
    assert batches_to_send(2 * full + 2, idle=0) == [full, full]  # full tasks go even when every worker is busy
    assert batches_to_send(5, idle=0) == []  # a partial one waits for companions ...
    assert batches_to_send(5, idle=2) == [3, 2]  # ... unless a worker is idle: a share each
    assert batches_to_send(full + 2, idle=2) == [full, 2]  # the full task takes one idle worker, the rest the other
    assert batches_to_send(full + 2, idle=1) == [full]
    assert batches_to_send(1, idle=2) == [1]  # a lone image leaves at once
    assert batches_to_send(5, idle=0, everything=True) == [5]  # stopping: all of it
    assert batches_to_send(2 * full + 2, idle=3, everything=True) == [full, full, 2]


def test_a_worker_writes_its_output_to_the_spool_durably_and_sends_back_no_bytes(
    pool: ProcessExecutor, photo_bytes: bytes, tmp_path: Path
) -> None:
    spool = tmp_path / f"{TEMP_PREFIX}abc"
    outcome = run(pool, photo_bytes, spool)
    assert outcome.result is not None and outcome.result.data == b""
    expected = compress(photo_bytes, PARAMS).data
    assert spool.read_bytes() == expected and outcome.result.output_bytes == len(expected)
    umask = os.umask(0)
    os.umask(umask)
    assert spool.stat().st_mode & 0o777 == 0o644 & ~umask  # as write_atomic's outputs


def test_a_new_folders_first_output_is_spooled_in_the_folder_the_worker_makes(
    pool: ProcessExecutor, photo_bytes: bytes, tmp_path: Path
) -> None:
    """With one image per folder every output is a folder's first: the worker makes the folder (and its missing
    parents) rather than send the bytes for the daemon to write one after another."""
    spool = tmp_path / "day1" / "cam7" / f"{TEMP_PREFIX}first"
    outcome = run(pool, photo_bytes, spool)
    assert outcome.result is not None and outcome.result.data == b""
    assert spool.read_bytes() == compress(photo_bytes, PARAMS).data


def test_a_worker_that_cannot_write_the_spool_sends_the_bytes_back_and_leaves_nothing(
    pool: ProcessExecutor, photo_bytes: bytes, tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file" / f"{TEMP_PREFIX}abc"  # its folder cannot be made: a file has that name
    blocked.parent.write_bytes(b"not a folder")
    outcome = run(pool, photo_bytes, blocked)
    assert outcome.result is not None and outcome.result.data == compress(photo_bytes, PARAMS).data
    assert blocked.parent.read_bytes() == b"not a folder"
    taken = tmp_path / f"{TEMP_PREFIX}taken"
    taken.write_bytes(b"someone else's")  # never replaced: O_EXCL
    outcome = run(pool, photo_bytes, taken)
    assert outcome.result is not None and outcome.result.data and taken.read_bytes() == b"someone else's"


def test_a_bad_image_with_a_spool_fails_as_before_and_writes_nothing(pool: ProcessExecutor, tmp_path: Path) -> None:
    spool = tmp_path / f"{TEMP_PREFIX}bad"
    outcome = run(pool, b"not an image at all", spool)
    assert outcome.result is None and outcome.permanent and outcome.error
    assert not spool.exists()


def _claimed(journal: Journal, rel: str, digest: str) -> None:
    assert journal.claim_output(FileVersion(rel, 10, 1, 0, digest), None, lambda _owner, _previous: output_name(rel))


def test_mark_done_many_commits_a_group_all_or_nothing(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite3") as journal:
        for i in range(3):
            _claimed(journal, f"{i}.jpg", f"{i:040x}")
        recorded = journal.mark_done_many([DoneMark("0.jpg", "0.png", digest=f"{0:040x}"),
                                           DoneMark("1.jpg", "1.png", digest="another version's digest")])
        assert recorded == [True, False]  # 1.jpg was replaced meanwhile: its row is left for the new version
        with pytest.raises(KeyError):
            journal.mark_done_many([DoneMark("2.jpg", "2.png"), DoneMark("gone.jpg", "gone.png")])
        with pytest.raises(KeyError):  # the same with digests (one statement for the group, then row by row)
            journal.mark_done_many([DoneMark("2.jpg", "2.png", digest=f"{2:040x}"),
                                    DoneMark("gone.jpg", "gone.png", digest=f"{3:040x}")])
        states = {rel: journal.get(rel).state for rel in ("0.jpg", "1.jpg", "2.jpg")}  # type: ignore[union-attr]
    assert states == {"0.jpg": State.DONE, "1.jpg": State.IN_PROGRESS, "2.jpg": State.IN_PROGRESS}


def test_claim_output_chooses_the_name_inside_the_claims_transaction(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite3") as journal:
        _claimed(journal, "a.jpg", "1" * 40)
        seen: list[tuple[str | None, str | None]] = []

        def choose(owner_of, previous: str | None) -> str:
            seen.append((owner_of("a.png"), previous))
            return "a.jpg.png" if owner_of("a.png") else "a.png"

        assert journal.claim_output(FileVersion("a.png", 10, 1, 0, "2" * 40), None, choose) == "a.jpg.png"
        assert seen == [("a.jpg", None)]
        assert journal.output_owner("a.jpg.png") == "a.png"
        # The same content again: not claimed, and the chooser is not asked.
        assert journal.mark_done("a.png", "a.jpg.png")
        assert journal.claim_output(FileVersion("a.png", 10, 1, 0, "2" * 40), None, choose) is None
        assert len(seen) == 1


def _batch(root: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "icsd", "batch", "in", "--output-dir", "out", "--workers", "2", "--colors", "8"],
        cwd=root, env=clean_env(), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_an_output_renamed_before_its_done_row_committed_is_redone_to_identical_bytes_not_a_second_file(
    tmp_path: Path,
) -> None:
    """The state a kill -9 between an output's rename and its group's commit leaves: the output in place, the
    row claimed with the output reserved, not DONE. Made exactly by rewinding committed rows."""
    names = [f"d{i % 3}/img{i}.jpg" for i in range(12)]
    for i, rel in enumerate(names):
        write_image(tmp_path / "in" / rel, sample_image("china.jpg" if i % 2 else "flower.jpg", crop=96 + 8 * i))
    _batch(tmp_path)
    out = tmp_path / "out"
    before = {rel: (out / output_name(rel)).read_bytes() for rel in names}
    rewound = names[1::3]
    journal = tmp_path / "out" / ".icsd" / "journal.sqlite3"
    with sqlite3.connect(journal) as db:
        db.executemany("UPDATE files SET state = 'in_progress', stats = NULL, fingerprint = NULL WHERE rel = ?",
                       [(rel,) for rel in rewound])

    second = _batch(tmp_path)

    redone = sorted(line.split("icsd: ", 1)[1].split(":", 1)[0] for line in second.stderr.splitlines()
                    if " -> " in line and " px" in line)
    assert redone == sorted(rewound)
    outputs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert outputs == sorted(output_name(rel) for rel in names)  # no a.jpg.png beside a.png
    assert {rel: (out / output_name(rel)).read_bytes() for rel in names} == before
    assert journal_states(journal) == dict.fromkeys(names, "done")
    assert temp_files(out) == []


def test_a_worker_reads_a_source_file_itself_and_returns_its_digest(
    pool: ProcessExecutor, photo_bytes: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(photo_bytes)
    st = os.lstat(path)
    source = SourceFile(str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    outcome = run(pool, source, tmp_path / "spool")
    assert outcome.ok and outcome.digest == content_digest(photo_bytes)
    assert (tmp_path / "spool").read_bytes() == compress(photo_bytes, PARAMS).data
    path.write_bytes(photo_bytes + b"more")  # no longer the version the daemon claimed
    future = pool.submit(source, PARAMS, name="a.jpg", spool=str(tmp_path / "spool2"))
    pool.flush()
    with pytest.raises(SourceChanged, match="changed after it was admitted"):
        future.result(timeout=60)
    assert not (tmp_path / "spool2").exists()


def test_an_input_changed_after_its_admission_is_given_back_and_done_as_it_is_now(
    tmp_path: Path, photo_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file changes between the daemon's claim and the worker's read (injected right after the real admit):
    the worker reports SourceChanged, the claim is given back (no attempt counted), and the file is admitted
    again and done with the content it has now."""
    source = tmp_path / "in" / "a.jpg"
    source.parent.mkdir()
    source.write_bytes(photo_bytes)
    now = write_image(tmp_path / "other.jpg", sample_image("china.jpg", crop=96))
    real_admit, changed = Intake.admit, []

    def admit_then_change(self: Intake, rel: str, *, read: bool = True) -> object:
        admission = real_admit(self, rel, read=read)
        if isinstance(admission, Admitted) and isinstance(admission.data, SourceFile) and not changed:
            source.write_bytes(now)
            changed.append(rel)
        return admission

    monkeypatch.setattr(Intake, "admit", admit_then_change)
    settings = load_settings(input_dir=tmp_path / "in", output_dir=tmp_path / "out", workers=1, colors=8)
    outcome = Service(settings, mode="batch").run()
    assert changed == ["a.jpg"]
    assert (outcome.exit_code, outcome.tally.done, outcome.tally.failed) == (0, 1, 0)
    with Journal(tmp_path / "out" / ".icsd" / "journal.sqlite3") as journal:
        entry = journal.get("a.jpg")
    assert entry is not None and entry.state == State.DONE
    assert (entry.digest, entry.attempts) == (content_digest(now), 1)
    assert (entry.size, entry.mtime_ns) == (len(now), source.stat().st_mtime_ns)  # the version done is the new one
    assert (tmp_path / "out" / "a.png").read_bytes() == compress(now, settings.params()).data
