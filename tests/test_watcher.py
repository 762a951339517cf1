"""Watcher: real files in tmp_path, real watchdog observers (inotify and polling).

Synchronisation is always a condition polled with a deadline. To show that something does *not*
happen (a second call, a junk file), a later sentinel file is awaited first and then the quiet
period is waited out again after a rescan.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from icsd.daemon.inputs import IMAGE_SUFFIXES, is_candidate_name, read_regular, remote_fs_type
from icsd.daemon.watcher import Watcher
from icsd.errors import InputError, SettingsError

STABLE = 0.25  # quiet period used throughout: short enough for a fast suite, long enough for the OS
SETTLE = 2 * STABLE + 0.3  # how long "nothing more happens" is watched for
TIMEOUT = 10.0  # generous upper bound for anything that should happen


class Calls:
    """Thread-safe record of callbacks with deadline-bounded waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.ready: list[Path] = []
        self.sizes: list[int] = []
        self.times: list[float] = []
        self.skipped: list[tuple[Path, str]] = []

    def on_ready(self, path: Path) -> None:
        size = path.stat().st_size  # what a consumer reading now would get
        with self._cond:
            self.ready.append(path)
            self.sizes.append(size)
            self.times.append(time.monotonic())
            self._cond.notify_all()

    def on_skip(self, path: Path, reason: str) -> None:
        with self._cond:
            self.skipped.append((path, reason))
            self._cond.notify_all()

    def wait(self, predicate: Callable[[Calls], bool], timeout: float = TIMEOUT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def wait_ready(self, *paths: Path, timeout: float = TIMEOUT) -> None:
        ok = self.wait(lambda c: all(p in c.ready for p in paths), timeout)
        assert ok, f"not ready within {timeout}s: {set(paths) - set(self.ready)} (got {self.ready})"

    def settle(self, watcher: Watcher) -> None:
        """Rescan, then check that no further callback arrives within a few quiet periods."""
        with self._cond:
            before = (len(self.ready), len(self.skipped))
        watcher.rescan()
        changed = self.wait(lambda c: (len(c.ready), len(c.skipped)) != before, SETTLE)
        assert not changed, f"unexpected callbacks: ready={self.ready[before[0] :]} skipped={self.skipped[before[1] :]}"


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "in"
    path.mkdir()
    return path


@pytest.fixture(params=["inotify", "polling"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_watcher(calls: Calls) -> Iterator[Callable[..., Watcher]]:
    """Build and start watchers that are always stopped at teardown."""
    started: list[Watcher] = []

    def make(
        root: Path,
        mode: str = "inotify",
        *,
        start: bool = True,
        on_ready: Callable[[Path], None] | None = None,
        **kw: object,
    ) -> Watcher:
        options: dict[str, object] = {
            "stable_seconds": STABLE,
            "rescan_seconds": 3600.0,  # events alone must do the job unless a test says otherwise
            "polling": mode == "polling",
            "poll_seconds": 0.1,
            "on_skip": calls.on_skip,
            **kw,
        }
        w = Watcher(root, on_ready or calls.on_ready, **options)  # type: ignore[arg-type]
        started.append(w)
        if start:
            w.start()
            assert w.mode == mode
        return w

    yield make
    for w in started:
        w.stop()


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll a condition with a deadline (for state that has no callback to wait on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        threading.Event().wait(0.02)
    return predicate()


def jpeg(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    Image.new("RGB", size, (200, 30, 90)).save(path, "JPEG", quality=90)
    return path


# -- name rules and helpers (no threads) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a.jpg", True),
        ("A.JPEG", True),
        ("scan.TiFf", True),
        ("x.jp2", True),
        ("x.j2k", True),
        ("img.webp", True),
        ("a.jpg.part", False),
        ("a.tmp", False),
        ("a.jpg.crdownload", False),
        ("a.jpg~", False),
        ("Thumbs.db", False),
        (".DS_Store", False),
        ("desktop.ini", False),
        (".hidden.jpg", False),
        ("notes.txt", False),
        ("archive.zip", False),
        ("noext", False),
    ],
)
def test_is_candidate_name(name: str, ok: bool) -> None:
    assert is_candidate_name(name) is ok


def test_every_listed_suffix_is_accepted() -> None:
    for suffix in IMAGE_SUFFIXES:
        assert is_candidate_name("x" + suffix.upper())


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 0:50 / /mnt/share rw,relatime shared:7 - nfs4 server:/export rw,vers=4.2
41 40 254:1 / /mnt/share/local rw,relatime - ext4 /dev/vdb rw
42 27 0:51 / /home/u/remote rw,nosuid - fuse.sshfs u@host: rw
43 27 0:52 / /media/usb rw - fuseblk /dev/sdb1 rw
44 27 0:53 / /mnt/my\\040drive rw - cifs //srv/x rw
"""


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/mnt/share/photos", "nfs4"),
        ("/mnt/share", "nfs4"),
        ("/mnt/share/local/x", None),  # a local mount inside a network one: the deepest wins
        ("/mnt/shareX", None),
        ("/home/u/remote/in", "fuse.sshfs"),
        ("/media/usb/in", None),  # fuseblk (ntfs-3g): a local disk, inotify sees its writes
        ("/mnt/my drive/in", "cifs"),
        ("/srv/in", None),
    ],
)
def test_remote_fs_type_from_mountinfo(path: str, fstype: str | None) -> None:
    assert remote_fs_type(path, MOUNTINFO) == fstype


def test_mode_and_reason(root: Path, calls: Calls) -> None:
    assert Watcher(root, calls.on_ready).mode == "inotify"  # tmp_path is local here
    forced = Watcher(root, calls.on_ready, polling=True)
    assert (forced.mode, forced.reason) == ("polling", "polling forced by configuration")


def test_read_regular_refuses_links_and_fifos(tmp_path: Path) -> None:
    real = tmp_path / "a.jpg"
    real.write_bytes(b"abc")
    data, st = read_regular(real)
    assert data == b"abc" and st.st_size == 3
    (tmp_path / "link.jpg").symlink_to(real)
    with pytest.raises(InputError, match="symlink"):
        read_regular(tmp_path / "link.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(InputError, match="not a regular file"):
        read_regular(tmp_path / "pipe.jpg")  # returns at once: O_NONBLOCK, no writer needed


def test_read_regular_reads_to_the_end_whatever_the_size_said(tmp_path: Path) -> None:
    """One read when the size holds; a file longer than its size said (it grew, or /proc's files, whose size is
    0) and a file larger than one read's chunk are read to their end."""
    empty, large = tmp_path / "empty.jpg", tmp_path / "large.jpg"
    empty.write_bytes(b"")
    payload = os.urandom(3 * 1024 * 1024 + 7)
    large.write_bytes(payload)
    assert read_regular(empty)[0] == b""
    assert read_regular(large)[0] == payload
    data, st = read_regular(Path("/proc/self/cmdline"))  # a regular file whose size says 0
    assert st.st_size == 0 and data == Path("/proc/self/cmdline").read_bytes() and len(data) > 1


def test_start_on_missing_root_is_a_settings_error(tmp_path: Path, calls: Calls) -> None:
    w = Watcher(tmp_path / "missing", calls.on_ready)
    with pytest.raises(SettingsError, match="does not exist"):
        w.start()
    w.stop()


# -- discovery and stability (both observer kinds) ----------------------------------------------


def test_startup_scan_finds_existing_files_once(root: Path, mode: str, calls: Calls, make_watcher) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    files = [jpeg(root / "a.jpg"), jpeg(root / "sub" / "b.JPG"), jpeg(root / "sub" / "deeper" / "c.jpeg")]
    (root / "notes.txt").write_text("no")
    (root / "sub" / "x.jpg.part").write_bytes(b"half")
    w = make_watcher(root, mode)
    calls.wait_ready(*files)
    calls.settle(w)
    assert sorted(calls.ready) == sorted(files)


def test_copy_of_a_real_jpeg_gives_one_call(tmp_path: Path, root: Path, mode: str, calls: Calls, make_watcher) -> None:
    src = jpeg(tmp_path / "photo.jpg", (640, 480))
    w = make_watcher(root, mode)
    dst = Path(shutil.copy(src, root / "photo.jpg"))
    calls.wait_ready(dst)
    calls.settle(w)
    assert calls.ready == [dst]
    assert calls.sizes == [src.stat().st_size]


def test_slow_chunked_writer_gives_one_call_after_it_finishes(
    root: Path, mode: str, calls: Calls, make_watcher
) -> None:
    stable = 0.5  # room for a writer thread delayed by a busy machine
    w = make_watcher(root, mode, stable_seconds=stable)
    target = root / "slow.png"
    chunks, pause = 8, stable / 5  # each pause well below the quiet period; the whole write is longer
    finished: list[float] = []

    def writer() -> None:
        with open(target, "wb") as f:
            for _ in range(chunks):
                f.write(b"x" * 4096)
                f.flush()
                threading.Event().wait(pause)  # a slow producer, not synchronisation
        finished.append(time.monotonic())

    t = threading.Thread(target=writer)
    t.start()
    try:
        calls.wait_ready(target)
    finally:
        t.join()
    calls.settle(w)
    assert chunks * pause > stable
    assert calls.ready == [target]
    assert calls.sizes == [chunks * 4096]
    assert calls.times[0] >= finished[0]


def test_write_to_temp_then_rename_gives_one_call(root: Path, mode: str, calls: Calls, make_watcher) -> None:
    w = make_watcher(root, mode)
    tmp = root / ".x.part"
    tmp.write_bytes(b"y" * 10_000)
    final = root / "x.jpg"
    os.rename(tmp, final)
    calls.wait_ready(final)
    calls.settle(w)
    assert calls.ready == [final]


def test_nested_folders_and_a_folder_moved_in_whole(
    tmp_path: Path, root: Path, mode: str, calls: Calls, make_watcher
) -> None:
    w = make_watcher(root, mode)
    (root / "a" / "b" / "c").mkdir(parents=True)
    nested = jpeg(root / "a" / "b" / "c" / "n.jpg")
    outside = tmp_path / "batch"
    (outside / "inner").mkdir(parents=True)
    moved = [jpeg(outside / "m1.png"), jpeg(outside / "inner" / "m2.png")]
    os.rename(outside, root / "batch")
    expected = [nested, root / "batch" / "m1.png", root / "batch" / "inner" / "m2.png"]
    calls.wait_ready(*expected)
    calls.settle(w)
    assert sorted(calls.ready) == sorted(expected)
    assert not any(p.exists() for p in moved)


def test_symlinks_are_reported_never_followed(
    tmp_path: Path, root: Path, mode: str, calls: Calls, make_watcher
) -> None:
    secret = tmp_path / "shadow"  # stands in for /etc/shadow
    secret.write_text("root:$6$secret")
    secret_dir = tmp_path / "private"
    secret_dir.mkdir()
    jpeg(secret_dir / "private.jpg")
    (root / "early.jpg").symlink_to(secret)  # seen by the startup scan
    w = make_watcher(root, mode)
    (root / "late.jpg").symlink_to(secret)  # seen through an event
    (root / "folder").symlink_to(secret_dir, target_is_directory=True)
    sentinel = jpeg(root / "sentinel.jpg")
    calls.wait_ready(sentinel)
    assert calls.wait(lambda c: len(c.skipped) >= 2)
    calls.settle(w)
    calls.settle(w)  # rescans do not report them again
    assert calls.ready == [sentinel]
    assert sorted(p.name for p, _ in calls.skipped) == ["early.jpg", "late.jpg"]
    assert all("symlink" in reason for _, reason in calls.skipped)


def test_excluded_folder_is_never_walked_or_reported(root: Path, mode: str, calls: Calls, make_watcher) -> None:
    out = root / "Compressed"
    (out / "sub").mkdir(parents=True)
    jpeg(out / "old.png")
    w = make_watcher(root, mode, exclude=[out, root / "nonexistent"])
    jpeg(out / "new.png")
    jpeg(out / "sub" / "deep.png")
    (out / "link.jpg").symlink_to(root)
    sentinel = jpeg(root / "in.jpg")
    calls.wait_ready(sentinel)
    calls.settle(w)
    assert calls.ready == [sentinel]
    assert calls.skipped == []


# -- the remaining behaviours: one observer kind is enough ----------------------------------------


def test_junk_and_non_images_are_ignored(root: Path, calls: Calls, make_watcher) -> None:
    w = make_watcher(root)
    for name in ("a.jpg.part", "a.tmp", "b.crdownload", "c.jpg~", "Thumbs.db", ".DS_Store", "desktop.ini"):
        (root / name).write_bytes(b"junk")
    (root / ".hidden.jpg").write_bytes(b"hidden")
    (root / ".cache").mkdir()
    jpeg(root / ".cache" / "in-hidden-folder.jpg")
    (root / "notes.txt").write_text("text")
    (root / "doc.pdf").write_bytes(b"%PDF")
    sentinel = jpeg(root / "OK.JPG")
    calls.wait_ready(sentinel)
    calls.settle(w)
    assert calls.ready == [sentinel]
    assert calls.skipped == []


def test_fifo_and_socket_are_skipped_without_blocking(root: Path, calls: Calls, make_watcher) -> None:
    os.mkfifo(root / "early.jpg")
    w = make_watcher(root)  # start() returns: the startup scan never opens the FIFO
    os.mkfifo(root / "late.png")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock.jpg"))
        sentinel = jpeg(root / "real.jpg")
        calls.wait_ready(sentinel)
        assert calls.wait(lambda c: len(c.skipped) == 3)
        calls.settle(w)
    assert calls.ready == [sentinel]
    reasons = {p.name: reason for p, reason in calls.skipped}
    assert sorted(reasons) == ["early.jpg", "late.png", "sock.jpg"]
    assert "FIFO" in reasons["early.jpg"] and "FIFO" in reasons["late.png"] and "socket" in reasons["sock.jpg"]


def test_unchanged_file_is_not_offered_again_but_a_change_is(root: Path, calls: Calls, make_watcher) -> None:
    w = make_watcher(root)
    p = jpeg(root / "a.jpg")
    calls.wait_ready(p)
    calls.settle(w)
    assert len(calls.ready) == 1
    jpeg(p, (80, 80))  # replaced in place: new size/mtime
    assert calls.wait(lambda c: len(c.ready) == 2)
    w.forget(p)
    w.rescan()  # forgotten: the rescan offers it once more
    assert calls.wait(lambda c: len(c.ready) == 3)
    calls.settle(w)
    assert calls.ready == [p, p, p]


def test_file_deleted_before_it_settles_is_not_offered(root: Path, calls: Calls, make_watcher) -> None:
    w = make_watcher(root, stable_seconds=1.0)
    gone = root / "gone.jpg"
    gone.write_bytes(b"x" * 100)
    gone.unlink()
    sentinel = jpeg(root / "stays.jpg")
    calls.wait_ready(sentinel)
    calls.settle(w)
    assert calls.ready == [sentinel]
    assert w.waiting == 0


def test_rescan_catches_what_events_missed(root: Path, calls: Calls, make_watcher) -> None:
    # A polling observer that never polls stands in for lost events (queue overflow, restart gap).
    w = make_watcher(root, "polling", poll_seconds=3600.0)
    p = jpeg(root / "missed.jpg")
    assert not calls.wait(lambda c: bool(c.ready), SETTLE)
    w.rescan()
    calls.wait_ready(p)
    calls.settle(w)
    assert calls.ready == [p]


def test_periodic_rescan_runs_by_itself(root: Path, calls: Calls, make_watcher) -> None:
    make_watcher(root, "polling", poll_seconds=3600.0, rescan_seconds=0.3)
    p = jpeg(root / "found-later.jpg")
    calls.wait_ready(p)


def test_symlinked_root_reports_paths_under_the_link(tmp_path: Path, calls: Calls, make_watcher) -> None:
    real = tmp_path / "real-in"
    real.mkdir()
    link = tmp_path / "link-in"
    link.symlink_to(real, target_is_directory=True)
    w = make_watcher(link, exclude=[real / "out"])
    (real / "out").mkdir()
    jpeg(real / "out" / "excluded.png")
    p = jpeg(link / "via-link.jpg")
    calls.wait_ready(p)
    calls.settle(w)
    assert calls.ready == [p]


def test_callback_error_is_logged_and_offered_again(
    root: Path, calls: Calls, make_watcher, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[Path] = []

    def flaky(path: Path) -> None:
        if not failures:
            failures.append(path)
            raise RuntimeError("queue closed")
        calls.on_ready(path)

    w = make_watcher(root, on_ready=flaky)
    p = jpeg(root / "a.jpg")
    assert wait_until(lambda: bool(failures))
    # the failure is recorded before the callback raises; the log line follows on the watcher's thread
    assert wait_until(lambda: "queue closed" in caplog.text)
    assert w.healthy()
    w.rescan()
    calls.wait_ready(p)
    assert calls.ready == [p]


# -- health -------------------------------------------------------------------------------------


def test_healthy_through_the_lifecycle(root: Path, calls: Calls, make_watcher) -> None:
    w = make_watcher(root, start=False)
    assert not w.healthy() and w.failure() == "watcher not started"
    w.start()
    assert w.healthy() and w.failure() is None
    with pytest.raises(RuntimeError):
        w.start()
    w.stop()
    w.stop()  # idempotent
    assert not w.healthy()
    assert not any(t.name == "icsd-watcher-ticker" and t.is_alive() for t in threading.enumerate())


def test_removed_root_kills_the_emitter_and_makes_it_unhealthy(root: Path, mode: str, make_watcher) -> None:
    w = make_watcher(root, mode)
    assert w.healthy()
    shutil.rmtree(root)
    assert wait_until(lambda: not w.healthy())
    assert "disappeared" in str(w.failure())


@pytest.mark.parametrize("replaced", [True, False], ids=["replaced", "moved-away"])
def test_root_renamed_away_makes_it_unhealthy(root: Path, mode: str, make_watcher, replaced: bool) -> None:
    """inotify follows the renamed folder, so its emitter lives on: only the folder's identity tells."""
    w = make_watcher(root, mode)
    root.rename(root.with_name("in.bak"))
    if replaced:
        root.mkdir()
    assert wait_until(lambda: not w.healthy())
    expected = "was moved away or replaced" if replaced else "disappeared"
    assert expected in str(w.failure()), w.failure()


def test_dead_observer_thread_makes_it_unhealthy(root: Path, make_watcher) -> None:
    w = make_watcher(root)
    observer = w._observer
    assert observer is not None
    observer.stop()  # the real thread ends, as it would after a crash
    observer.join(TIMEOUT)
    assert wait_until(lambda: not w.healthy())
    assert "observer thread died" in str(w.failure())


class _Fatal(BaseException):
    """Not an Exception: escapes the callback guard, like a bug that kills the thread."""


def test_dead_ticker_makes_it_unhealthy(root: Path, make_watcher) -> None:
    def fatal(path: Path) -> None:
        raise _Fatal(path.name)

    w = make_watcher(root, on_ready=fatal)
    jpeg(root / "boom.jpg")
    assert wait_until(lambda: not w.healthy())
    assert "ticker thread died" in str(w.failure()) and "boom.jpg" in str(w.failure())


# -- inotify limits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "err"),
    [("_create_inotify_fd", errno.EMFILE), ("add_callback", errno.ENOSPC)],
)
def test_inotify_limit_falls_back_to_polling(
    root: Path, calls: Calls, make_watcher, monkeypatch: pytest.MonkeyPatch, target: str, err: int
) -> None:
    # Exhausting the real per-user kernel limits would break every other inotify user on the machine,
    # so the failure is injected exactly where watchdog raises it (its own error text included).
    from watchdog.observers.inotify_c import InotifyFD

    def refuse(*args: object, **kwargs: object) -> object:
        raise OSError(err, "inotify watch limit reached" if err == errno.ENOSPC else "inotify instance limit reached")

    monkeypatch.setattr(InotifyFD, target, refuse)
    w = make_watcher(root, start=False, polling=None)
    w.start()
    assert w.mode == "polling"
    assert "limit reached" in w.reason and "max_user_watches" in w.reason
    assert w.healthy()
    p = jpeg(root / "still-works.jpg")
    calls.wait_ready(p)
