"""What counts as an input image, and how to read one safely.

Shared by the watcher (daemon) and the one-shot folder scan (`icsd batch`): the name rules for
junk and temporary files, a tree walk that never follows links or enters hidden and excluded
folders, a read that refuses anything but a regular file, and network file-system detection.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from icsd.errors import InputError

__all__ = [
    "read_error",
    "IMAGE_SUFFIXES",
    "JUNK_NAMES",
    "JUNK_SUFFIXES",
    "REMOTE_FS_TYPES",
    "SourceChanged",
    "SourceFile",
    "is_candidate_name",
    "job_size",
    "printable",
    "read_regular",
    "read_source",
    "remote_fs_type",
    "scan_relative",
    "scan_tree",
    "skip_reason",
    "unusable_reason",
    "walk_candidates",
]

log = logging.getLogger("icsd.inputs")

# fmt: off
IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jp2", ".j2k",
})
# Lower-case names and endings of files that are never inputs: OS droppings and in-flight downloads/copies.
JUNK_NAMES = frozenset({"thumbs.db", ".ds_store", "desktop.ini"})
JUNK_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", "~")
# File systems where inotify only sees changes made through this kernel, so remote writers go unseen.
REMOTE_FS_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs",
    "davfs", "vboxsf", "virtiofs", "ocfs2", "gfs2", "fuse",  # and every "fuse.*" subtype
})
# fmt: on

_SKIP_REASONS = {
    stat.S_IFLNK: "symlink — skipped for safety (links are never followed)",
    stat.S_IFIFO: "named pipe (FIFO) — skipped: reading it could block forever",
    stat.S_IFSOCK: "socket — skipped for safety",
    stat.S_IFCHR: "device file — skipped for safety",
    stat.S_IFBLK: "device file — skipped for safety",
}


def is_candidate_name(name: str) -> bool:
    """True for a file name that may be an input image: not hidden, not junk, an image extension."""
    low = name.lower()
    if low.startswith(".") or low in JUNK_NAMES or low.endswith(JUNK_SUFFIXES):
        return False
    return os.path.splitext(low)[1] in IMAGE_SUFFIXES


def unusable_reason(rel: str, mode: int) -> str | None:
    """Why the candidate at `rel` (its path below the input root) is skipped, or None when icsd takes it.

    Links, pipes, sockets and devices are never opened; a name that is not valid UTF-8 (bytes from another
    system's encoding) cannot be recorded in the journal or named in an output, so it is reported instead.
    """
    if not stat.S_ISREG(mode):
        return skip_reason(mode)
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode turned the undecodable bytes into lone surrogates
        return "name is not valid UTF-8 — skipped: rename it to process it"
    return None


def printable(path: str | Path) -> str:
    """A path for a log line, its undecodable bytes shown as \\xNN (as `ls -b` would)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def read_regular(path: str | Path) -> tuple[bytes, os.stat_result]:
    """Read a file without following a final symlink or blocking on a FIFO swapped in since the scan."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{path} is a symlink; icsd never follows links in the input folder") from exc
        raise
    try:  # the raw descriptor, no file object: the daemon reads every input (measured ~0.05 ms per small file)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path} is not a regular file; icsd only reads regular files")
        # One read of one byte more than the size: a shorter answer is the end of the file (a regular file reads
        # short only there), so a small file costs one read, not a second one that returns nothing. A file that
        # grew since, or a read cut short before the size, is read on to its end.
        want = st.st_size + 1
        data = os.read(fd, want)
        if len(data) == want or len(data) < st.st_size:
            chunks = [data]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data, st
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """An input for a worker that shares the daemon's file system to read itself: the version the daemon claimed
    (size, mtime and inode from its lstat). The daemon then neither reads nor hashes it nor sends its bytes:
    ~0.1 ms of its CPU per small image (docs/scale.md)."""

    path: str
    size: int
    mtime_ns: int
    inode: int


class SourceChanged(Exception):
    """The input is no longer the version the daemon claimed (changed, replaced, gone, unreadable since): the
    daemon gives the claim back, counting no attempt, and admits the file again."""


def job_size(data: bytes | SourceFile) -> int:
    """The input's size in bytes, whether it travels as bytes or as a SourceFile (executors batch by size)."""
    return data.size if isinstance(data, SourceFile) else len(data)


def read_source(source: SourceFile) -> bytes:
    """The bytes of `source`, read as read_regular reads (no links, no FIFOs), if it is still that version."""
    try:
        data, st = read_regular(source.path)
    except (OSError, InputError) as exc:
        raise SourceChanged(f"{source.path}: {read_error(exc)}") from None
    if (st.st_size, st.st_mtime_ns, st.st_ino) != (source.size, source.mtime_ns, source.inode):
        raise SourceChanged(f"{source.path} changed after it was admitted")
    return data


def remote_fs_type(path: str | Path, mountinfo: str | None = None) -> str | None:
    """The file-system type of `path` if it is a network/FUSE one (see REMOTE_FS_TYPES), else None.

    `mountinfo` is the text of /proc/self/mountinfo (read when None); unknown platforms give None.
    """
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    target = os.path.realpath(path)
    best, best_type = "", ""
    for line in mountinfo.splitlines():
        # id parent major:minor root mount-point options [optional fields...] - fstype source super-options
        fields = line.split()
        sep = fields.index("-", 6) if "-" in fields[6:] else -1
        if sep < 0 or sep + 1 >= len(fields):
            continue
        point, fstype = _unescape_mount(fields[4]), fields[sep + 1]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the deepest (and, on ties, latest) mount wins
            best, best_type = point, fstype
    if best_type in REMOTE_FS_TYPES or best_type.startswith("fuse."):
        return best_type
    return None


def walk_candidates(top: str, *, root: str, excluded: Collection[str]) -> Iterator[tuple[str, os.stat_result]]:
    """Entries below `top` with a candidate name, with their lstat (links and FIFOs included, not followed).

    Hidden folders, excluded folders and symlinked folders are never entered.
    """
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.log(logging.WARNING if folder == root else logging.DEBUG, "cannot list %s: %s", folder, exc)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.path not in excluded:
                        stack.append(entry.path)
                elif is_candidate_name(entry.name):
                    yield entry.path, entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished while we looked


def scan_tree(
    root: Path, *, exclude: Collection[Path] = (), on_skip: Callable[[Path, str], None] | None = None
) -> Iterator[tuple[Path, int]]:
    """(path, size in bytes) of the regular candidate files below `root` (one-shot, no quiet period);
    other candidates are reported via on_skip."""
    top = os.path.abspath(root)
    for rel, size in scan_relative(root, exclude=exclude, on_skip=on_skip):
        yield Path(top, rel), size


def scan_relative(
    root: Path, *, exclude: Collection[Path] = (), on_skip: Callable[[Path, str], None] | None = None
) -> Iterator[tuple[str, int]]:
    """scan_tree's files as (POSIX path relative to `root`, size): strings only, the daemon's per-file form."""
    top = os.path.abspath(root)
    start = len(top) + 1
    excluded = {os.path.abspath(p) for p in exclude}
    for path, st in walk_candidates(top, root=top, excluded=excluded):
        rel = path[start:]
        reason = unusable_reason(rel, st.st_mode)
        if reason is None:
            yield rel, st.st_size
        elif on_skip is not None:
            on_skip(Path(path), reason)


def read_error(exc: OSError | InputError) -> str:
    """The one-line reason a candidate could not be read, as every reader of inputs reports it."""
    return exc.message if isinstance(exc, InputError) else f"cannot read: {exc.strerror or exc}"


def skip_reason(mode: int) -> str:
    return _SKIP_REASONS.get(stat.S_IFMT(mode), "not a regular file — skipped for safety")


def _unescape_mount(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
