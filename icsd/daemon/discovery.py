"""Where the daemon's files come from: one scan (batch) or the watcher (run), and the journal's unfinished rows.

Each found file is reported once as its path relative to the input folder (computed here, once), through a
callback that must be quick: the service puts a Ready event on its queue.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from icsd.daemon.inputs import printable, scan_relative
from icsd.daemon.journal import Journal
from icsd.errors import TransientError

if TYPE_CHECKING:
    from icsd.daemon.watcher import Watcher
    from icsd.settings import Settings

__all__ = ["requeue_unfinished", "scan_largest_first", "start_watcher"]

log = logging.getLogger("icsd")


def scan_largest_first(input_root: Path, *, exclude: Sequence[Path], ready: Callable[[str], None]) -> None:
    """Report every input below `input_root` now, largest first: the long jobs start early and small ones fill in
    at the end, instead of a big image finishing alone on one worker while the others sit idle (LPT)."""
    found = scan_relative(input_root, exclude=exclude, on_skip=_skipped)
    for rel, _size in sorted(found, key=lambda item: item[1], reverse=True):
        ready(rel)


def start_watcher(settings: Settings, input_root: Path, *, exclude: Sequence[Path],
                  ready: Callable[[str], None]) -> Watcher:
    """Watch `input_root` (after reporting what is there already); the caller stops the watcher."""
    from icsd.daemon.watcher import Watcher  # here: a batch never imports watchdog (~15 ms of start-up)

    watcher = Watcher(
        input_root,
        lambda path: ready(path.relative_to(input_root).as_posix()),
        stable_seconds=settings.stable_seconds,
        rescan_seconds=settings.rescan_seconds,
        polling=settings.polling,
        exclude=exclude,
        on_skip=_skipped,
    )
    watcher.start()
    log.info("watching %s with %s (%s)", input_root, watcher.mode, watcher.reason)
    return watcher


def requeue_unfinished(journal: Journal, input_root: Path, ready: Callable[[str], None]) -> None:
    """Report the files a previous run left pending or in progress; forget the rows of those that are gone."""
    for entry in journal.unfinished():
        if (input_root / entry.rel).exists():
            ready(entry.rel)
        else:
            with contextlib.suppress(TransientError):  # a stale row is harmless; dropped on a later start
                journal.forget(entry.rel)


def _skipped(path: Path, reason: str) -> None:
    log.warning("%s: %s", printable(path), reason)
