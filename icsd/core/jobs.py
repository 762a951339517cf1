"""The job contract between the daemon and its executors, importable without the image stack.

A job is `compress_job(data, params) -> JobOutcome`: encoded bytes and a frozen params object in, encoded
PNG bytes and stats out, no filesystem. The daemon process only ever handles these small dataclasses, so
it never imports NumPy, Pillow or the quantizers (~0.15 s of start-up it would pay before the first image):
those are loaded in the workers, which import `icsd.core.pipeline` on their first job (the process pool's fork
server preloads it).
"""

from __future__ import annotations

from dataclasses import dataclass

from icsd.core.errors import CoreError, ImageError
from icsd.core.params import CompressParams, Strategy

__all__ = ["JobOutcome", "Result", "compress_job", "png_palette"]


@dataclass(frozen=True, slots=True)
class Result:
    """One compressed image and what it cost."""

    data: bytes  # encoded PNG
    input_bytes: int
    output_bytes: int
    input_size: tuple[int, int]  # (w, h) of the decoded, oriented image at full resolution
    output_size: tuple[int, int]
    colors: int  # colours in the output: palette length, or distinct colours for size-only
    strategy: Strategy
    seconds: float  # time spent in compress()
    # PSNR (dB) of the output against the downsampled image; inf when exact, None when not measured (size-only)
    psnr: float | None = None
    # The PNG's PLTE (RGB triples in index order; b"" without one): what the manifest lists, kept when `data` is
    # not sent back (a worker wrote it beside its output, see icsd.daemon.executor.run_jobs)
    plte: bytes = b""


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What a worker hands back: a result, or a one-line reason and whether retrying could help."""

    result: Result | None
    error: str | None  # one-line reason when result is None
    permanent: bool  # True: bad input (fail it); False: transient (retry)
    # The input's SHA-1 (icsd.daemon.identity), set when the worker read the input itself (daemon.executor.run_jobs)
    digest: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


def compress_job(data: bytes, params: CompressParams) -> JobOutcome:
    """Run `icsd.core.pipeline.compress`, turning every failure into an outcome (never raises for a bad image).

    ImageError -> permanent (but TruncatedImageError: transient); MemoryError -> transient (another time, with
    fewer jobs in flight, it may fit); other CoreErrors by their own `permanent` flag; anything else is a bug ->
    permanent, with "internal error: <type>: <message>" so the file is set aside instead of retried forever.
    """
    from icsd.core.pipeline import compress  # the image stack: loaded where jobs run, never by the daemon

    try:
        return JobOutcome(result=compress(data, params), error=None, permanent=False)
    except ImageError as exc:  # permanent, except a truncated file that may still be arriving
        return JobOutcome(result=None, error=exc.message, permanent=exc.permanent)
    except CoreError as exc:
        return JobOutcome(result=None, error=exc.message, permanent=exc.permanent)
    except MemoryError:
        return JobOutcome(result=None, error="out of memory while compressing; will retry", permanent=False)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
        return JobOutcome(result=None, error=f"internal error: {type(exc).__name__}: {detail}", permanent=True)


def png_palette(png: bytes) -> bytes:
    """The PLTE chunk's data of a PNG (RGB triples in index order), b"" when it has none (truecolour, grey).
    Walks the chunks up to the first IDAT: in icsd's own PNGs PLTE comes right after IHDR."""
    at = 8  # after the signature
    while at + 8 <= len(png):
        length, kind = int.from_bytes(png[at : at + 4], "big"), png[at + 4 : at + 8]
        if kind == b"PLTE":
            return png[at + 8 : at + 8 + length]
        if kind == b"IDAT":
            return b""
        at += 12 + length  # length, type, data, CRC
    return b""
