"""inotify queue overflows: a real overflow of the kernel queue, repeated ones, a storm; the seen-set.

A real overflow is made in-process without touching the kernel's limits: the test holds the reader
thread's lock (it blocks before handling what it read) and makes more events than
fs.inotify.max_queued_events while the reader cannot drain the queue.
"""

from __future__ import annotations

import array
import fcntl
import logging
import os
import termios
from pathlib import Path

import pytest
from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent

from icsd.daemon.inotify_source import OverflowMonitor
from icsd.daemon.seen import SeenVersions
from icsd.daemon.watcher import Watcher
from tests.harness import wait_until

OVERFLOW = InotifyEvent(-1, InotifyConstants.IN_Q_OVERFLOW, 0, b"")
QUEUE_LIMIT = Path("/proc/sys/fs/inotify/max_queued_events")


class Offered:
    def __init__(self) -> None:
        self.paths: list[Path] = []

    def __call__(self, path: Path) -> None:
        self.paths.append(path)


def _watcher(root: Path, offered: Offered) -> Watcher:
    w = Watcher(root, offered, stable_seconds=0.05, rescan_seconds=3600.0, polling=False)
    w.start()
    assert w.mode == "inotify"
    return w


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


def test_a_real_overflow_keeps_the_watches_finds_the_lost_files_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limit = int(QUEUE_LIMIT.read_text()) if QUEUE_LIMIT.exists() else 0
    if not 0 < limit <= 200_000:
        pytest.skip(f"fs.inotify.max_queued_events is {limit or 'unknown'}: too many events to make here")
    caplog.set_level(logging.WARNING)
    root = tmp_path / "in"
    for i in range(200):
        (root / f"old{i}").mkdir(parents=True)
    noise = [root / "a.txt", root / "b.txt"]
    for path in noise:
        path.write_bytes(b"x")
    offered = Offered()
    w = _watcher(root, offered)
    try:
        fd = w._observer.inotify_fd  # type: ignore[union-attr]
        watches_before = set(fd._watch_for_wd)
        with fd._lock:  # the reader blocks: the kernel queue fills and overflows
            # watchdog reads outside the lock, so the reader may drain one buffer (2,048 events) before it
            # blocks: make that many more than the queue holds, or the queue may end just short of overflowing.
            for i in range(limit + 4 * 2048):
                os.utime(noise[i % 2])  # alternating files: the kernel cannot coalesce them
            lost = root / "lost" / "deep"
            lost.mkdir(parents=True)  # its IN_CREATE is dropped: the queue is full
            (lost / "x.jpg").write_bytes(b"lost event")
        assert wait_until(lambda: lost / "x.jpg" in offered.paths, timeout=30, what="x.jpg found by the rescan")
        # counted by the emitter thread once its fix-up walk is done, which may be after the rescan offered x.jpg
        wait_until(lambda: w.overflows.total >= 1, timeout=30, what="the overflow counted")
        assert w.overflows.total == 1
        assert watches_before <= set(fd._watch_for_wd), "the overflow removed and re-added watches"
        (lost / "y.jpg").write_bytes(b"an event in a folder the overflow walk watched")
        assert wait_until(lambda: lost / "y.jpg" in offered.paths, timeout=30, what="y.jpg by its event")
        assert w.overflows.total == 1, "the fix-up fed another overflow"
        assert w.healthy()
    finally:
        w.stop()
    assert len(_warnings(caplog, "inotify queue overflowed 1 time")) == 1
    assert not _warnings(caplog, "Inotify queue overflowed"), "watchdog's own fix-up ran"
    assert offered.paths.count(lost / "x.jpg") == 1


def test_repeated_overflows_touch_no_watch_and_warn_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    root = tmp_path / "in"
    for i in range(300):
        (root / f"d{i}").mkdir(parents=True)
    (root / "d7" / "a.jpg").write_bytes(b"image")
    offered = Offered()
    w = _watcher(root, offered)
    try:
        assert wait_until(lambda: offered.paths, what="a.jpg")
        fd = w._observer.inotify_fd  # type: ignore[union-attr]
        watches = dict(fd._watch_for_wd)
        for _ in range(20):
            fd.handle_event(OVERFLOW)
        assert w.overflows.total == 20
        assert set(fd._watch_for_wd) == set(watches)
        (root / "d9" / "b.jpg").write_bytes(b"still watched")
        assert wait_until(lambda: root / "d9" / "b.jpg" in offered.paths, what="b.jpg by its event")
        assert w.healthy()
        assert offered.paths.count(root / "d7" / "a.jpg") == 1, "an unchanged file was offered again"
    finally:
        w.stop()
    lines = _warnings(caplog, "inotify queue overflowed")
    # 20 overflows, one line: it counts those the ticker had seen (the rest go in the next minute's line)
    assert len(lines) == 1, lines
    assert 1 <= int(lines[0].split("overflowed ")[1].split(" time")[0]) <= 20, lines


