"""Run the real daemon as a subprocess on temporary folders, and poll for what it does.

Tests never sleep to synchronize: they poll a condition with a deadline (`wait_until`).
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["Daemon", "wait_until", "sample_image", "write_image", "clean_env"]

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

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None, workers: int = 2) -> None:
        self.root = root
        self.input = root / "in"
        self.output = root / "out"
        self.input.mkdir(parents=True, exist_ok=True)
        self.log_path = root / f"daemon-{time.monotonic_ns()}.log"
        command = [
            sys.executable, "-m", "icsd", "run",
            "--input-dir", str(self.input), "--output-dir", str(self.output),
            "--stable-seconds", "0.3", "--workers", str(workers), *args,
        ]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=root, env=env or clean_env(), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    # -- observing -------------------------------------------------------------------------------

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
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self._log.close()

    def _died(self) -> bool:
        return self.process.poll() is not None
