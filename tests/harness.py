"""Run the real daemon as a subprocess on temporary folders, and poll for what it does.

Tests never sleep to synchronize: they poll a condition with a deadline (`wait_until`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "Daemon",
    "alive",
    "busy_worker",
    "clean_env",
    "descendants",
    "journal_states",
    "pool_workers",
    "sample_image",
    "temp_files",
    "vm_hwm_kib",
    "wait_until",
    "write_image",
]

PROGRESS = re.compile(r"INFO\s+icsd: (?P<name>.+?): \d+x\d+ -> \d+x\d+ px")


def wait_until(predicate: Callable[[], object], *, timeout: float = 60.0, what: str = "condition") -> object:
    """Poll `predicate` until it is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)  # polling interval, not synchronization


def clean_env(**extra: str) -> dict[str, str]:
    """The test process environment without ICSD_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ICSD_")}
    env.update(extra)
    return env


def sample_image(name: str = "china.jpg", *, crop: int | None = None) -> Image.Image:
    """One of scikit-learn's shipped photos, optionally cropped to a square for speed."""
    from sklearn.datasets import load_sample_image

    pixels = load_sample_image(name)
    if crop:
        pixels = np.ascontiguousarray(pixels[:crop, :crop])
    return Image.fromarray(pixels)


def write_image(path: Path, image: Image.Image | None = None, *, fmt: str | None = None) -> bytes:
    """Encode `image` (default: china.jpg) into `path`'s format and write it; returns the bytes."""
    image = image if image is not None else sample_image()
    buffer = io.BytesIO()
    image.save(buffer, format=fmt or {"jpg": "JPEG"}.get(path.suffix[1:].lower(), path.suffix[1:].upper()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


class Daemon:
    """`icsd run` in a subprocess with input `root/in` and output `root/out`."""

    def __init__(
        self,
        root: Path,
        *args: str,
        env: dict[str, str] | None = None,
        workers: int = 2,
        prefix: Sequence[str] = (),
        **popen: Any,
    ) -> None:
        """`prefix`: a wrapper that execs the daemon (e.g. setpriv); `popen`: extra Popen arguments."""
        self.root = root
        self.input = root / "in"
        self.output = root / "out"
        self.input.mkdir(parents=True, exist_ok=True)
        self.log_path = root / f"daemon-{time.monotonic_ns()}.log"
        command = [
            *prefix, sys.executable, "-m", "icsd", "run",
            "--input-dir", str(self.input), "--output-dir", str(self.output),
            "--stable-seconds", "0.3", "--workers", str(workers), *args,
        ]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=root, env=env or clean_env(), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, **popen,
        )

    # -- observing -------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def journal_path(self) -> Path:
        """Where the daemon keeps its journal with the default ICSD_STATE_DIR."""
        return self.output / ".icsd" / "journal.sqlite3"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def progress_names(self) -> list[str]:
        """Names of images that got a progress line, one entry per line."""
        return [m.group("name") for m in PROGRESS.finditer(self.log())]

    def outputs(self) -> list[str]:
        """Relative paths of the finished outputs (not our state/failed folders, not temp files)."""
        if not self.output.exists():
            return []
        found = []
        for path in self.output.rglob("*"):
            rel = path.relative_to(self.output).as_posix()
            if path.is_file() and not rel.startswith((".icsd/", ".failed/")):
                found.append(rel)
        return sorted(found)

    def failed(self) -> list[str]:
        folder = self.output / ".failed"
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    def wait_for_log(self, text: str, *, count: int = 1, timeout: float = 60.0) -> None:
        wait_until(lambda: self.log().count(text) >= count or self._died(), timeout=timeout, what=repr(text))
        assert self.log().count(text) >= count, f"daemon exited early:\n{self.log()}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.wait_for_log("watching ", timeout=timeout)

    def wait_for_outputs(self, expected: Sequence[str], *, timeout: float = 60.0) -> None:
        wanted = sorted(expected)
        wait_until(lambda: self.outputs() == wanted or self._died(), timeout=timeout,
                   what=f"outputs {wanted} (have {self.outputs()})")
        assert self.outputs() == wanted, f"outputs {self.outputs()} != {wanted}\n{self.log()}"

    # -- controlling -----------------------------------------------------------------------------

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 60.0) -> int:
        """Send `sig` and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL the daemon, then its pool: the fork server and workers outlive a killed parent.

        (CPython's fork server hands every worker the write end of its "parent alive" pipe, and a
        worker blocks on a queue it also holds the write end of, so neither notices the daemon died.
        Under systemd, KillMode=control-group does this second step.)
        """
        if self.process.poll() is None:
            orphans = descendants(self.pid)
            self.process.kill()
            self.process.wait(30)
            for pid in orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._log.close()

    def _died(self) -> bool:
        return self.process.poll() is not None


# -- process and file-system probes -----------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (the fork server, pool workers, their helpers), parents first."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(kid) for kid in children.read_text().split()]
            except OSError:
                continue  # the thread or process ended while we looked
            found.extend(kids)
            stack.extend(kids)
    return found


def pool_workers(pid: int) -> list[int]:
    """Pids of the pool's worker processes under daemon `pid`: children of its fork server."""
    servers = [p for p in descendants(pid) if "forkserver" in _cmdline(p) and _parent(p) == pid]
    return [p for p in descendants(pid) if _parent(p) in servers]


def busy_worker(pid: int, *, cpu_seconds: float = 0.3) -> int:
    """The pool worker under daemon `pid` that has used `cpu_seconds` of CPU from now on: it is working on a job."""
    baseline = {worker: _cpu_seconds(worker) for worker in pool_workers(pid)}

    def busy() -> int | None:
        for worker in pool_workers(pid):
            if _cpu_seconds(worker) - baseline.get(worker, 0.0) >= cpu_seconds:
                return worker
        return None

    return int(wait_until(busy, timeout=30, what="a pool worker busy on a job"))  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie has exited (only its parent's wait is missing)."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != "Z"


def vm_hwm_kib(pid: int) -> int:
    """Peak resident memory (VmHWM) of a live process in KiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def temp_files(root: Path) -> list[str]:
    """Temporary files (icsd's `.icsd-tmp-*`, SQLite's rollback journals) anywhere under `root`."""
    from icsd.daemon.output import TEMP_PREFIX

    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.name.startswith(TEMP_PREFIX) or p.name.endswith("-journal")
    )


def journal_states(journal: Path) -> dict[str, str]:
    """rel -> state, read straight from the SQLite file (read-only, so a live daemon is not disturbed)."""
    db = sqlite3.connect(f"{journal.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return {str(rel): str(state) for rel, state in db.execute("SELECT rel, state FROM files")}
    finally:
        db.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid ...


def _parent(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else 0


def _cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0