def test_the_overflow_walk_watches_every_new_folder_and_never_a_linked_one(tmp_path: Path) -> None:
    """After an overflow, folders whose creation was lost get watches, nested ones too; a link to a folder
    outside the input folder is never walked nor watched."""
    root = tmp_path / "in"
    root.mkdir()
    (tmp_path / "outside" / "deep").mkdir(parents=True)
    w = _watcher(root, Offered())
    try:
        fd = w._observer.inotify_fd  # type: ignore[union-attr]
        (group,) = {id(cb): cb for watch in fd._watch_for_wd.values() for cb in watch.callbacks.values()}.values()
        (root / "a" / "b" / "c").mkdir(parents=True)
        (root / "link").symlink_to(tmp_path / "outside")
        group._watch_unwatched_folders()
        watched = set(group._active_callbacks_by_path)
        assert {os.fsencode(root / rel) for rel in ("a", "a/b", "a/b/c")} <= watched
        assert not any(path.startswith(os.fsencode(root / "link")) for path in watched)
        assert not any(b"outside" in path for path in watched)
    finally:
        w.stop()


def _queued_bytes(inotify_fd: int) -> int:
    """Bytes of events waiting in the kernel queue of an inotify descriptor (FIONREAD)."""
    size = array.array("i", [0])
    fcntl.ioctl(inotify_fd, termios.FIONREAD, size, True)
    return size[0]


def test_reading_inputs_and_rescanning_queue_no_events(tmp_path: Path) -> None:
    """The daemon reads every input and a rescan opens every folder: neither may queue an event. With
    IN_OPEN and IN_CLOSE_NOWRITE watched, a rescan of 20,000 folders queued ~80,000 events, overflowed the
    queue and so asked for the next rescan (bench/manyfolders.py: 59 overflows in a 60-s run)."""
    root = tmp_path / "in"
    files = [root / f"d{i}" / "frame.jpg" for i in range(50)]
    for path in files:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"image")
    offered = Offered()
    w = _watcher(root, offered)
    try:
        fd = w._observer.inotify_fd  # type: ignore[union-attr]
        kernel_fd = fd._inotify_fd
        with fd._lock:  # the reader handles no event until this ends; the kernel queue keeps what comes
            os.utime(files[0])  # one event: the reader reads it, then blocks on the lock
            wait_until(lambda: _queued_bytes(kernel_fd) == 0, what="the reader to take the first event")
            for path in files:
                path.read_bytes()
            w.rescan()
            w.rescan()
            assert _queued_bytes(kernel_fd) == 0, "reads or a rescan queued events"
            os.utime(files[1])  # the control: a change is queued while the reader is blocked
            assert wait_until(lambda: _queued_bytes(kernel_fd) > 0, what="the control event queued")
        assert w.overflows.total == 0
    finally:
        w.stop()


def test_an_overflow_storm_makes_the_watcher_unhealthy(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    w = _watcher(root, Offered())
    try:
        fd = w._observer.inotify_fd  # type: ignore[union-attr]
        storm = w.overflows.storm_count
        for _ in range(storm - 1):
            fd.handle_event(OVERFLOW)
        assert w.healthy()
        fd.handle_event(OVERFLOW)
        assert not w.healthy()
        assert f"inotify event source is looping: {storm} queue overflows" in (w.failure() or "")
    finally:
        w.stop()


def test_overflow_monitor_bounds_rescans_reports_and_storms() -> None:
    m = OverflowMonitor(report_seconds=60, storm_count=5, storm_seconds=10, min_gap=1.0)
    assert not m.take_rescan(0.0) and m.take_report(0.0) == 0 and m.storm(0.0) is None
    m.note(0.0)
    assert m.take_rescan(0.0) and not m.take_rescan(0.0)
    m.rescanned(0.0, seconds=0.5)  # the next one waits max(1 s, 5 x 0.5 s)
    m.note(0.1)
    assert not m.take_rescan(2.4) and m.take_rescan(2.5)
    assert m.take_report(0.1) == 2
    for t in (1.0, 2.0, 3.0):
        m.note(t)
    assert m.take_report(30.0) == 0 and m.take_report(60.1) == 3  # one line a minute, with the count
    assert m.storm(3.0) == "inotify event source is looping: 5 queue overflows within 3 s (5 in all)"
    assert m.storm(11.0) is None  # five, but spread over more than 10 s


def test_seen_versions_add_discard_retain_across_merges() -> None:
    seen = SeenVersions()
    hashes = [(i * 7919) % 100_003 - 50_000 for i in range(10_000)]
    for h in hashes:
        seen.add(h)
    assert len(seen) == 10_000 and all(h in seen for h in hashes) and 123_456 not in seen
    for h in hashes[:5000]:
        seen.discard(h)
    assert len(seen) == 5000 and hashes[0] not in seen and hashes[-1] in seen
    seen.add(hashes[0])
    assert hashes[0] in seen
    seen.retain(hashes[-100:])
    assert len(seen) == 100 and hashes[-1] in seen and hashes[0] not in seen


def test_a_rescan_forgets_files_that_are_gone_and_a_returning_file_is_offered(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for i in range(50):
        (root / f"{i}.jpg").write_bytes(b"image")
    offered = Offered()
    w = _watcher(root, offered)
    try:
        assert wait_until(lambda: len(offered.paths) == 50, what="50 files")
        moved = root.parent / "3.jpg"
        (root / "3.jpg").rename(moved)
        w.rescan()
        assert len(w._seen) == 49
        moved.rename(root / "3.jpg")  # same path, size, mtime and inode as the version offered before
        assert wait_until(lambda: offered.paths.count(root / "3.jpg") == 2, what="3.jpg offered again")
    finally:
        w.stop()
