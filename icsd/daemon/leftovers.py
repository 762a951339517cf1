"""Named semaphores a killed icsd left in /dev/shm: recorded as they are made, removed on the next start.

The process pool (forkserver context) makes ~10 named POSIX semaphores (`/dev/shm/sem.mp-*`): its
workers open them by name, so they cannot be unlinked at once, and multiprocessing's resource
tracker unlinks them when the daemon exits. `kill -9` of the process group kills the tracker too,
and they stay until reboot. So each name is appended to `semaphores` in the state folder when it
is made, and the next icsd using that state folder (one at a time: the state lock) unlinks what is
listed there. Only names this state folder recorded are touched, never another program's. The
record needs no fsync: /dev/shm does not survive a power loss either.
"""

from __future__ import annotations

import contextlib
import os
from multiprocessing import resource_tracker
from pathlib import Path

__all__ = ["reclaim_semaphores"]

RECORD_NAME = "semaphores"

_record: Path | None = None  # where this process records its semaphores (set by reclaim_semaphores)
_register = resource_tracker.register


def reclaim_semaphores(state_dir: Path) -> int:
    """Unlink the semaphores an earlier icsd recorded in `state_dir`; record this process's from now on.

    Call once the state folder's lock is held. Returns how many were still there (the caller logs it).
    """
    global _record
    from _multiprocessing import sem_unlink  # POSIX only, as is the forkserver pool

    record = state_dir / RECORD_NAME
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for name in record.read_text(errors="replace").split():
            try:
                sem_unlink(name)
                removed += 1
            except (FileNotFoundError, OSError):
                pass  # unlinked by its own tracker at a clean exit
    record.write_text("")
    _record = record
    resource_tracker.register = _register_and_record
    return removed


def _register_and_record(name: str, rtype: str) -> None:
    if rtype == "semaphore" and _record is not None:
        with contextlib.suppress(OSError), open(_record, "a") as out:
            out.write(name + os.linesep)
    _register(name, rtype)
