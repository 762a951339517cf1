"""Durable, atomic file placement: outputs, failed originals and archived originals.

A consumer of the output folder must never see a partial file and a crash must never lose one:
write under a temporary name in the destination folder, fsync the file, rename it into place,
fsync the folder. Every destination path is checked to stay inside its root.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath

from icsd.errors import OutputError

__all__ = [
    "MAX_NUMBERED",
    "NAME_MAX",
    "TEMP_PREFIX",
    "begin_spool",
    "finish_spool",
    "free_name",
    "make_folders",
    "move_durably",
    "numbered_name",
    "output_name",
    "output_names",
    "remove_stray_temps",
    "safe_join",
    "safe_path",
    "sidecar_name",
    "spool_path",
    "sync_folders",
    "write_atomic",
    "write_failure",
    "write_named",
]

TEMP_PREFIX = ".icsd-tmp-"
NAME_MAX = 255  # bytes in one path component on Linux file systems (ext4, xfs, btrfs, tmpfs)
MAX_NUMBERED = 10_000  # numbered names free_name tries before giving up (a bound, never a loop)
_SIDECAR = ".error.json"


def output_name(rel: str) -> str:
    """`photos/a.jpg` -> `photos/a.png`: the output mirrors the input's relative path.

    PurePosixPath(rel).with_suffix(".png") in string operations (the daemon asks twice per file): a name's
    suffix starts at its last dot, unless that dot is its first or last character."""
    folder, slash, name = rel.rpartition("/")
    dot = name.rfind(".")
    stem = name[:dot] if 0 < dot < len(name) - 1 else name
    return f"{folder}{slash}{stem}.png"


def output_names(rel: str) -> Iterator[str]:
    """The output names `rel` may take, best first: `a.png`, then `a.jpg.png`, `a.jpg.2.png`, `a.jpg.3.png` ...

    The caller takes the first one no other input owns, so two inputs never share an output, however their
    names chain (`a.bmp`, `a.png` and `a.png.png` in one folder). Every name fits NAME_MAX.
    """
    yield output_name(rel)
    yield _fitted(rel, ".png")
    for number in itertools.count(2):
        yield _fitted(rel, f".{number}.png")


def numbered_name(rel: str, number: int) -> str:
    """`a/IMG_1.jpg`, 2 -> `a/IMG_1.2.jpg`: another name for the same file.

    Shortened so that its failure report (sidecar_name) fits NAME_MAX too with the number in it: cut from
    the report's name instead, the number vanished and every numbered name shared one report.
    """
    path = PurePosixPath(rel)
    return _fitted(str(path.with_suffix("")), f".{number}{path.suffix}{_SIDECAR}")[: -len(_SIDECAR)]


def free_name(root: Path, rel: str) -> str:
    """`rel`, or the first numbered name (see numbered_name) under which `root` holds nothing yet.

    Moving a file there never replaces another: a failed or archived original with a reused camera name
    (IMG_0001.JPG) is kept beside the earlier one. Only icsd writes these folders, so a check is enough.
    Raises FileExistsError if MAX_NUMBERED names are all in use.
    """
    candidates = itertools.chain([rel], (numbered_name(rel, n) for n in range(2, MAX_NUMBERED + 1)))
    for name in candidates:
        if not _taken(root, name):
            return name
    raise FileExistsError(errno.EEXIST, f"{MAX_NUMBERED} files named like {rel} already", str(root / rel))


def sidecar_name(rel: str) -> str:
    """`a/b.jpg` -> `a/b.jpg.error.json`, the failure report beside a failed original (within NAME_MAX)."""
    return _fitted(rel, _SIDECAR)


def safe_join(root: Path, rel: str) -> Path:
    """safe_path as a Path."""
    return Path(safe_path(root, rel))


def safe_path(root: Path, rel: str) -> str:
    """root/rel, refusing anything that would land outside root (absolute paths, `..`, a link planted below root
    leading out of it, a root replaced by such a link).

    The daemon calls this for every output, so links are looked for with one lstat per component (root, its
    folders below it, the name: ~3 calls) and a full resolve happens only where a link is found; an existing
    link that stays inside root is allowed, as it would be by resolving the whole path."""
    parts = [part for part in rel.split("/") if part not in ("", ".")]
    if not parts or rel.startswith("/") or ".." in parts:
        raise ValueError(f"unsafe relative path {rel!r}")
    path = os.path.join(root, *parts)
    inside = _resolved(root)  # the root's real path when first used: a root replaced later is caught below
    prefix = os.fspath(root)
    for part in ("", *parts):
        prefix = os.path.join(prefix, part) if part else prefix
        try:
            is_link = stat.S_ISLNK(os.lstat(prefix).st_mode)
        except OSError:  # nothing there yet (or not a folder): nothing below it can be a link
            break
        if is_link:
            real = os.path.realpath(path)
            if real != inside and not real.startswith(inside.rstrip("/") + "/"):
                raise ValueError(f"path {rel!r} escapes {root}")
            break
    return path


@functools.lru_cache(maxsize=16)
def _resolved(root: Path) -> str:
    """os.path.realpath(root), once per root: ~4 lstat calls per output saved. Safe if the root is later replaced
    by a link: paths resolved through the new link no longer fall under the old real root, and are refused."""
    return os.path.realpath(root)


def write_atomic(root: Path, rel: str, data: bytes, *, replace: bool = True, sync_folder: bool = True) -> Path:
    """Write root/rel atomically and durably; on any error nothing is left behind.

    `replace=False`: FileExistsError if anything is at root/rel, even one created while we wrote.
    `sync_folder=False`: the file's data is durable but its name is not until the caller passes the folder
    to `sync_folders` (a group of outputs then costs one folder fsync, not one each).
    """
    target = safe_join(root, rel)
    _install(target, lambda fd: _write_all(fd, data), replace=replace, sync_folder=sync_folder)
    return target


def spool_path(target: str) -> str:
    """A fresh temporary name beside `target` (64 random bits; created with O_EXCL, so never shared): where
    a worker writes its output (begin_spool), and where every atomic write fills its file first."""
    return os.path.join(os.path.dirname(target), f"{TEMP_PREFIX}{os.urandom(8).hex()}")


def begin_spool(path: str, data: bytes) -> int:
    """What a worker on this machine does with its output, so the daemon only renames it into place: create `path`
    (it must not exist) and write `data`; returns its open descriptor, not yet synced: pass it to finish_spool (a
    worker does that beside its next image, see executor.run_jobs). On any error nothing is left behind. The first
    output of a new folder makes the folder (see make_folders): with one image per folder, the daemon would
    otherwise write every output itself, one fsync after another."""
    def fill(fd: int) -> None:
        _write_all(fd, data)

    try:
        return _create_filled(path, fill)
    except FileNotFoundError:
        make_folders(os.path.dirname(path))
        return _create_filled(path, fill)


def make_folders(folder: str) -> None:
    """Create `folder` and its missing parents, each new name durable (its parent fsynced once it is in it)."""
    parent = os.path.dirname(folder)
    if parent != folder and not os.path.isdir(parent):
        make_folders(parent)
    try:
        os.mkdir(folder)
    except FileExistsError:
        return
    _fsync_dir(parent)


def finish_spool(path: str, fd: int) -> None:
    """begin_spool's second half: fsync and close `fd` (begin_spool's); on error `path` is removed."""
    _sync_closed(path, fd)


def sync_folders(folders: Iterable[str | Path]) -> None:
    """fsync each folder once: the names renamed into them (write_atomic with sync_folder=False) are durable."""
    for folder in folders:
        _fsync_dir(folder)


def write_named(path: Path, data: bytes, *, example: str) -> None:
    """Write a file the user named (`-o PATH`) atomically; OutputError (exit 73) naming it if that cannot be.
    `example`: a file name to suggest when PATH is a folder."""
    if path.is_dir():
        raise OutputError(f"-o {path}: is a folder; give a file name such as {path / example}")
    try:
        write_atomic(path.parent.resolve(), path.name, data)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose another path with -o") from None


def move_durably(source: Path, root: Path, rel: str) -> Path:
    """Move `source` to root/rel; across file systems copy, fsync and rename before unlinking."""
    target = safe_join(root, rel)
    make_folders(str(target.parent))
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise

        def copy(fd: int) -> None:
            with open(source, "rb") as original:
                while chunk := original.read(1 << 20):
                    _write_all(fd, chunk)

        _install(target, copy, like=source)
        os.unlink(source)
    else:
        _fsync_dir(target.parent)
    _fsync_dir(source.parent)
    return target


def write_failure(root: Path, rel: str, details: dict[str, object]) -> Path:
    """Sidecar `NAME.error.json` beside a failed original, so the reason travels with the file."""
    payload = json.dumps(details, indent=2, sort_keys=True, default=str).encode()
    return write_atomic(root, sidecar_name(rel), payload + b"\n")


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


def _fitted(rel: str, ending: str) -> str:
    """rel + ending, shortening the stem of rel's last component (at a character boundary, its suffix kept)
    so that the component stays within NAME_MAX: `x{251}.jpg` + `.png` -> `x{247}.jpg.png`."""
    folder, _, name = rel.rpartition("/")
    suffix = PurePosixPath(name).suffix
    stem = name[: len(name) - len(suffix)]
    room = NAME_MAX - len(os.fsencode(suffix + ending))
    encoded = os.fsencode(stem)
    if len(encoded) > room:
        stem = encoded[: max(room, 1)].decode("utf-8", "ignore")  # "ignore" drops a character cut in half
    return f"{folder}/{stem}{suffix}{ending}" if folder else f"{stem}{suffix}{ending}"


def _taken(root: Path, rel: str) -> bool:
    """Is there anything (file, folder, link, even a dangling one) at root/rel, or its failure report?"""
    return os.path.lexists(root / rel) or os.path.lexists(root / sidecar_name(rel))


def _install(
    target: Path, fill: Callable[[int], object], *, like: Path | None = None, replace: bool = True,
    sync_folder: bool = True,
) -> None:
    """Fill a temporary file beside `target` (`fill` gets its descriptor), fsync it, rename it over `target`,
    fsync the folder (unless `sync_folder` is False: then the caller does, see sync_folders).

    `like`: copy that file's mode and times (a moved original keeps them); otherwise 0644 less umask.
    `replace=False`: hard-link instead of rename, which fails with FileExistsError rather than replace.
    """
    temp = spool_path(str(target))
    mode = 0o600 if like is not None else 0o644  # a moved original gets its own mode from copystat below
    try:
        _fill_new(temp, fill, mode)
    except FileNotFoundError:  # the folder's first file (mkdir first on every file: 2 syscalls more each)
        make_folders(str(target.parent))
        _fill_new(temp, fill, mode)
    try:
        if like is not None:
            shutil.copystat(like, temp)
        if replace:
            os.replace(temp, target)
        else:
            _link_new(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if sync_folder:
        _fsync_dir(target.parent)


def _fill_new(path: str, fill: Callable[[int], object], mode: int = 0o644) -> None:
    """Create `path` exclusively (never through a link) with `mode` less the umask, let `fill` write to its
    descriptor, fsync it (data and mode), close it; on any error remove it."""
    _sync_closed(path, _create_filled(path, fill, mode))


def _create_filled(path: str, fill: Callable[[int], object], mode: int = 0o644) -> int:
    """_fill_new up to the fsync: the open descriptor. A raw descriptor, not a file object: ~0.1 ms less per
    small output (measured, docs/scale.md)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        fill(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return fd


def _sync_closed(path: str, fd: int) -> None:
    """fsync and close `fd`, the descriptor of `path`; on any error remove `path`."""
    try:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _write_all(fd: int, data: bytes) -> None:
    """os.write until all of `data` is written (a write may be short, e.g. when a signal arrives)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _link_new(temp: str, target: Path) -> None:
    """Put `temp` at `target` only if nothing is there: link(2) is atomic and never replaces."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise
    except OSError as exc:  # file systems without hard links (FAT, some FUSE): check, then rename
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.replace(temp, target)
        return
    os.unlink(temp)


def _fsync_dir(folder: str | Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
