"""Putting results in place: outputs written durably, originals kept/deleted/archived or set aside.

Split from the coordinator so the file-placement rules (and the disk-full gate that pauses work
while results cannot be saved) read in one place; the service decides *when*, this decides *how*.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from icsd import __version__
from icsd.daemon.output import free_name, move_durably, write_atomic, write_failure

__all__ = [
    "DISK_FULL",
    "Identity",
    "Outputs",
    "StorageFull",
    "StorageGate",
    "Task",
    "UnsafePathError",
    "identity_of",
    "replaced",
]

log = logging.getLogger("icsd")

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
Identity = tuple[int, int, int]  # (size, mtime_ns, inode) of the version of a file that was read


@dataclass(slots=True)
class Task:
    """One image in flight: where it came from, where it goes, and which version was read."""

    rel: str
    path: Path
    output: str
    digest: str
    submitted: float
    identity: Identity


def identity_of(st: os.stat_result) -> Identity:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def replaced(path: Path, identity: Identity) -> bool:
    """True when `path` now holds another version than `identity` (a vanished file is not 'replaced')."""
    try:
        return identity_of(os.lstat(path)) != identity
    except FileNotFoundError:
        return False


class UnsafePathError(ValueError):
    """A destination would land outside its root (e.g. through a symlink planted in the output folder)."""


class StorageFull(Exception):
    """An output could not be written for lack of space: hold the result, do not count an attempt."""


class StorageGate:
    """Whether results can be saved now (output folder and journal writable), logged once per episode.

    A full disk is the operator's problem, not the image's: work is held, not failed, and one ERROR line
    says so; one INFO line says when saving works again. In between, a probe every `probe_seconds`.
    """

    def __init__(self, probe_seconds: float) -> None:
        self.probe_seconds = probe_seconds
        self.error: str | None = None
        self._next_probe = 0.0

    def blocked(self) -> bool:
        """True while storage is known to be full and the next probe is not due."""
        return self.error is not None and time.monotonic() < self._next_probe

    def failed(self, reason: str) -> None:
        if self.error is None:
            log.error("cannot save results now: %s. Originals are kept; no new images are taken and finished "
                      "ones are held; retrying every %.0f s until space returns", reason, self.probe_seconds)
        else:
            log.debug("still cannot save results (%s); next try in %.0f s", reason, self.probe_seconds)
        self.error = reason
        self._next_probe = time.monotonic() + self.probe_seconds

    def probe_now(self) -> None:
        """Make the next check try storage at once (the last chance before shutdown)."""
        self._next_probe = 0.0

    def recovered(self) -> None:
        if self.error is not None:
            log.info("results can be saved again; resuming")
        self.error = None


class Outputs:
    """The output, failed and archive folders, and what happens to an original after its job."""

    def __init__(self, output_root: Path, failed_root: Path, *, archive_root: Path | None, on_success: str) -> None:
        self.output_root = output_root
        self.failed_root = failed_root
        self.archive_root = archive_root
        self.on_success = on_success

    def write(self, task: Task, data: bytes) -> None:
        """Write the output durably. StorageFull: no space (hold it); UnsafePathError; other OSError."""
        try:
            write_atomic(self.output_root, task.output, data)
        except ValueError as exc:
            raise UnsafePathError(str(exc)) from exc
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise StorageFull(f"output disk full writing {task.output} ({exc.strerror})") from exc
            raise

    def dispose_original(self, task: Task) -> None:
        """ON_SUCCESS: keep, delete or archive the original (its output is durable by now)."""
        policy = self.on_success
        if policy == "keep":
            return
        try:
            if policy == "delete":
                task.path.unlink()
            elif policy == "archive" and self.archive_root is not None:
                move_durably(task.path, self.archive_root, free_name(self.archive_root, task.rel))
        except (OSError, ValueError) as exc:
            log.warning("%s: output is done but the original could not be %sd: %s", task.rel, policy, exc)

    def set_aside(self, rel: str, path: Path, error: str, *, attempts: int) -> str:
        """Move a failed original to the failed folder with its NAME.error.json; says where it went.

        An earlier failed file of the same name stays: this one gets a numbered name (see output.free_name).
        """
        try:
            target = free_name(self.failed_root, rel)
            moved = move_durably(path, self.failed_root, target)
            write_failure(
                self.failed_root,
                target,
                {
                    "file": rel,
                    "error": error,
                    "attempts": attempts,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "icsd_version": __version__,
                },
            )
        except (OSError, ValueError) as exc:  # ValueError: a link in the failed folder leading out of it
            return f"could not be moved to the failed folder ({getattr(exc, 'strerror', None) or exc})"
        return f"moved to {moved}"
