"""Fault injection on the real daemon: crashes, signals, a full disk, killed workers, mutated files.

Every test runs `icsd run` as a subprocess on temporary folders and synchronizes by polling with a
deadline, never by sleeping. The figures quoted in the README's "Reliability" section come from here.

"Lost" means an input that, after the faults and a restart, has no output and is not in the failed
folder. "Processed twice" means an image whose journal row was already committed DONE being
compressed again (a second progress line for it, in the same run or a later one). A redo is allowed
only for an image whose output was renamed into place but whose row was not yet DONE when the daemon
was `kill -9`ed; the test checks such a redo rewrites byte-identical output.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icsd.daemon.identity import FileVersion, content_digest
from icsd.daemon.journal import Journal
from icsd.daemon.output import output_name
from icsd.errors import EX_SOFTWARE
from tests.harness import (
    Daemon,
    alive,
    busy_worker,
    clean_env,
    descendants,
    journal_states,
    sample_image,
    temp_files,
    vm_hwm_kib,
    wait_until,
    write_image,
)
from tests.images import encode, sample_array, write

BURST = 200
# The burst's images take ~10 ms each at full size (~1 s for the burst on 2 workers): a kill or SIGTERM sent
# once a quarter is done lands mid-burst. At the default scale they took 0.7 ms, and with 24 to a task the
# rest of the burst could finish before the signal landed.
BURST_SIZE = 256
BURST_ARGS = ("--stable-seconds", "0.2", "--scale", "1")


def burst_images(count: int, size: int = 64) -> dict[str, bytes]:
    """`count` small, distinct JPEGs (different crops of one photo), spread over a few folders."""
    photo = sample_array("china.jpg")
    images = {}
    for i in range(count):
        y, x = (i * 7) % (photo.shape[0] - size), (i * 13) % (photo.shape[1] - size)
        images[f"d{i % 4}/img{i:03d}.jpg"] = encode(photo[y : y + size, x : x + size], "JPEG", quality=90)
    return images


def start_burst(start_daemon) -> tuple[dict[str, bytes], Daemon]:
    """A daemon that has got through a quarter of a fresh burst of BURST images."""
    images = burst_images(BURST, BURST_SIZE)
    daemon = start_daemon(*BURST_ARGS)
    daemon.wait_ready()
    drop(daemon.input, images)
    wait_until(lambda: len(daemon.progress_names()) >= BURST // 4, timeout=60, what="a quarter of the burst")
    return images, daemon


def drop(folder: Path, images: dict[str, bytes]) -> None:
    for rel, data in images.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def expected_outputs(images: dict[str, bytes]) -> list[str]:
    return sorted(output_name(rel) for rel in images)


def assert_nothing_lost_or_doubled(daemon: Daemon, images: dict[str, bytes], runs: list[Daemon]) -> None:
    """Exactly one output per input, no temp files, every row DONE, originals unchanged, no double work."""
    assert daemon.outputs() == expected_outputs(images)
    assert temp_files(daemon.output) == []
    assert journal_states(daemon.journal_path) == dict.fromkeys(images, "done")
    for rel, data in images.items():
        assert (daemon.input / rel).read_bytes() == data, f"original {rel} changed"
    for run in runs:
        doubled = [n for n, c in collections.Counter(run.progress_names()).items() if c > 1]
        assert doubled == [], f"processed twice in one run: {doubled}"
    first, *later = (set(run.progress_names()) for run in runs)
    for names in later:
        assert first.isdisjoint(names), f"processed again after restart: {sorted(first & names)}"
        first |= names


# -- crash and shutdown in the middle of a burst ------------------------------------------------


@pytest.mark.timeout(90)
def test_kill_9_mid_burst_then_restart_loses_nothing_and_redoes_only_unfinished(start_daemon) -> None:
    images, first = start_burst(start_daemon)
    first.kill()  # SIGKILL: no drain, no journal close, temp files and in-progress rows left behind
    done_before = set(first.progress_names())
    assert 0 < len(done_before) < BURST, "the kill must land mid-burst"
    written = {rel: (first.output / output_name(rel)).read_bytes()
               for rel in images if (first.output / output_name(rel)).exists()}

    second = start_daemon(*BURST_ARGS)
    second.wait_for_outputs(expected_outputs(images), timeout=60)
    # The journal, not the log, says what is done: a kill between a group's commit and its progress lines
    # leaves done images without a line (up to one group), and they are rightly not redone.
    wait_until(lambda: journal_states(second.journal_path) == dict.fromkeys(images, "done"), timeout=30,
               what="every image of the burst done in the journal")
    assert second.stop() == 0
    assert_nothing_lost_or_doubled(second, images, [first, second])
    redone = set(second.progress_names()) & written.keys()
    print(f"FIGURES kill-9: burst {BURST}, done before kill {len(done_before)}, outputs at kill {len(written)}, "
          f"redone {len(redone)}, lost 0, processed twice 0")
    for rel in redone:  # output renamed into place, row not yet DONE at the kill: redone, same bytes
        assert (second.output / output_name(rel)).read_bytes() == written[rel]


@pytest.mark.timeout(90)
def test_sigterm_mid_burst_drains_exits_zero_and_restart_finishes_the_rest(start_daemon) -> None:
    images, first = start_burst(start_daemon)
    assert first.stop(signal.SIGTERM) == 0
    done_before = first.progress_names()
    assert 0 < len(done_before) < BURST, "SIGTERM must land mid-burst"
    assert f"icsd stopped: {len(done_before)} images done, 0 failed" in first.log()

    second = start_daemon(*BURST_ARGS)
    second.wait_for_outputs(expected_outputs(images), timeout=60)
    wait_until(lambda: len(done_before) + len(second.progress_names()) >= BURST, timeout=30,
               what="progress lines for the rest of the burst")
    assert second.stop() == 0
    assert_nothing_lost_or_doubled(second, images, [first, second])
    assert sorted(done_before + second.progress_names()) == sorted(images)
    print(f"FIGURES sigterm: burst {BURST}, done before stop {len(done_before)}, lost 0, processed twice 0")


# -- output disk full -----------------------------------------------------------------------------


@pytest.fixture
def small_output_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted on the daemon's output folder (skips where mounting is not allowed)."""
    mount_point = tmp_path / "out"
    mount_point.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "icsd-test", str(mount_point)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_disk(path: Path) -> None:
    """Write zeros to `path` until the file system reports ENOSPC."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    for size in (4096, 512, 1):  # the last partial blocks, so even the journal's WAL cannot grow
        with contextlib.suppress(OSError), open(path, "ab", buffering=0) as handle:
            while True:
                handle.write(b"\0" * size)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("journal_on", ["full-disk", "other-disk"])
def test_full_output_disk_keeps_originals_logs_once_and_resumes_when_space_returns(
    start_daemon, small_output_disk: Path, tmp_path: Path, journal_on: str
) -> None:
    """full-disk: the journal (default state folder) cannot commit a claim, so no job starts.
    other-disk: claims commit but output writes fail, so finished results are held in memory."""
    images = burst_images(6)
    early, late = dict(list(images.items())[:2]), dict(list(images.items())[2:])
    state = ["--state-dir", str(tmp_path / "state")] if journal_on == "other-disk" else []
    daemon = start_daemon("--stable-seconds", "0.2", "--log-level", "DEBUG", *state)
    journal = tmp_path / "state" / "journal.sqlite3" if state else daemon.journal_path
    daemon.wait_ready()
    drop(daemon.input, early)
    daemon.wait_for_outputs(expected_outputs(early))
    filler = small_output_disk / ".icsd" / "filler"  # .icsd/ is not an output, whatever ICSD_STATE_DIR says
    filler.parent.mkdir(exist_ok=True)
    fill_disk(filler)

    drop(daemon.input, late)
    daemon.wait_for_log("cannot save results now")
    if journal_on == "full-disk":  # let one probe fail too: still a single ERROR line (5 s, so only once)
        daemon.wait_for_log("still cannot save results", timeout=30)
    assert daemon.process.poll() is None, daemon.log()
    assert daemon.outputs() == expected_outputs(early)
    for rel, data in images.items():
        assert (daemon.input / rel).read_bytes() == data

    filler.unlink()
    daemon.wait_for_outputs(expected_outputs(images), timeout=30)
    daemon.wait_for_log("results can be saved again; resuming")
    assert daemon.stop() == 0
    log = daemon.log()
    assert log.count("ERROR") == 1 and "ERROR icsd: cannot save results now:" in log, log
    assert "FAILED" not in log and "Traceback" not in log
    assert journal_states(journal) == dict.fromkeys(images, "done")
    assert temp_files(daemon.output) == []


# -- a worker process killed mid-image ----------------------------------------------------------


def kill_worker_once_busy(daemon: Daemon) -> None:
    os.kill(busy_worker(daemon.pid), signal.SIGKILL)


# Slow by construction (~1.6 s single-threaded for big_noisy_jpeg), so a test can catch the job running
# and kill its worker, however fast the default quantizer gets.
SLOW_JOB = ("--strategy", "sklearn-kmeans", "--colors", "256")


def big_noisy_jpeg(seed: int) -> bytes:
    """1920x1281 with noise: ~1.6 s for SLOW_JOB at scale 1, long enough to find and kill its worker."""
    rng = np.random.default_rng(seed)
    photo = np.tile(sample_array("china.jpg"), (3, 3, 1)).astype(np.int16)
    return encode((photo + rng.integers(-20, 20, photo.shape)).clip(0, 255).astype(np.uint8), "JPEG", quality=90)


@pytest.mark.timeout(90)
def test_killed_worker_image_is_retried_pool_recovers_and_a_poison_image_fails_after_max_attempts(
    start_daemon,
) -> None:
    daemon = start_daemon("--stable-seconds", "0.2", *SLOW_JOB,
                          "--scale", "1", "--max-attempts", "3", workers=1)
    daemon.wait_ready()
    small = burst_images(2)

    (daemon.input / "slow.jpg").write_bytes(big_noisy_jpeg(1))
    kill_worker_once_busy(daemon)
    daemon.wait_for_log("slow.jpg: worker process died")
    daemon.wait_for_outputs(["slow.png"], timeout=60)
    drop(daemon.input, dict(list(small.items())[:1]))
    daemon.wait_for_outputs(["slow.png", *expected_outputs(dict(list(small.items())[:1]))])

    (daemon.input / "poison.jpg").write_bytes(big_noisy_jpeg(2))
    for _attempt in range(4):  # the OOM killer strikes every time this image is tried: once in the shared pool
        kill_worker_once_busy(daemon)  # (not counted, it may not be its doing), then 3 times alone (counted)
    daemon.wait_for_log("FAILED poison.jpg")
    drop(daemon.input, small)
    daemon.wait_for_outputs(["slow.png", *expected_outputs(small)])

    assert daemon.stop() == 0
    log = daemon.log()
    assert "FAILED poison.jpg: worker process died (killed by a signal or out of memory) (gave up after 3 attempts)" \
        in log, log
    sidecar = json.loads((daemon.output / ".failed" / "poison.jpg.error.json").read_text())
    assert sidecar["attempts"] == 3 and "worker process died" in sidecar["error"]
    assert (daemon.output / ".failed" / "poison.jpg").exists() and not (daemon.input / "poison.jpg").exists()
    assert log.count("starting a new pool") == 5  # one replacement per kill
    assert log.count("while it shared the pool; it runs alone next") == 2  # slow.jpg's death, poison.jpg's first
    assert temp_files(daemon.output) == []  # no spool file of a killed worker's job is left
    assert sorted(daemon.progress_names()) == sorted(["slow.jpg", *small])  # the rewritten img000 is not redone
    assert "Traceback" not in log


@pytest.mark.timeout(120)
def test_images_that_shared_the_pool_with_a_dying_worker_are_not_charged_for_it(tmp_path: Path) -> None:
    """A worker's death breaks every job in the shared pool. Those images count no attempt: each runs alone
    next, where a death is its own. With --max-attempts 2, two deaths (one in the shared pool, one alone) would
    have failed every image that was in flight both times; here all are done and one attempt is counted."""
    rng = np.random.default_rng(7)
    photo = sample_array("flower.jpg").astype(np.int16)
    images = {f"s{i}.jpg": encode((photo + rng.integers(-20, 20, photo.shape)).clip(0, 255).astype(np.uint8),
                                  "JPEG", quality=90) for i in range(6)}  # ~0.8 s each for SLOW_JOB, ~110 KB
    drop(tmp_path / "in", images)
    log_path = tmp_path / "batch.log"
    with log_path.open("wb") as log_file:
        batch = subprocess.Popen(
            [sys.executable, "-m", "icsd", "batch", "in", "--output-dir", "out", "--workers", "2", *SLOW_JOB,
             "--scale", "1", "--max-attempts", "2"],
            cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            os.kill(busy_worker(batch.pid), signal.SIGKILL)  # the 6 small images share the pool: all break
            wait_until(lambda: log_path.read_text().count("it runs alone next") == 6, timeout=60,
                       what="the 6 images given back to run alone")
            os.kill(busy_worker(batch.pid), signal.SIGKILL)  # the one image running alone now
            assert batch.wait(timeout=90) == 0, log_path.read_text()
        finally:
            batch.kill()
    log = log_path.read_text()
    assert "FAILED" not in log and "Traceback" not in log, log
    assert log.count("; retrying in") == 1 and "(attempt 2 of 2)" in log, log  # only the death alone counted
    assert sorted(path.name for path in (tmp_path / "out").glob("*.png")) == sorted(map(output_name, images))
    assert journal_states(tmp_path / "out" / ".icsd" / "journal.sqlite3") == dict.fromkeys(images, "done")
    assert temp_files(tmp_path / "out") == []


@pytest.mark.timeout(60)
def test_a_file_replaced_while_its_old_version_is_in_flight_is_neither_deleted_nor_skipped(start_daemon) -> None:
    """ON_SUCCESS=delete must delete the version that was compressed, never a newer one that replaced it."""
    daemon = start_daemon("--stable-seconds", "0.2", *SLOW_JOB,
                          "--scale", "1", "--on-success", "delete", workers=1)
    daemon.wait_ready()
    (daemon.input / "photo.jpg").write_bytes(big_noisy_jpeg(3))
    busy_worker(daemon.pid)  # version 1 is being compressed
    new_version = burst_images(1)["d0/img000.jpg"]
    write_atomically(daemon.input / "photo.jpg", new_version)
    daemon.wait_for_log("photo.jpg: 1920x1281 -> 1920x1281 px")
    daemon.wait_for_log("photo.jpg: 64x64 -> 64x64 px", timeout=30)  # version 2 compressed too
    wait_until(lambda: not (daemon.input / "photo.jpg").exists(), what="version 2 deleted after its output")
    assert daemon.stop() == 0
    with Image.open(daemon.output / "photo.png") as output:
        assert output.size == (64, 64)
    assert journal_states(daemon.journal_path) == {"photo.jpg": "done"}


# -- 500 mutated files -------------------------------------------------------------------------

MUTANTS = 500
MEMORY_BOUND_KIB = 1 << 20  # 1 GiB per process, daemon and each worker


def mutants(count: int, seed: int = 1234) -> dict[str, bytes]:
    """Bit flips and truncations of real small JPEG and PNG files: mostly broken, some still decodable."""
    rng = np.random.default_rng(seed)
    photo, flower = sample_array("china.jpg"), sample_array("flower.jpg")
    bases = [
        ("jpg", encode(photo[100:164, 200:264], "JPEG", quality=90)),
        ("jpg", encode(flower[150:198, 250:314], "JPEG", quality=75, progressive=True)),
        ("png", encode(photo[50:98, 300:348], "PNG")),
        ("png", encode(Image.fromarray(flower[200:232, 100:164]).quantize(32), "PNG")),
    ]
    files = {}
    for i in range(count):
        suffix, base = bases[int(rng.integers(len(bases)))]
        data = bytearray(base)
        kind = int(rng.integers(3))  # 0: flips, 1: truncation, 2: both
        if kind in (0, 2):
            for _ in range(int(rng.integers(1, 9))):
                bit = int(rng.integers(len(data) * 8))
                data[bit // 8] ^= 1 << (bit % 8)
        if kind in (1, 2):
            data = data[: int(rng.integers(len(data)))]
        files[f"mut/m{i:03d}.{suffix}"] = bytes(data)
    return files


def peak_memory(daemon: Daemon, peaks: dict[int, int]) -> bool:
    """Record VmHWM of the daemon and every descendant into `peaks`; always False (for wait_until)."""
    for pid in [daemon.pid, *descendants(daemon.pid)]:
        peaks[pid] = max(peaks.get(pid, 0), vm_hwm_kib(pid))
    return False


@pytest.mark.timeout(120)
def test_500_mutated_images_each_end_done_or_failed_with_a_reason_and_memory_stays_bounded(
    start_daemon, tmp_path: Path
) -> None:
    files = mutants(MUTANTS)
    drop(tmp_path / "in", files)
    daemon = start_daemon("--stable-seconds", "0.2")
    peaks: dict[int, int] = {}

    def settled() -> bool:
        peak_memory(daemon, peaks)
        assert daemon.process.poll() is None, f"daemon died:\n{daemon.log()[-3000:]}"
        return all((daemon.output / output_name(rel)).exists() or (daemon.output / ".failed" / rel).exists()
                   for rel in files)

    wait_until(settled, timeout=100, what="every mutated file done or failed")
    assert daemon.stop() == 0
    log = daemon.log()
    states = journal_states(daemon.journal_path)
    done = sorted(rel for rel, state in states.items() if state == "done")
    failed = sorted(rel for rel, state in states.items() if state == "failed")
    assert sorted(done + failed) == sorted(files), "every file ends done or failed, none lost"
    assert f"icsd stopped: {len(done)} images done, {len(failed)} failed" in log
    for rel in done:
        assert (daemon.output / output_name(rel)).exists() and not (daemon.output / ".failed" / rel).exists()
    for rel in failed:
        sidecar = json.loads((daemon.output / ".failed" / f"{rel}.error.json").read_text())
        assert sidecar["file"] == rel and sidecar["error"] and "\n" not in sidecar["error"]
        assert (daemon.output / ".failed" / rel).read_bytes() == files[rel]
        assert f"FAILED {rel}: {sidecar['error']}" in log
    assert "Traceback" not in log and "internal error" not in log
    assert temp_files(daemon.output) == []
    worst = max(peaks.values())
    assert worst < MEMORY_BOUND_KIB, f"peak resident memory {worst} KiB"
    print(f"FIGURES mutants: {MUTANTS} files, {len(done)} done, {len(failed)} failed, lost 0, "
          f"peak VmHWM daemon {peaks[daemon.pid] // 1024} MiB, any process {worst // 1024} MiB")


# -- restarts, replaced files, disposal of originals ----------------------------------------------


def test_restart_trusts_done_rows_and_redoes_pending_and_in_progress_ones(start_daemon, tmp_path: Path) -> None:
    """Rows and files as a crash leaves them: DONE is final; PENDING (awaiting a retry) and IN_PROGRESS
    are redone; half-written temporary files are removed."""
    images = burst_images(4)
    drop(tmp_path / "in", images)
    rels = sorted(images)
    with Journal(tmp_path / "out" / ".icsd" / "journal.sqlite3") as journal:
        for rel in rels:
            st = (tmp_path / "in" / rel).stat()
            assert journal.claim(FileVersion.of(rel, st, content_digest(images[rel])))
        journal.mark_done(rels[0], output_name(rels[0]))  # "done" although no output exists: must be trusted
        journal.mark_pending(rels[1], "worker process died")
        # rels[2] stays IN_PROGRESS (killed mid-job); rels[3] is IN_PROGRESS with a stale digest (replaced since)
    with Journal(tmp_path / "out" / ".icsd" / "journal.sqlite3") as journal, journal._write() as db:
        db.execute("UPDATE files SET digest = 'stale' WHERE rel = ?", (rels[3],))
    for stray in ("d1/.icsd-tmp-k2j3", ".failed/sub/.icsd-tmp-x9"):  # writes the crash interrupted
        write(tmp_path / "out" / stray, b"half a PNG")

    daemon = start_daemon("--stable-seconds", "0.2")
    daemon.wait_for_outputs([output_name(rel) for rel in rels[1:]])
    assert daemon.stop() == 0
    assert "removed 2 temporary files left by an earlier crash" in daemon.log()
    assert temp_files(daemon.output) == []
    assert sorted(daemon.progress_names()) == rels[1:]
    assert journal_states(daemon.journal_path) == dict.fromkeys(rels, "done")


@pytest.mark.timeout(60)
def test_a_replaced_file_is_processed_again_while_running_and_after_restart(start_daemon, tmp_path: Path) -> None:
    versions = list(burst_images(3).values())
    write_atomically(tmp_path / "in" / "photo.jpg", versions[0])
    write_atomically(tmp_path / "in" / "same.jpg", versions[0])
    first = start_daemon("--stable-seconds", "0.2")
    first.wait_for_outputs(["photo.png", "same.png"])
    outputs = [(first.output / "photo.png").read_bytes()]

    write_atomically(first.input / "photo.jpg", versions[1])  # new content under the same name, while running
    wait_until(lambda: (first.output / "photo.png").read_bytes() != outputs[-1], what="photo.png rewritten")
    outputs.append((first.output / "photo.png").read_bytes())
    assert first.stop() == 0
    assert sorted(first.progress_names()) == ["photo.jpg", "photo.jpg", "same.jpg"]

    write_atomically(tmp_path / "in" / "photo.jpg", versions[2])  # replaced while the daemon was down
    write_atomically(tmp_path / "in" / "same.jpg", versions[0])  # rewritten with the same bytes: nothing to do
    second = start_daemon("--stable-seconds", "0.2")
    wait_until(lambda: (second.output / "photo.png").read_bytes() != outputs[-1], what="photo.png rewritten again")
    wait_until(lambda: second.progress_names() == ["photo.jpg"], what="the progress line of the new version")
    assert second.stop() == 0
    assert second.progress_names() == ["photo.jpg"]
    assert len({*outputs, (second.output / "photo.png").read_bytes()}) == 3


@pytest.mark.parametrize("policy", ["delete", "archive"])
def test_on_success_disposes_of_the_original_only_after_its_output_is_durable(
    start_daemon, tmp_path: Path, policy: str
) -> None:
    images = {f"a/b/{rel}": data for rel, data in burst_images(12).items()}
    archive = tmp_path / "archive"
    extra = ["--archive-dir", str(archive)] if policy == "archive" else []
    daemon = start_daemon("--stable-seconds", "0.2", "--on-success", policy, *extra)
    daemon.wait_ready()
    drop(daemon.input, images)

    def disposed_only_after_output() -> bool:
        # original checked first, output second: an original gone before its output was in place shows up here
        for rel in images:
            if not (daemon.input / rel).exists():
                assert (daemon.output / output_name(rel)).exists(), f"{rel} disposed of before its output existed"
        return daemon.outputs() == expected_outputs(images) and len(daemon.progress_names()) == len(images)

    wait_until(disposed_only_after_output, timeout=60, what="all outputs")
    assert daemon.stop() == 0
    assert [rel for rel in images if (daemon.input / rel).exists()] == []
    if policy == "archive":
        for rel, data in images.items():
            assert (archive / rel).read_bytes() == data  # relative path kept
    else:
        assert not archive.exists()
    assert journal_states(daemon.journal_path) == dict.fromkeys(images, "done")


# -- the environment failing under the daemon ------------------------------------------------------


@pytest.mark.timeout(60)
def test_input_folder_deleted_while_running_exits_70_so_systemd_restarts_it(start_daemon) -> None:
    daemon = start_daemon("--stable-seconds", "0.2")
    daemon.wait_ready()
    shutil.rmtree(daemon.input)
    assert daemon.wait(30) == EX_SOFTWARE, daemon.log()
    assert "disappeared" in daemon.log() and "exiting so the service manager restarts icsd" in daemon.log()


@pytest.mark.timeout(60)
def test_input_folder_renamed_away_and_recreated_exits_70_and_the_restart_watches_the_new_one(
    start_daemon, tmp_path: Path
) -> None:
    """`mv in in.bak; mkdir in`: inotify follows in.bak, so without a check nothing would watch the new `in`."""
    daemon = start_daemon("--stable-seconds", "0.2")
    daemon.wait_ready()
    daemon.input.rename(tmp_path / "in.bak")
    daemon.input.mkdir()
    write_image(daemon.input / "new.jpg", sample_image(crop=96))
    wait_until(lambda: daemon.process.poll() is not None, timeout=15, what="the daemon to exit")
    assert daemon.wait() == EX_SOFTWARE, daemon.log()
    errors = [line for line in daemon.log().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith(
        f"the folder watcher stopped working (input folder {daemon.input} was moved away or replaced: it is no "
        "longer the folder being watched); exiting so the service manager restarts icsd"), daemon.log()

    restarted = start_daemon("--stable-seconds", "0.2")  # what systemd's Restart=on-failure does
    restarted.wait_for_outputs(["new.png"])
    assert restarted.stop() == 0


def _broken_module(root: Path, name: str) -> Path:
    """A folder for PYTHONPATH whose `name` package fails to import, as after a botched install of it."""
    package = root / "broken" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"raise ImportError('simulated broken {name} install')\n")
    return root / "broken"


@pytest.mark.timeout(90)
def test_workers_that_die_as_they_start_stop_the_daemon_with_exit_70_and_fail_no_image(
    start_daemon, tmp_path: Path
) -> None:
    """Workers that cannot even start (here: their initializer's import fails) are no image's fault."""
    waiting = {"a.jpg": encode(sample_array()[:96, :96], "JPEG"), "b.jpg": encode(sample_array()[96:192, :96], "JPEG")}
    drop(tmp_path / "in", waiting)
    broken = _broken_module(tmp_path, "threadpoolctl")
    daemon = start_daemon(env=clean_env(PYTHONPATH=str(broken)))
    assert daemon.wait(60) == EX_SOFTWARE, daemon.log()
    log = daemon.log()
    assert "worker processes exit as soon as they start (their own error is logged above); icsd stops without " \
           "failing any image: they are retried on the next start" in log, log
    assert "FAILED" not in log and "retrying in" not in log
    assert sorted(p.name for p in daemon.input.iterdir()) == ["a.jpg", "b.jpg"]
    assert not (daemon.output / ".failed").exists() or not any((daemon.output / ".failed").iterdir())
    assert set(journal_states(daemon.journal_path).values()) <= {"pending"}

    fixed = start_daemon()
    fixed.wait_for_outputs(expected_outputs(waiting))
    assert fixed.stop() == 0


@pytest.mark.timeout(90)
def test_workers_that_cannot_load_the_image_stack_stop_the_batch_and_fail_no_image(tmp_path: Path) -> None:
    """A broken Pillow in the workers' path: one clear line, exit 70, every image kept for the next run."""
    waiting = {"a.jpg": encode(sample_array()[:96, :96], "JPEG"), "sub/b.png": encode(sample_array()[:64, :64], "PNG")}
    drop(tmp_path / "in", waiting)
    command = [sys.executable, "-m", "icsd", "batch", "in", "--output-dir", "out", "--workers", "2"]
    broken = _broken_module(tmp_path, "PIL")
    first = subprocess.run(command, cwd=tmp_path, env=clean_env(PYTHONPATH=str(broken)), capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert first.returncode == EX_SOFTWARE, first.stderr
    errors = [line for line in first.stderr.splitlines() if " ERROR " in line]
    assert errors == [errors[0]] and errors[0].endswith(
        "worker processes cannot load the image stack: ImportError: simulated broken PIL install; icsd stops "
        "without failing any image: they are retried on the next start"), first.stderr
    assert "icsd stopped: 0 images done, 0 failed" in first.stderr
    assert all((tmp_path / "in" / rel).read_bytes() == data for rel, data in waiting.items())
    journal = tmp_path / "out" / ".icsd" / "journal.sqlite3"
    assert set(journal_states(journal).values()) <= {"pending"}

    second = subprocess.run(command, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert second.returncode == 0, second.stderr
    assert "icsd stopped: 2 images done, 0 failed" in second.stderr
    assert journal_states(journal) == {"a.jpg": "done", "sub/b.png": "done"}


@pytest.mark.timeout(60)
def test_an_unreadable_file_is_retried_one_that_stays_unreadable_fails_and_finished_ones_are_not_reread(
    start_daemon, tmp_path: Path
) -> None:
    """We run as root, which reads anything: the daemon runs without CAP_DAC_OVERRIDE so chmod 000 bites.

    After a restart, originals the journal already finished are recognised by their metadata alone:
    never read again (a restart must not reread a whole archive), so an unreadable one raises nothing.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and util-linux setpriv to drop the permission-override capabilities")
    unprivileged = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    images = burst_images(3)
    (late, late_data), (never, never_data), (extra, extra_data) = images.items()
    drop(tmp_path / "in", {late: late_data, never: never_data})
    for rel in (late, never):
        (tmp_path / "in" / rel).chmod(0)
    daemon = start_daemon("--stable-seconds", "0.2", "--max-attempts", "3", prefix=unprivileged)
    daemon.wait_for_log(f"{late}: cannot read: Permission denied; retrying in 1 s (attempt 2 of 3)")
    (daemon.input / late).chmod(0o644)  # the permission problem clears
    daemon.wait_for_outputs([output_name(late)])
    daemon.wait_for_log(f"FAILED {never}: cannot read: Permission denied (gave up after 3 attempts)")
    assert daemon.stop() == 0
    assert (daemon.output / ".failed" / never).exists() and (daemon.output / ".failed" / f"{never}.error.json").exists()
    (daemon.output / ".failed" / never).chmod(0o644)
    assert (daemon.output / ".failed" / never).read_bytes() == never_data

    (daemon.input / late).chmod(0)  # done, and now unreadable: a restart must not even try to read it
    again = start_daemon("--stable-seconds", "0.2", prefix=unprivileged)
    again.wait_ready()
    drop(again.input, {extra: extra_data})  # offered after the startup scan's files, so they were handled first
    again.wait_for_outputs([output_name(late), output_name(extra)])
    assert again.stop() == 0
    assert "cannot read" not in again.log() and again.progress_names() == [extra]
    # `never` was claimed for a worker to read, and never read: its failed row has no content identity (a
    # replacement of the same size is work again, tests/test_intake.py); the sidecar says why it failed
    assert journal_states(again.journal_path) == {late: "done", never: "failed", extra: "done"}
    (again.input / late).chmod(0o644)
    assert (again.input / late).read_bytes() == late_data


def write_atomically(path: Path, data: bytes) -> None:
    """How a careful uploader replaces a file: write a hidden temporary, then rename over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.part")
    temp.write_bytes(data)
    os.replace(temp, path)





def test_pool_processes_exit_when_the_daemon_is_killed(start_daemon) -> None:
    """After kill -9 of the daemon, its fork server and workers must not linger holding memory."""
    daemon = start_daemon()
    write_image(daemon.input / "warm.jpg", sample_image(crop=96))
    daemon.wait_for_outputs(["warm.png"])  # the pool's processes exist now
    pool = descendants(daemon.pid)
    assert pool
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.process.wait(30)
    wait_until(lambda: not [pid for pid in pool if alive(pid)], timeout=30, what=f"pool processes {pool} to exit")

