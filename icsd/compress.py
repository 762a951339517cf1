"""The whole pure core pipeline: bytes + CompressParams in, PNG bytes + stats out.

    decode (reduced JPEG DCT scale when allowed) -> orient -> downsample -> quantize -> palette PNG

`compress` raises `ImageError` subclasses for bad input; `compress_job` is what executors run in worker
processes: it never raises for a bad image and classifies failures as permanent or transient. Both the
result and the outcome are small frozen dataclasses that pickle across process boundaries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image

from icsd.codec import decode, encode_palette_png, encode_png
from icsd.errors import IcsdError, ImageError
from icsd.params import CompressParams, Strategy
from icsd.quantize import quantize
from icsd.resize import downsample, draft_size

__all__ = ["JobOutcome", "Result", "compress", "compress_job"]


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


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What a worker hands back: a result, or a one-line reason and whether retrying could help."""

    result: Result | None
    error: str | None  # one-line reason when result is None
    permanent: bool  # True: bad input (fail it); False: transient (retry)

    @property
    def ok(self) -> bool:
        return self.result is not None


def compress(data: bytes, params: CompressParams) -> Result:
    """Downsample and colour-quantize one encoded image to a PNG; raises ImageError for bad input."""
    start = time.perf_counter()
    decoded = decode(
        data,
        max_pixels=params.max_pixels,
        grayscale=params.grayscale,
        min_size=partial(draft_size, params=params),
    )
    small = downsample(decoded.image, params, source_size=decoded.size, reduction=decoded.reduction)
    if params.strategy is Strategy.SIZE_ONLY:
        png = encode_png(small)
        colors = _count_colors(small)
    else:
        quantized = quantize(np.asarray(small), params.colors, params.strategy, params.seed)
        png = encode_palette_png(quantized.palette, quantized.indices)
        colors = len(quantized.palette)
    return Result(
        data=png,
        input_bytes=len(data),
        output_bytes=len(png),
        input_size=decoded.size,
        output_size=small.size,
        colors=colors,
        strategy=params.strategy,
        seconds=time.perf_counter() - start,
    )


def compress_job(data: bytes, params: CompressParams) -> JobOutcome:
    """Run `compress`, turning every failure into an outcome (never raises for a bad image).

    ImageError -> permanent; MemoryError -> transient (another time, with fewer jobs in flight, it may
    fit); other IcsdErrors by their own `permanent` flag; anything else is a bug -> permanent, with
    "internal error: <type>: <message>" so the file is set aside instead of retried forever.
    """
    try:
        return JobOutcome(result=compress(data, params), error=None, permanent=False)
    except ImageError as exc:
        return JobOutcome(result=None, error=exc.message, permanent=True)
    except IcsdError as exc:
        return JobOutcome(result=None, error=exc.message, permanent=exc.permanent)
    except MemoryError:
        return JobOutcome(result=None, error="out of memory while compressing; will retry", permanent=False)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
        return JobOutcome(result=None, error=f"internal error: {type(exc).__name__}: {detail}", permanent=True)


def _count_colors(img: Image.Image) -> int:
    """Distinct colours of an RGB or L image (sorting packed pixels: ~40x faster than Image.getcolors)."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        return int(np.count_nonzero(np.bincount(arr.ravel(), minlength=256)))
    packed = (arr[..., 0].astype(np.uint32) << 16) | (arr[..., 1].astype(np.uint32) << 8) | arr[..., 2]
    packed = np.sort(packed, axis=None)
    return int(np.count_nonzero(packed[1:] != packed[:-1])) + 1
