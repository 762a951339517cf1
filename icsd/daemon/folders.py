"""The daemon's folders: created once at start-up, and locked so that one icsd at a time uses them."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import BinaryIO

from icsd.errors import OutputError, TransientError
from icsd.settings import Settings

__all__ = ["create_folders", "hold_lock"]


def create_folders(settings: Settings, *, watch: bool) -> None:
    """Create the drop folder (watch mode only: a batch over a missing folder is a typo) and the folders icsd
    writes to. A path that cannot be a folder (a file, /proc, no permission) is one line naming its setting
    (OutputError, exit 73), not an OSError traceback."""
    wanted: dict[str, Path] = {"ICSD_INPUT_DIR": settings.input_dir} if watch else {}
    wanted |= {name: folder for name, folder in settings.folders().items()
               if name != "ICSD_ARCHIVE_DIR" or settings.on_success == "archive"}
    for name, folder in wanted.items():
        try:
            if folder.exists() and not folder.is_dir():
                raise OutputError(f"{name} {folder} exists and is not a folder: choose another path")
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create {name} {folder}: {exc.strerror or exc}; choose a folder you can write to"
            ) from None


def hold_lock(path: Path, what: str) -> BinaryIO:
    """Hold an exclusive lock on `path`, which guards `what`, until the returned file is closed (the kernel
    drops it when the process dies): two daemons sharing a journal would both claim every new file, two
    sharing an output folder would write the same outputs. Temporary (exit 75), not a bad setting (78, which
    systemd does not restart): a service started while a manual `icsd batch` holds the folder comes back once
    the batch is done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+b")  # noqa: SIM115 - kept open on purpose, closed by the caller
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().decode(errors="replace").strip() or "unknown"
        handle.close()
        raise TransientError(
            f"another icsd (pid {owner}) is already using {what}: stop it, or give this one its own "
            "ICSD_OUTPUT_DIR / ICSD_STATE_DIR"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()).encode())
    handle.flush()
    return handle
