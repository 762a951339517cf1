"""watchdog's inotify observer with an overflow fix-up that cannot feed itself.

When the kernel's event queue overflows (`fs.inotify.max_queued_events`, 16384 by default), watchdog
7 removes every watch below the root and adds them all again. Each removal queues an IN_IGNORED
event, so with more watched folders than the queue holds, the fix-up overflows the queue itself and
repeats for ever (measured: 20,200 folders, 97 % of a core, nothing delivered for minutes).

Here an overflow keeps every existing watch (an overflow loses events, not watches) and only adds
watches for folders that have none yet: those created while their events were dropped. Adding a
watch queues no event, so the fix-up costs one walk of the folders and nothing more. What the lost
events said about files is recovered by the caller's own scan (`on_overflow`), not here.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver
from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyEvent, InotifyFD

__all__ = ["OverflowMonitor", "SteadyInotifyObserver"]


class SteadyInotifyObserver(InotifyObserver):
    """An InotifyObserver whose queue-overflow handling keeps the watches and calls `on_overflow()`.

    `on_overflow` runs on the inotify reader thread, once per overflow, after new folders got their
    watches; it must be quick (note the overflow, let another thread rescan).
    """

    def __init__(self, on_overflow: Callable[[], None], *, timeout: float = DEFAULT_OBSERVER_TIMEOUT) -> None:
        self._inotify_fd = _QuietInotifyFD()
        self._inotify_fd.start()
        BaseObserver.__init__(
            self, _SteadyEmitter, timeout=timeout, inotify_fd=self._inotify_fd, on_overflow=on_overflow
        )

    @property
    def inotify_fd(self) -> InotifyFD:
        """The reader thread and its watch table (tests inspect the watch descriptors)."""
        return self._inotify_fd


class _QuietInotifyFD(InotifyFD):
    """InotifyFD without its WARNING per overflow: the watcher reports overflows, rate-limited, with a count."""

    def handle_event(self, event: InotifyEvent) -> None:
        if not event.is_queue_overflow:
            super().handle_event(event)
            return
        with self._lock:
            groups = {
                id(callback): callback for watch in self._watch_for_wd.values() for callback in watch.callbacks.values()
            }
        for callback in groups.values():
            callback.on_queue_overflow()


@dataclass
class _SteadyWatchGroup(InotifyWatchGroup):
    on_overflow: Callable[[], None] | None = field(default=None)

    def on_queue_overflow(self) -> None:
        """Keep the watches; watch the folders that appeared unseen; then tell the owner."""
        with self._lock:
            if not self.is_active:
                return
            self._move_event_grouper.discard_pending_events()  # a half of a move may be among the lost
            if self.is_recursive:
                self._watch_unwatched_folders()
        if self.on_overflow is not None:
            self.on_overflow()

    def _watch_unwatched_folders(self) -> None:
        """One walk; inotify_add_watch only for folders without a watch (adding one queues no event).

        os.scandir's entries tell folders and links apart without a syscall each. os.walk plus islink made two
        per folder, and on this thread each syscall hands the GIL to the busy coordinator and waits to get it
        back: with 20,000 folders that walk took ~30 s of a 60 s run (bench/manyfolders.py, py-spy)."""
        watched = self._active_callbacks_by_path
        todo = [self.path]
        while todo:
            try:
                with os.scandir(todo.pop()) as entries:
                    folders = [entry.path for entry in entries if entry.is_dir(follow_symlinks=self.follow_symlink)]
            except OSError:  # gone meanwhile, or unreadable: skipped, as os.walk does
                continue
            for path in folders:
                if path not in watched:
                    self._add_callback(path)
            todo.extend(folders)

    def _add_callback(self, path: bytes) -> None:
        # A folder this group already watches keeps its watch: re-adding it would only overwrite the same
        # callback (and watchdog warns about that); it happens when a folder's IN_CREATE arrives after the
        # overflow walk above already watched it.
        if path not in self._active_callbacks_by_path:
            super()._add_callback(path)


class _SteadyEmitter(InotifyEmitter):
    def __init__(self, *args: Any, on_overflow: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_overflow = on_overflow

    def on_thread_start(self) -> None:
        self._inotify = _SteadyWatchGroup(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
            on_overflow=self._on_overflow,
        )


class OverflowMonitor:
    """Counts queue overflows for the watcher: when to rescan, when to report, when the source is looping.

    Thread-safe: `note` runs on the inotify reader thread, the rest on the watcher's ticker. A rescan
    after an overflow waits at least `min_gap` seconds (and 5x the last rescan's duration) after the
    previous one, so a storm of overflows costs a bounded share of a core; a report (one WARNING
    line with a count) comes at most once per `report_seconds`; `storm_count` overflows within
    `storm_seconds` mean the event source burns CPU without delivering: the daemon should restart.
    """

    def __init__(
        self,
        *,
        report_seconds: float = 60.0,
        storm_count: int = 300,
        storm_seconds: float = 300.0,
        min_gap: float = 1.0,
    ) -> None:
        self.report_seconds = report_seconds
        self.storm_count = storm_count
        self.storm_seconds = storm_seconds
        self.min_gap = min_gap
        self.total = 0
        self._lock = threading.Lock()
        self._unreported = 0
        self._last_report = -math.inf
        self._recent: deque[float] = deque(maxlen=storm_count)
        self._rescan_wanted = False
        self._next_rescan = -math.inf

    def note(self, now: float) -> None:
        with self._lock:
            self.total += 1
            self._unreported += 1
            self._recent.append(now)
            self._rescan_wanted = True

    def take_rescan(self, now: float) -> bool:
        """True (once) when an overflow asks for a rescan and the rate bound allows one now."""
        with self._lock:
            if not self._rescan_wanted or now < self._next_rescan:
                return False
            self._rescan_wanted = False
            return True

    def rescanned(self, now: float, seconds: float) -> None:
        with self._lock:
            self._next_rescan = now + max(self.min_gap, 5 * seconds)

    def take_report(self, now: float) -> int:
        """Overflows to report now (0: nothing to say, or the last report is too recent)."""
        with self._lock:
            if not self._unreported or now - self._last_report < self.report_seconds:
                return 0
            count, self._unreported, self._last_report = self._unreported, 0, now
            return count

    def storm(self, now: float) -> str | None:
        """Why the event source counts as looping, or None."""
        with self._lock:
            recent = self._recent
            if len(recent) < (recent.maxlen or 0) or now - recent[0] > self.storm_seconds:
                return None
            return (f"inotify event source is looping: {len(recent)} queue overflows within "
                    f"{now - recent[0]:.0f} s ({self.total} in all)")
