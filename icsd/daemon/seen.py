"""Which file versions the watcher already offered, in 8 bytes per file instead of a dict entry.

The watcher must not offer an unchanged file again on every rescan, so it remembers each offered
version (path, size, mtime, inode). A dict of path -> key costs ~0.4 KiB per file, and with
ICSD_ON_SUCCESS=keep every original ever done stays in the folder: 0.5 GB after a million files.
Here a version is one 64-bit hash in a sorted array (plus a small set of recent additions merged in
batches), and a full rescan drops the versions no longer present, so memory follows the files that
are in the folder, at 8 bytes each, never the number ever seen. A hash collision (~1e-9 for 100,000
files) would hide one new version from the watcher; the journal still decides what is done.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left
from collections.abc import Iterable

__all__ = ["SeenVersions", "version_hash"]

_MERGE_AT = 4096  # recent additions/removals kept in sets before they are merged into the sorted array


def version_hash(path: str, key: tuple[int, int, int]) -> int:
    """The 64-bit identity of one version of one file (per process: str hashes are salted)."""
    return hash((path, key))


class SeenVersions:
    """A set of version hashes: sorted array('q') + small sets of recent adds and removals."""

    def __init__(self) -> None:
        self._sorted = array("q")
        self._added: set[int] = set()
        self._removed: set[int] = set()  # hashes still in _sorted that no longer count

    def __len__(self) -> int:
        return len(self._sorted) - len(self._removed) + len(self._added)

    def __contains__(self, h: int) -> bool:
        if h in self._added:
            return True
        return h not in self._removed and self._in_sorted(h)

    def add(self, h: int) -> None:
        if h in self._removed:
            self._removed.discard(h)
        elif not self._in_sorted(h):
            self._added.add(h)
            if len(self._added) >= _MERGE_AT:
                self._merge()

    def discard(self, h: int) -> None:
        if h in self._added:
            self._added.discard(h)
        elif self._in_sorted(h):
            self._removed.add(h)
            if len(self._removed) >= _MERGE_AT:
                self._merge()

    def retain(self, present: Iterable[int]) -> None:
        """Keep only the versions in `present` (a full rescan's findings), dropping those of vanished files."""
        self._merge()
        keep = bytearray(len(self._sorted))
        for h in present:
            i = bisect_left(self._sorted, h)
            if i < len(self._sorted) and self._sorted[i] == h:
                keep[i] = 1
        self._sorted = array("q", (h for h, k in zip(self._sorted, keep, strict=True) if k))

    def _in_sorted(self, h: int) -> bool:
        i = bisect_left(self._sorted, h)
        return i < len(self._sorted) and self._sorted[i] == h

    def _merge(self) -> None:
        if not (self._added or self._removed):
            return
        removed = self._removed
        kept = (h for h in self._sorted if h not in removed) if removed else iter(self._sorted)
        self._sorted = array("q", heapq.merge(kept, sorted(self._added)))
        self._added, self._removed = set(), set()
