"""Stopping the real daemon mid-image: the drain bound cuts jobs off, queued jobs are not started.

Each test runs `icsd run` or `icsd batch` as a subprocess, catches a pool worker busy on an image (by its
CPU time), sends a real signal and polls for the exit with a deadline. An image cut off or never started
must stay pending in the journal, not failed, and be done by the next start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.harness import alive, busy_worker, clean_env, descendants, journal_states, wait_until
from tests.images import encode, write

# ~2 s of one core per noise_png (~1.5 s once a worker has imported scikit-learn): long enough to catch the
# job running (0.3 s of CPU) and signal the daemon while most of it is still to do.
SLOW = ("--strategy", "sklearn-kmeans", "--scale", "2", "--colors", "256")
EXIT_SECONDS = 15.0  # deadline for the exit after the signal; the fix exits in well under a second


def noise_png(seed: int, shape: tuple[int, int] = (1500, 2000)) -> bytes:
    """Random noise, by default 2000x1500 (9 MB of PNG): slow to decode and to cluster (~9 s of CPU with SLOW,
    ~4.5 s at 1000x750)."""
    rng = np.random.default_rng(seed)
    return encode(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), "PNG")


def wait_for_exit(process: subprocess.Popen[bytes], pool: list[int], *, timeout: float = EXIT_SECONDS) -> int:
    """The exit code, once the process and every process of its pool have exited (within the deadline)."""
    wait_until(lambda: process.poll() is not None, timeout=timeout, what="the daemon to exit after the signal")
    wait_until(lambda: not [pid for pid in pool if alive(pid)], timeout=EXIT_SECONDS,
               what=f"pool processes {pool} to exit")
    return int(process.returncode)


def rows(journal: Path) -> dict[str, tuple[str, int]]:
    """rel -> (state, attempts), read-only."""
    db = sqlite3.connect(f"{journal.absolute().as_uri()}?mode=ro", uri=True)
    try:
        found = db.execute("SELECT rel, state, attempts FROM files")
        return {str(rel): (str(state), int(attempts)) for rel, state, attempts in found}
    finally:
        db.close()


@pytest.mark.timeout(90)
def test_sigterm_past_the_drain_bound_exits_zero_at_once_and_the_next_start_does_the_cut_off_image(
    start_daemon, tmp_path: Path
) -> None:
    write(tmp_path / "in" / "noise.png", noise_png(1))
    daemon = start_daemon("--drain-seconds", "0.2", *SLOW)
    busy_worker(daemon.pid)
    pool = descendants(daemon.pid)
    daemon.process.send_signal(signal.SIGTERM)
    assert wait_for_exit(daemon.process, pool) == 0, daemon.log()

    log = daemon.log()
    assert "1 image was still in progress; it will be processed on the next start" in log
    assert "icsd stopped: 0 images done, 0 failed" in log
    assert "Traceback" not in log and "FAILED" not in log
    assert rows(daemon.journal_path) == {"noise.png": ("pending", 0)}  # the cut-off attempt is not counted

    again = start_daemon()  # quick settings: what is tested is that the cut-off image is done, not how
    again.wait_for_outputs(["noise.png"])
    assert again.stop() == 0
    assert again.progress_names() == ["noise.png"]
    assert journal_states(again.journal_path) == {"noise.png": "done"}


@pytest.mark.timeout(90)
def test_sigterm_finishes_the_running_image_but_starts_none_of_the_queued_ones(start_daemon, tmp_path: Path) -> None:
    """One worker: one image runs, the other two wait in the pool's queue (the in-flight window holds 12 images,
    and 16 MiB of input per worker)."""
    images = {f"{name}.png": noise_png(seed, shape=(750, 1000)) for seed, name in enumerate("abc")}
    for rel, data in images.items():
        write(tmp_path / "in" / rel, data)
    daemon = start_daemon(*SLOW, workers=1)  # default drain bound: 30 s, room for every queued image
    busy_worker(daemon.pid)
    pool = descendants(daemon.pid)
    daemon.process.send_signal(signal.SIGTERM)
    # The running image is finished first (~4.5 s of CPU): on a loaded machine that alone can pass EXIT_SECONDS.
    # That no queued image was started is what the log and the journal rows below show.
    assert wait_for_exit(daemon.process, pool, timeout=60) == 0, daemon.log()

    log = daemon.log()
    assert "waiting up to 30 s for 3 images in progress" in log, log  # the running one and the queued ones
    [done] = daemon.progress_names()
    assert "icsd stopped: 1 image done, 0 failed" in log and "still in progress" not in log, log
    assert "FAILED" not in log and "retrying" not in log
    states = rows(daemon.journal_path)
    assert states.pop(done) == ("done", 1)
    assert list(states.values()) == [("pending", 0)] * 2, states  # the queued ones given back, attempts not counted

    again = start_daemon(workers=1)  # quick settings, as above: the done image is remade with them (other settings)
    wait_until(lambda: sorted(again.progress_names()) == sorted(images), timeout=60,
               what="all three images done (a.png's output is there from the first run: its remake is awaited)")
    assert again.stop() == 0
    assert sorted(again.progress_names()) == sorted(images)
    assert "1 output made with other settings is remade from its original" in again.log()


@pytest.mark.timeout(90)
def test_batch_interrupted_with_no_drain_time_exits_at_once_and_a_rerun_finishes(tmp_path: Path) -> None:
    write(tmp_path / "in" / "noise.png", noise_png(2))
    command = [sys.executable, "-m", "icsd", "batch", "in", "--output-dir", "out", "--drain-seconds", "0", *SLOW]
    log = tmp_path / "batch.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT)
        try:
            busy_worker(process.pid)
            pool = descendants(process.pid)
            process.send_signal(signal.SIGINT)
            assert wait_for_exit(process, pool) == 130, log.read_text()
        finally:
            if process.poll() is None:
                for pid in [process.pid, *descendants(process.pid)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait(30)
    text = log.read_text()
    last = text.rstrip().splitlines()[-1]  # the summary, as for `run`: batch drains on SIGINT too
    assert "received SIGINT" in text and "icsd stopped: 0 images done, 0 failed" in last, text
    journal = tmp_path / "out" / ".icsd" / "journal.sqlite3"
    assert rows(journal) == {"noise.png": ("pending", 0)}

    quick = command[: -len(SLOW)]  # what is tested is that the pending image is done, not how
    rerun = subprocess.run(quick, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    assert rerun.returncode == 0, rerun.stderr
    assert "icsd stopped: 1 image done, 0 failed" in rerun.stderr
    assert journal_states(journal) == {"noise.png": "done"}
