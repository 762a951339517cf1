"""The daemon at scale, end to end: an inotify overflow with thousands of new folders; what kill -9 leaves.

The overflow is real and needs no change to the kernel's limits: the daemon is stopped (SIGSTOP)
while more events than fs.inotify.max_queued_events happen, so its reader cannot drain the queue.
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import pytest

from tests.harness import sample_image, wait_until

QUEUE_LIMIT = Path("/proc/sys/fs/inotify/max_queued_events")
FOLDERS = 2000


def _tiny_jpeg() -> bytes:
    buffer = io.BytesIO()
    sample_image(crop=16).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.timeout(600)
def test_thousands_of_new_folders_and_an_overflow_lose_nothing_and_the_overflow_does_not_repeat(
    start_daemon,
) -> None:
    limit = int(QUEUE_LIMIT.read_text()) if QUEUE_LIMIT.exists() else 0
    if not 0 < limit <= 200_000:
        pytest.skip(f"fs.inotify.max_queued_events is {limit or 'unknown'}: too many events to make here")
    daemon = start_daemon()
    daemon.wait_ready()
    data = _tiny_jpeg()
    noise = [daemon.input / "a.txt", daemon.input / "b.txt"]
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        for i in range(FOLDERS):
            folder = daemon.input / f"f{i:04d}"
            folder.mkdir()
            (folder / "x.jpg").write_bytes(data)
        for path in noise:
            path.write_bytes(b"not an image")
        for i in range(limit + 1000):
            os.utime(noise[i % 2])  # alternating files: the kernel cannot coalesce the events
        late = daemon.input / "late" / "deep"  # made after the queue overflowed: its events are lost
        late.mkdir(parents=True)
        (late / "x.jpg").write_bytes(data)
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    expected = sorted([f"f{i:04d}/x.png" for i in range(FOLDERS)] + ["late/deep/x.png"])
    daemon.wait_for_outputs(expected, timeout=500)
    daemon.wait_for_log("inotify queue overflowed 1 time ")
    (late / "y.jpg").write_bytes(data)  # by its event: the overflow walk watched the folder
    daemon.wait_for_outputs(sorted([*expected, "late/deep/y.png"]), timeout=60)
    log = daemon.log()
    assert log.count("inotify queue overflowed") == 1, log[-3000:]
    assert "Inotify queue overflowed" not in log  # watchdog's own remove-and-re-add never ran
    assert sorted(daemon.progress_names()) == sorted(p.replace(".png", ".jpg") for p in [*expected, "late/deep/y.png"])
    assert daemon.stop() == 0


def _semaphores(daemon) -> list[str]:
    record = daemon.output / ".icsd" / "semaphores"
    return record.read_text().split() if record.exists() else []


def _in_shm(name: str) -> bool:
    return Path("/dev/shm", "sem." + name.lstrip("/")).exists()


def test_kill_9_leaves_semaphores_that_the_next_start_removes(start_daemon) -> None:
    first = start_daemon(start_new_session=True)
    first.wait_ready()
    names = wait_until(lambda: _semaphores(first), what="the pool's semaphores recorded")
    assert all(_in_shm(n) for n in names), names
    os.killpg(first.pid, signal.SIGKILL)  # the whole group at once, resource tracker included
    first.wait()
    assert any(_in_shm(n) for n in names), "the leak this guards against no longer happens"
    second = start_daemon()
    second.wait_ready()
    assert not any(_in_shm(n) for n in names)
    assert "semaphores left in /dev/shm by an icsd that was killed" in second.log()
    assert second.stop() == 0
    assert not any(_in_shm(n) for n in _semaphores(second))  # a clean stop leaves none either
