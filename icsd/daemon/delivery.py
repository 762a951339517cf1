"""Putting results in place: outputs written durably, originals kept/deleted/archived or set aside.

Split from the coordinator so the file-placement rules read in one place; the scheduler decides *when*
(and holds results while storage is full), the service carries it out, this decides *how*.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from icsd import __version__
from icsd.daemon.identity import FileVersion
from icsd.daemon.output import (
    free_name,
    move_durably,
    safe_path,
    spool_path,
    sync_folders,
    write_atomic,
    write_failure,
)

__all__ = ["DISK_FULL", "Outputs", "StorageFull", "Task", "UnsafePathError"]

log = logging.getLogger("icsd")

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True, slots=True)
class Task:
    """One image in flight: the version that was read (digest included), where it is, where its output goes."""

    version: FileVersion
    path: str  # the input's absolute path
    output: str

    @property
    def rel(self) -> str:
        return self.version.rel

    def replaced(self) -> bool:
        """Is another version at the input path than the one read? Then it must not be deleted, archived or
        failed (a vanished file is not 'replaced')."""
        return self.version.replaced_at(self.path)


class UnsafePathError(ValueError):
    """A destination would land outside its root (e.g. through a symlink planted in the output folder)."""


class StorageFull(Exception):
    """An output could not be written for lack of space: hold the result, do not count an attempt."""


class Outputs:
    """The output, failed and archive folders, and what happens to an original after its job."""

    def __init__(self, output_root: Path, failed_root: Path, *, archive_root: Path | None, on_success: str) -> None:
        self.output_root = output_root
        self.failed_root = failed_root
        self.archive_root = archive_root
        self.on_success = on_success

    def write(self, task: Task, data: bytes, *, sync_folder: bool = True) -> Path:
        """Write the output (see output.write_atomic for `sync_folder`); returns its path. StorageFull: no space
        (hold it); UnsafePathError; other OSError."""
        try:
            return write_atomic(self.output_root, task.output, data, sync_folder=sync_folder)
        except ValueError as exc:
            raise UnsafePathError(str(exc)) from exc
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise StorageFull(f"output disk full writing {task.output} ({exc.strerror})") from exc
            raise

    def spool_for(self, task: Task) -> str | None:
        """A temporary path beside `task`'s output for a worker to write it to (see Executor.submit); None when
        the output path is unsafe (the write then fails it, as without a spool)."""
        try:
            return spool_path(safe_path(self.output_root, task.output))
        except ValueError:
            return None

    def place_spooled(self, task: Task, spool: str) -> str:
        """Rename the output a worker wrote to `spool` into place (its name durable once the folder is synced);
        returns its path."""
        target = os.path.join(os.path.dirname(spool), task.output.rpartition("/")[2])  # spool_for made it there
        os.replace(spool, target)
        return target

    @staticmethod
    def discard_spool(spool: str | None) -> None:
        """Remove what a job that produced no output may have left at `spool` (a worker killed mid-write)."""
        if spool is not None:
            with contextlib.suppress(OSError):
                os.unlink(spool)

    @staticmethod
    def sync_folders(outputs: Iterable[str | Path]) -> None:
        """Make the names of outputs written with sync_folder=False durable: one fsync per folder.
        StorageFull: no space; other OSError."""
        try:
            sync_folders(dict.fromkeys(os.path.dirname(output) for output in outputs))
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise StorageFull(f"output disk full syncing {exc.filename or 'the output folders'}") from exc
            raise

    def dispose_original(self, task: Task) -> None:
        """ON_SUCCESS: keep, delete or archive the original (its output is durable by now)."""
        policy = self.on_success
        if policy == "keep":
            return
        try:
            if policy == "delete":
                os.unlink(task.path)
            elif policy == "archive" and self.archive_root is not None:
                move_durably(Path(task.path), self.archive_root, free_name(self.archive_root, task.rel))
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
