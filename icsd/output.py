"""Durable, atomic file placement: outputs, failed originals and archived originals.

A consumer of the output folder must never see a partial file and a crash must never lose one:
write under a temporary name in the destination folder, fsync the file, rename it into place,
fsync the folder. Every destination path is checked to stay inside its root.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

__all__ = [
    "TEMP_PREFIX",
    "alternate_output_name",
    "move_durably",
    "output_name",
    "remove_stray_temps",
    "safe_join",
    "write_atomic",
    "write_failure",
]

TEMP_PREFIX = ".icsd-tmp-"


def output_name(rel: str) -> str:
    """`photos/a.jpg` -> `photos/a.png`: the output mirrors the input's relative path."""
    return str(PurePosixPath(rel).with_suffix(".png"))


def alternate_output_name(rel: str) -> str:
    """`photos/a.jpg` -> `photos/a.jpg.png`: used when `a.png` already belongs to another input."""
    return f"{rel}.png"


def safe_join(root: Path, rel: str) -> Path:
    """root/rel, refusing anything that would land outside root (absolute paths, `..`)."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or any(part in ("..", "") for part in parts):
        raise ValueError(f"unsafe relative path {rel!r}")
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"path {rel!r} escapes {root}")
    return path


def write_atomic(root: Path, rel: str, data: bytes) -> Path:
    """Write root/rel atomically and durably; on any error nothing is left behind."""
    target = safe_join(root, rel)
    _install(target, lambda handle: handle.write(data))
    return target


def move_durably(source: Path, root: Path, rel: str) -> Path:
    """Move `source` to root/rel; across file systems copy, fsync and rename before unlinking."""
    target = safe_join(root, rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise

        def copy(handle: BinaryIO) -> None:
            with open(source, "rb") as original:
                shutil.copyfileobj(original, handle, 1 << 20)

        _install(target, copy, like=source)
        os.unlink(source)
    else:
        _fsync_dir(target.parent)
    _fsync_dir(source.parent)
    return target


def write_failure(root: Path, rel: str, details: dict[str, object]) -> Path:
    """Sidecar `NAME.error.json` beside a failed original, so the reason travels with the file."""
    payload = json.dumps(details, indent=2, sort_keys=True, default=str).encode()
    return write_atomic(root, f"{rel}.error.json", payload + b"\n")


def remove_stray_temps(root: Path) -> int:
    """Delete temporary files a crash left behind under root; returns how many."""
    removed = 0
    if not root.is_dir():
        return removed
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(TEMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed


def _install(target: Path, fill: Callable[[BinaryIO], object], *, like: Path | None = None) -> None:
    """Fill a temporary file beside `target`, fsync it, rename it over `target`, fsync the folder.

    `like`: copy that file's mode and times (a moved original keeps them); otherwise 0644 less umask.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if like is not None:
            shutil.copystat(like, temp)
        else:
            os.chmod(temp, 0o644 & ~_UMASK)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_umask() -> int:
    """The process umask without os.umask's set-and-restore race (other threads create files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


_UMASK = _read_umask()
