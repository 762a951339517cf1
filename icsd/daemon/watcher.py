"""Find input images that are completely written and safe to read.

Longer than ~400 lines on purpose: the three sources share one lock-protected stability tracker.

Three sources feed one stability tracker: a startup scan, watchdog events (inotify, or polling on
network/FUSE file systems where inotify misses remote changes) and a periodic rescan that catches
lost events (also run, rate-bounded, after an inotify queue overflow: see inotify_source.py). A
file is offered once, after its (size, mtime, inode) stayed unchanged and no write event arrived
for `stable_seconds`; only a later change offers it again. Nothing here opens an input or follows
a link: entries are classified with lstat, and symlinks, FIFOs, sockets and devices are reported
through `on_skip` instead.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS
from watchdog.utils import UnsupportedLibcError

from icsd.daemon.identity import FileVersion
from icsd.daemon.inotify_source import OverflowMonitor
from icsd.daemon.inputs import is_candidate_name, remote_fs_type, unusable_reason, walk_candidates
from icsd.daemon.seen import SeenVersions, version_hash
from icsd.errors import SettingsError

__all__ = ["Watcher"]

log = logging.getLogger("icsd.watcher")


# What the watcher acts on. Also the inotify mask: without IN_OPEN and IN_CLOSE_NOWRITE, reads (the daemon's
# own read of every input, a rescan opening every folder) queue no event. With them, a rescan of 20,000
# folders queued ~80,000 events, overflowed the kernel queue and so asked for the next rescan (59 overflows in
# a 60-s run, bench/manyfolders.py), and each read cost the reader thread two events to parse and drop.
_WANTED_EVENTS = (
    FileCreatedEvent, DirCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent, DirMovedEvent,
    FileDeletedEvent,
)
_JOIN_SECONDS = 10.0


@dataclass(slots=True)
class _Candidate:
    key: FileVersion  # a change in its size, mtime or inode is a new version of the file
    since: float  # monotonic time of the last observed change or write event


class Watcher:
    """Calls `on_ready(path)` once per complete version of each input image below `root`.

    Callbacks run on the watcher's ticker thread and must be quick (put the path on a queue);
    if one raises, it is logged and the file is offered again on its next change or rescan.
    `polling`: True forces polling; None polls on network/FUSE file systems; False prefers inotify
    everywhere. Hitting the inotify watch/instance limit always falls back to polling.
    """

    def __init__(
        self,
        root: Path,
        on_ready: Callable[[Path], None],
        *,
        stable_seconds: float = 1.0,
        rescan_seconds: float = 300.0,
        polling: bool | None = None,
        exclude: Sequence[Path] = (),
        on_skip: Callable[[Path, str], None] | None = None,
        poll_seconds: float = 2.0,
    ) -> None:
        if stable_seconds < 0 or rescan_seconds <= 0 or poll_seconds <= 0:
            raise ValueError("stable_seconds must be >= 0; rescan_seconds and poll_seconds must be > 0")
        self.root = Path(os.path.abspath(root))
        self._root = str(self.root)
        self._prefix = self._root if self._root.endswith(os.sep) else self._root + os.sep
        # inotify does not follow a symlinked root (IN_DONT_FOLLOW), so watch its target and map back.
        self._watch_root = os.path.realpath(self._root) if os.path.islink(self._root) else self._root
        self._excluded = sorted(
            {self._to_root(os.path.abspath(p)) for p in exclude} | {self._to_root(os.path.realpath(p)) for p in exclude}
        )
        self._on_ready = on_ready
        self._on_skip = on_skip
        self._stable = stable_seconds
        self._rescan_seconds = rescan_seconds
        self._poll_seconds = poll_seconds
        self._tick_seconds = min(0.25, max(0.02, stable_seconds / 5))

        self._lock = threading.Lock()
        self._pending: dict[str, _Candidate] = {}
        self._seen = SeenVersions()  # hashes of the versions offered: 8 bytes per file present, see seen.py
        self.overflows = OverflowMonitor()
        self._skipped: set[str] = set()
        self._skips: list[tuple[str, str]] = []  # on_skip reports waiting for the ticker
        self._dirty_dirs: set[str] = set()

        self._stop = threading.Event()
        self._observer: BaseObserver | None = None
        self._ticker: threading.Thread | None = None
        self._ticker_error: str | None = None
        self._stopped = False
        self._root_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the folder being watched

        fstype = remote_fs_type(self._watch_root) if polling is None else None
        if polling:
            self._mode, self._reason = "polling", "polling forced by configuration"
        elif polling is False:
            self._mode, self._reason = "inotify", "inotify requested by configuration"
        elif fstype:
            self._mode, self._reason = "polling", f"input folder is on {fstype}; inotify would miss remote changes"
        else:
            self._mode, self._reason = "inotify", "local file system"

    # -- public ----------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """'inotify' or 'polling' (final once `start` returned)."""
        return self._mode

    @property
    def reason(self) -> str:
        """Why `mode` was chosen, for the startup log line."""
        return self._reason

    @property
    def waiting(self) -> int:
        """Files seen but not yet quiet for `stable_seconds`."""
        with self._lock:
            return len(self._pending)

    def start(self) -> None:
        """Watch, scan what is already there, then start the ticker. Scans the whole tree before returning."""
        if self._observer is not None or self._stopped:
            raise RuntimeError("a Watcher can be started only once")
        if not os.path.isdir(self._root):
            raise SettingsError(f"input folder {self._root} does not exist or is not a folder")
        root = os.stat(self._root)
        self._root_id = (root.st_dev, root.st_ino)
        self._observer = self._start_observer()
        self.rescan()  # after the watch is in place, so nothing created meanwhile is missed
        self._ticker = threading.Thread(target=self._run_ticker, name="icsd-watcher-ticker", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        """Stop and join the observer and ticker threads. Safe to call twice or before `start`."""
        self._stopped = True
        self._stop.set()
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if observer.is_alive():
                observer.join(_JOIN_SECONDS)
        if self._ticker is not None and self._ticker.is_alive() and self._ticker is not threading.current_thread():
            self._ticker.join(_JOIN_SECONDS)
            if self._ticker.is_alive():
                log.warning(
                    "watcher ticker did not stop within %.0f s (an on_ready callback is blocked)", _JOIN_SECONDS
                )

    def healthy(self) -> bool:
        """False once any watcher thread died (or it was stopped): the daemon should exit and be restarted."""
        return self.failure() is None

    def failure(self) -> str | None:
        """Why the watcher is not healthy, or None."""
        if self._stopped:
            return "watcher stopped"
        observer, ticker = self._observer, self._ticker
        if observer is None or ticker is None:
            return "watcher not started"
        if self._ticker_error is not None or not ticker.is_alive():
            return f"watcher ticker thread died: {self._ticker_error or 'unknown reason'}"
        if not observer.is_alive():
            return f"{self._mode} observer thread died"
        if not all(emitter.is_alive() for emitter in list(observer.emitters)):
            return self._root_failure() or f"{self._mode} event emitter stopped"
        return self._root_failure() or self.overflows.storm(time.monotonic())

    def rescan(self) -> None:
        """Walk the tree now: finds files whose events were lost; forgets files that are gone."""
        self._scan(self._root, prune=True)

    def forget(self, path: Path | str) -> None:
        """Drop what the watcher knows about `path`: if it is still there, the next rescan offers it again."""
        p = os.path.abspath(path)
        try:
            offered: int | None = _stat_hash(p, os.lstat(p))
        except OSError:
            offered = None  # gone: its version is dropped by the next full rescan
        with self._lock:
            self._pending.pop(p, None)
            if offered is not None:
                self._seen.discard(offered)
            self._skipped.discard(p)

    # -- events (observer thread) ----------------------------------------------------------------

    def _on_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = self._to_root(os.fsdecode(event.src_path))
        dest = self._to_root(os.fsdecode(event.dest_path)) if kind == "moved" else ""
        if event.is_directory:
            target = dest or src
            if kind in ("created", "moved") and self._inside(target):
                with self._lock:
                    self._dirty_dirs.add(target)  # walked by the ticker: catches files that raced the new watch
            return
        now = time.monotonic()
        for p in (src, dest):
            if p and self._inside(p) and is_candidate_name(os.path.basename(p)):
                self._note_path(p, now, reset=kind != "deleted")

    def _note_overflow(self) -> None:
        """inotify reader thread: events were lost. The ticker rescans (bounded) and reports (rate-limited)."""
        self.overflows.note(time.monotonic())

    # -- ticker thread ---------------------------------------------------------------------------

    def _after_overflows(self, now: float) -> None:
        """Recover what an overflow lost with our own walk of the tree; one WARNING a minute at most."""
        if self.overflows.take_rescan(now):
            self.rescan()
            self.overflows.rescanned(now, time.monotonic() - now)
        count = self.overflows.take_report(now)
        if count:
            log.warning(
                "inotify queue overflowed %d time%s (%d since start): events were lost, so icsd rescans the "
                "input folder (watches kept; nothing is missed). A larger fs.inotify.max_queued_events makes "
                "this rarer: see docs/scale.md", count, "" if count == 1 else "s", self.overflows.total)

    def _run_ticker(self) -> None:
        try:
            next_rescan = time.monotonic() + self._rescan_seconds
            while not self._stop.wait(self._tick_seconds):
                if time.monotonic() >= next_rescan:
                    self.rescan()
                    next_rescan = time.monotonic() + self._rescan_seconds
                self._after_overflows(time.monotonic())
                self._tick(time.monotonic())
        except BaseException as exc:  # recorded for healthy(); the daemon exits and systemd restarts it
            self._ticker_error = repr(exc)
            log.critical("watcher ticker thread died: %r", exc, exc_info=not isinstance(exc, SystemExit))

    def _tick(self, now: float) -> None:
        with self._lock:
            dirs, self._dirty_dirs = self._dirty_dirs, set()
        for d in sorted(dirs):
            self._scan(d, prune=False)
        with self._lock:
            due = [(p, c.key) for p, c in self._pending.items() if now - c.since >= self._stable]
        ready: list[tuple[str, FileVersion]] = []
        for p, key in due:
            try:
                st: os.stat_result | None = os.lstat(p)
            except FileNotFoundError:
                st = None
            except OSError:
                continue  # e.g. a network hiccup: try again next tick
            with self._lock:
                cand = self._pending.get(p)
                if cand is None or cand.key != key:
                    continue  # an event changed it meanwhile
                if st is None:
                    self._drop(p)
                elif stat.S_ISREG(st.st_mode) and key.same_stat(st):
                    del self._pending[p]
                    self._seen.add(_version_hash(p, key))
                    ready.append((p, key))
                else:
                    self._note_stat(p, st, now, reset=False)  # changed since last look: quiet period restarts
        with self._lock:
            skips, self._skips = self._skips, []
        for p, reason in skips:
            if self._on_skip is not None:
                self._call(self._on_skip, Path(p), reason)
        for p, key in ready:
            if not self._call(self._on_ready, Path(p)):
                with self._lock:
                    self._seen.discard(_version_hash(p, key))  # offer again on the next change or rescan

    def _call(self, fn: Callable[..., None], *args: object) -> bool:
        try:
            fn(*args)
        except Exception:
            log.exception("watcher callback %s%r failed", getattr(fn, "__name__", fn), args)
            return False
        return True

    # -- state (under self._lock unless noted) ---------------------------------------------------

    def _note_path(self, p: str, now: float, *, reset: bool) -> None:
        """lstat `p` (no lock held) and record what it is."""
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            with self._lock:
                self._drop(p)
            return
        except OSError as exc:
            log.debug("cannot lstat %s: %s", p, exc)
            return
        with self._lock:
            self._note_stat(p, st, now, reset=reset)

    def _note_stat(self, p: str, st: os.stat_result, now: float, *, reset: bool) -> None:
        rel = p[len(self._prefix) :]
        reason = unusable_reason(rel, st.st_mode)
        if reason is not None:
            self._pending.pop(p, None)
            if not stat.S_ISDIR(st.st_mode) and p not in self._skipped:
                self._skipped.add(p)
                self._skips.append((p, reason))
            return
        self._skipped.discard(p)  # a regular file now: if it turns into a link again, report again
        key = FileVersion.of(rel, st)
        cand = self._pending.get(p)
        if cand is not None:
            if cand.key != key:
                cand.key, cand.since = key, now
            elif reset:
                cand.since = max(cand.since, now)
        elif _version_hash(p, key) not in self._seen:
            self._pending[p] = _Candidate(key, now)

    def _drop(self, p: str) -> None:
        """Forget a file that is gone (its offered version is dropped by the next full rescan)."""
        self._pending.pop(p, None)
        self._skipped.discard(p)

    # -- scanning (any thread; takes the lock per entry) -----------------------------------------

    def _scan(self, top: str, *, prune: bool) -> None:
        try:
            if not stat.S_ISDIR(os.lstat(top).st_mode) and top != self._root:
                return  # a symlinked folder: never walked
        except OSError:
            return
        now = time.monotonic()
        versions = array("q")  # what is there now, 8 bytes a file: the offered versions are cut down to it
        for p, st in self._walk(top):
            versions.append(_stat_hash(p, st))
            with self._lock:
                self._note_stat(p, st, now, reset=False)
        if prune:
            self._prune(top, versions)

    def _walk(self, top: str) -> Iterator[tuple[str, os.stat_result]]:
        """Candidate entries below `top` with their lstat; skips hidden and excluded folders and links."""
        return walk_candidates(top, root=self._root, excluded=self._excluded)

    def _prune(self, top: str, versions: array[int]) -> None:
        """Forget offered versions the walk of `top` (the root) did not find, and pending or skipped files that
        are gone (looked up one by one: there are few, and a set of every path found would cost ~100 bytes a
        file for the length of the walk)."""
        under = top.rstrip(os.sep) + os.sep
        with self._lock:
            self._seen.retain(versions)
            stale = [p for p in self._pending.keys() | self._skipped if p.startswith(under)]
        gone = [p for p in stale if not os.path.lexists(p)]
        with self._lock:
            for p in gone:
                if not os.path.lexists(p):
                    self._drop(p)

    # -- observer --------------------------------------------------------------------------------

    def _start_observer(self) -> BaseObserver:
        handler = _Handler(self._on_event)
        if self._mode == "inotify":
            try:
                return _schedule_and_start(_inotify_observer(self._note_overflow), handler, self._watch_root)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EMFILE):
                    raise SettingsError(f"cannot watch input folder {self._root}: {exc}") from exc
                self._mode = "polling"
                self._reason = (
                    f"{exc.strerror or exc}: polling instead (raise fs.inotify.max_user_watches / max_user_instances)"
                )
            except ImportError as exc:
                self._mode, self._reason = "polling", f"inotify is not available here ({exc})"
        observer = PollingObserverVFS(os.lstat, self._listdir, polling_interval=self._poll_seconds)
        try:
            return _schedule_and_start(observer, handler, self._watch_root)
        except OSError as exc:
            raise SettingsError(f"cannot watch input folder {self._root}: {exc}") from exc

    def _listdir(self, path: str | None) -> Iterator[os.DirEntry[str]]:
        """scandir for the polling snapshot, minus hidden entries and excluded folders."""
        with os.scandir(path) as it:
            for entry in it:
                if not entry.name.startswith(".") and self._to_root(entry.path) not in self._excluded:
                    yield entry

    # -- paths -----------------------------------------------------------------------------------

    def _root_failure(self) -> str | None:
        """Is the path still the folder being watched? inotify follows a renamed folder, so after
        `mv in in.bak; mkdir in` the events would come from in.bak and nothing would watch the new `in`."""
        try:
            root = os.stat(self._root)
        except (FileNotFoundError, NotADirectoryError):
            return f"input folder {self._root} disappeared"
        except OSError:
            return None  # e.g. a network file system's hiccup: not a verdict; the next check looks again
        if (root.st_dev, root.st_ino) != self._root_id:
            return f"input folder {self._root} was moved away or replaced: it is no longer the folder being watched"
        return None

    def _to_root(self, p: str) -> str:
        """Map a path under the watched (resolved) root back onto the root as the caller spelled it."""
        w = self._watch_root
        if w != self._root and (p == w or p.startswith(w + os.sep)):
            return self._root + p[len(w) :]
        return p

    def _inside(self, p: str) -> bool:
        """Below root, not in a hidden folder, not in an excluded folder."""
        if not p.startswith(self._prefix):
            return False
        if any(part.startswith(".") for part in p[len(self._prefix) :].split(os.sep)):
            return False
        return not any(p == ex or p.startswith(ex + os.sep) for ex in self._excluded)


class _Handler(FileSystemEventHandler):
    """Forwards every event; an exception here would kill watchdog's observer thread, so none escapes."""

    def __init__(self, callback: Callable[[FileSystemEvent], None]) -> None:
        self._callback = callback

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._callback(event)
        except Exception:
            log.exception("watcher could not handle %r", event)


def _inotify_observer(on_overflow: Callable[[], None]) -> BaseObserver:
    try:
        from icsd.daemon.inotify_source import SteadyInotifyObserver
    except (ImportError, UnsupportedLibcError) as exc:  # not Linux, or a libc without inotify
        raise ImportError(str(exc)) from exc
    return SteadyInotifyObserver(on_overflow)


def _schedule_and_start(observer: BaseObserver, handler: _Handler, path: str) -> BaseObserver:
    try:
        observer.schedule(handler, path, recursive=True, event_filter=list(_WANTED_EVENTS))
        observer.start()
    except BaseException:
        observer.stop()  # releases the inotify fd and its reader thread
        raise
    return observer


def _stat_hash(p: str, st: os.stat_result) -> int:
    """The offered-version hash of the file `st` describes (seen.version_hash)."""
    return version_hash(p, (st.st_size, st.st_mtime_ns, st.st_ino))


def _version_hash(p: str, version: FileVersion) -> int:
    return version_hash(p, (version.size, version.mtime_ns, version.inode))
