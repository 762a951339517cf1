"""Human-readable progress: the per-image line, the run summary, and the batch progress bar.

The per-image line carries what the original tools printed (size before/after and the reduction)
plus what an operator watching a drop folder needs (counts and cumulative runtime). The same
fields go to JSON logs and metrics, so they are computed once, here.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

__all__ = [
    "ProgressBar",
    "Tally",
    "colours",
    "human_bytes",
    "human_duration",
    "image_fields",
    "image_line",
    "images",
    "reduction_pct",
]


def human_bytes(count: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def colours(count: object, *, grey: bool = False) -> str:
    """16 -> '16 colours', 1 -> '1 colour' (a flat image quantizes to a single colour); grey: '16 grey levels'."""
    word = "grey level" if grey else "colour"
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def images(count: int, *, grey: bool = False) -> str:
    """1 -> '1 image', 40 -> '40 images'; grey: '40 grey images'."""
    word = "grey image" if grey else "image"
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def human_duration(seconds: float) -> str:
    """75.25 -> '0:01:15.3'."""
    minutes, secs = divmod(max(seconds, 0.0), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}"


def reduction_pct(before: int, after: int) -> float:
    """How much smaller the output is, in percent of the input (negative if it grew)."""
    return 100.0 * (before - after) / before if before else 0.0


@dataclass
class Tally:
    """Counts for one run of the daemon or of a batch."""

    started: float = field(default_factory=time.monotonic)
    done: int = 0
    failed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    busy_seconds: float = 0.0  # summed per-image processing time
    grey: bool = False  # the run writes grayscale images: the summary says so

    @property
    def runtime(self) -> float:
        return time.monotonic() - self.started

    def add(self, bytes_in: int, bytes_out: int, seconds: float) -> None:
        self.done += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        self.busy_seconds += seconds

    def summary(self) -> str:
        return (
            f"{images(self.done, grey=self.grey)} done, {self.failed} failed, "
            f"{human_bytes(self.bytes_in)} in -> {human_bytes(self.bytes_out)} out "
            f"({0.0 - reduction_pct(self.bytes_in, self.bytes_out):+.1f}%), "
            f"processing {human_duration(self.busy_seconds)}, runtime {human_duration(self.runtime)}"
        )


def image_fields(
    name: str,
    *,
    size_in: tuple[int, int],
    size_out: tuple[int, int],
    bytes_in: int,
    bytes_out: int,
    colors: int,
    strategy: str,
    seconds: float,
    tally: Tally,
    queued: int,
    grayscale: bool = False,
    psnr: float | None = None,
) -> dict[str, object]:
    """The fields of one finished image, shared by the text line, JSON logs and metrics.

    `psnr_db`: the output's PSNR against the downsampled image, rounded to 0.01 dB; null when not measured
    (size-only) or infinite (the output is exactly the downsampled image), which `exact` tells apart.
    """
    return {
        "name": name,
        "width_in": size_in[0],
        "height_in": size_in[1],
        "width_out": size_out[0],
        "height_out": size_out[1],
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "reduction_pct": round(reduction_pct(bytes_in, bytes_out), 1),
        "colors": colors,
        "grayscale": grayscale,
        "strategy": strategy,
        "psnr_db": round(psnr, 2) if psnr is not None and math.isfinite(psnr) else None,
        "exact": psnr == math.inf,
        "seconds": round(seconds, 3),
        "done": tally.done,
        "failed": tally.failed,
        "queued": queued,
        "runtime_seconds": round(tally.runtime, 1),
    }


def image_line(f: dict[str, object]) -> str:
    """`a.jpg: 3000x2000 -> 600x400 px, 2.1 MiB -> 61.0 KiB (-97.1%), 16 colours, kmeans, 0.41 s | ...`"""
    return (
        f"{f['name']}: {f['width_in']}x{f['height_in']} -> {f['width_out']}x{f['height_out']} px, "
        f"{human_bytes(int(f['bytes_in']))} -> {human_bytes(int(f['bytes_out']))} "
        f"({0.0 - float(f['reduction_pct']):+.1f}%), "
        f"{colours(f['colors'], grey=bool(f.get('grayscale')))}, {f['strategy']}{_fidelity(f)}, {f['seconds']:.2f} s"
        f" | done {f['done']}, failed {f['failed']}, queued {f['queued']}"
        f" | runtime {human_duration(float(f['runtime_seconds']))}"
    )


def _fidelity(f: dict[str, object]) -> str:
    """`, PSNR 34.21 dB` or `, exact`, or nothing when not measured."""
    if f.get("exact"):
        return ", exact"
    value = f.get("psnr_db")
    return "" if value is None else f", PSNR {float(value):.2f} dB"  # type: ignore[arg-type]


class ProgressBar:
    """A one-line bar on a terminal for `icsd batch`; log lines are printed above it.

    Installed as a wrapper around the log handler so the bar is erased before a record is written
    and drawn again after. On a non-terminal it draws nothing (the log lines carry the progress).
    """

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.count = 0
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, total: int | None = None) -> None:
        with self._lock:
            self.count += 1
            if total is not None:
                self.total = total
            self._draw()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def redraw(self) -> None:
        with self._lock:
            self._draw()

    def wrap(self, handler: logging.Handler) -> logging.Handler:
        bar = self
        original_emit = handler.emit

        def emit(record: logging.LogRecord) -> None:
            bar.clear()
            original_emit(record)
            bar.redraw()

        handler.emit = emit  # type: ignore[method-assign]
        return handler

    def _draw(self) -> None:
        if not self.enabled or not self.total:
            return
        width = 30
        filled = int(width * self.count / self.total)
        elapsed = time.monotonic() - self.started
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.count}/{self.total} "
            f"{100 * self.count // self.total}% {human_duration(elapsed)}"
        )
        self.stream.flush()
