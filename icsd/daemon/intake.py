"""Admitting one input file: does it need work, and if so, which version, and where does its output go.

In order: a metadata check (same size and mtime as a version already done or failed: skip without
reading), a safe read (no links, no FIFOs), the content digest, the journal's claim (the one
transaction that decides whether this version is work, and counts the attempt), and the choice of
an output name no other input owns. A file the journal does not know yet is not read here when the
workers can read it (`read=False`): its claim is the version its lstat describes, and the worker reads
and hashes it (inputs.SourceFile). The scheduler decides *when* a file is admitted; this decides
*whether* and *as what*; the service submits the job.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from icsd.daemon.delivery import Task
from icsd.daemon.identity import FileVersion, content_digest
from icsd.daemon.inputs import SourceFile, read_error, read_regular
from icsd.daemon.journal import Journal, Known, OwnerOf
from icsd.daemon.output import output_name, output_names
from icsd.errors import InputError

__all__ = ["Admission", "Admitted", "Intake", "Skipped", "Unreadable"]

log = logging.getLogger("icsd")


@dataclass(frozen=True, slots=True)
class Admitted:
    """Work to do: the claimed version (its output name reserved) and its bytes, or the file for the worker to read."""

    task: Task
    data: bytes | SourceFile


@dataclass(frozen=True, slots=True)
class Skipped:
    """No work: finished already, vanished, not a regular file, or the same content as a settled version."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The file could not be read now (e.g. permissions, I/O error): worth another attempt later."""

    error: str


Admission = Admitted | Skipped | Unreadable


class Intake:
    """Admits files below `input_root` against `journal`; outputs go below `output_root`.

    `fingerprint`: the current settings' (CompressParams.fingerprint); a version done with other settings is
    admitted again, and its new output replaces the old one under the same name.
    """

    def __init__(
        self, journal: Journal, *, input_root: Path, output_root: Path, fingerprint: str | None = None
    ) -> None:
        self.journal = journal
        self.input_root = input_root
        self.output_root = output_root
        self.fingerprint = fingerprint
        self._input = os.fspath(input_root)
        self._folders = (os.fspath(output_root), self._input)  # for isdir per candidate, no Path

    def admit(self, rel: str, *, read: bool = True) -> Admission:
        """Decide about the file at `rel` now. A journal that cannot be written raises TransientError. `read=False`:
        a file the journal does not know is claimed unread, for the worker to read (see the module's docstring)."""
        path = os.path.join(self._input, rel)  # a string: built for every file (pathlib costs ~10x more)
        known = self.journal.known(rel)  # one lookup for the metadata check and the claim
        st = self._lstat(path)
        if st is not None and self._settled_by_metadata(rel, st, known):
            return Skipped("finished already (same size and mtime)")
        if not read and known is None and st is not None and stat.S_ISREG(st.st_mode):
            version = FileVersion.of(rel, st)
            data: bytes | SourceFile = SourceFile(path, st.st_size, st.st_mtime_ns, st.st_ino)
        else:
            try:
                data, info = read_regular(path)
            except FileNotFoundError:
                log.debug("%s vanished before it was read", rel)
                return Skipped("vanished before it was read")
            except InputError as exc:
                log.warning("%s: %s", rel, exc.message)
                return Skipped(exc.message)
            except OSError as exc:
                return Unreadable(read_error(exc))
            version = FileVersion.of(rel, info, content_digest(data))
        output = self.journal.claim_output(version, self.fingerprint, functools.partial(self.free_output, rel),
                                           known=known)
        if output is None:
            return Skipped("same content as a version already done or failed")
        return Admitted(Task(version, path, output), data)

    def free_output(self, rel: str, owner_of: OwnerOf, previous: str | None) -> str:
        """The first of `rel`'s output names (output.output_names) that no other input owns (`owner_of`) and no
        folder occupies, in the output or the input (whose folders the output mirrors): an output is never
        shared, so never silently overwritten, however input names collide. `previous`: the output `rel`
        already had (the warning about a taken name is said once, not on every retry)."""
        natural, holder = output_name(rel), None
        for output in output_names(rel):
            owner = owner_of(output)
            folder = any(os.path.isdir(os.path.join(root, output)) for root in self._folders)
            if (owner is None or owner == rel) and not folder:
                break
            holder = holder or (owner if owner not in (None, rel) else "a folder")  # who has the natural name
        if output != natural and previous != output:
            log.warning("%s: %s already belongs to %s; writing %s", rel, natural, holder, output)
        return output

    @staticmethod
    def _lstat(path: str) -> os.stat_result | None:
        try:
            return os.lstat(path)
        except OSError:
            return None  # the read reports it

    def _settled_by_metadata(self, rel: str, st: os.stat_result, known: Known | None) -> bool:
        """Finished already (same size and mtime)? Decided before reading, so a restart with ON_SUCCESS=keep
        does not reread every original, and an unreadable finished file is not retried (and redone)."""
        return stat.S_ISREG(st.st_mode) and self.journal.is_settled(rel, st.st_size, st.st_mtime_ns, self.fingerprint,
                                                                    known=known)
