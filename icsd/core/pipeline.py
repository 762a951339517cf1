"""The whole pure core pipeline: bytes + CompressParams in, PNG bytes + stats out.

    decode (reduced JPEG DCT scale when allowed) -> orient -> downsample -> quantize -> palette PNG

`compress` raises `ImageError` subclasses for bad input; `icsd.core.jobs.compress_job` is what executors run
in worker processes (it never raises for a bad image). `Result` lives in `icsd.core.jobs`, which the daemon
imports without loading this module's NumPy/Pillow stack.
"""

from __future__ import annotations

import time
from functools import lru_cache, partial

import numpy as np
from PIL import Image

from icsd.core.codec import Decoded, decode, encode_palette_png, encode_png
from icsd.core.jobs import Result
from icsd.core.params import CompressParams, Strategy
from icsd.core.quantization import quantize
from icsd.core.resize import downsample, draft_size

__all__ = ["Result", "compress", "decode_downsampled", "palette_array", "palette_pixels"]


def compress(data: bytes, params: CompressParams) -> Result:
    """Downsample and colour-quantize one encoded image to a PNG; raises ImageError for bad input."""
    start = time.perf_counter()
    decoded, small = decode_downsampled(data, params)
    if params.strategy is Strategy.SIZE_ONLY:
        png = encode_png(small)
        colors = _count_colors(small)
    elif params.palette is not None:  # a shared palette: no fit, every output gets this PLTE entry for entry
        palette = palette_array(params.palette, grey=params.grayscale)
        quantized = quantize(palette_pixels(small, params), palette=palette)
        png = encode_palette_png(quantized.palette, quantized.indices)
        colors = len(quantized.palette)
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


def decode_downsampled(data: bytes, params: CompressParams) -> tuple[Decoded, Image.Image]:
    """The pipeline's decode (reduced JPEG DCT scale when allowed) and downsample: what gets quantized."""
    decoded = decode(
        data,
        max_pixels=params.max_pixels,
        grayscale=params.grayscale,
        min_size=partial(draft_size, params=params),
    )
    return decoded, downsample(decoded.image, params, source_size=decoded.size, reduction=decoded.reduction)


def palette_pixels(small: Image.Image, params: CompressParams) -> np.ndarray:
    """The pixels a shared palette is learned from and applied to: grey with `grayscale`, else RGB, including
    single-channel sources (which otherwise stay grey and get a grey palette of their own)."""
    return np.asarray(small.convert("RGB") if small.mode == "L" and not params.grayscale else small)


@lru_cache(maxsize=4)
def palette_array(entries: tuple[tuple[int, int, int], ...], *, grey: bool) -> np.ndarray:
    """CompressParams.palette as quantize() takes it: (K, 3) uint8, or (K,) grey levels for grey images
    (CompressParams checked the entries are greys then). Cached: every job of a run has the same palette."""
    rows = np.array(entries, dtype=np.uint8).reshape(-1, 3)
    rows = np.ascontiguousarray(rows[:, 0]) if grey else rows
    rows.flags.writeable = False
    return rows


def _count_colors(img: Image.Image) -> int:
    """Distinct colours of an RGB or L image (sorting packed pixels: ~40x faster than Image.getcolors)."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        return int(np.count_nonzero(np.bincount(arr.ravel(), minlength=256)))
    packed = (arr[..., 0].astype(np.uint32) << 16) | (arr[..., 1].astype(np.uint32) << 8) | arr[..., 2]
    packed = np.sort(packed, axis=None)
    return int(np.count_nonzero(packed[1:] != packed[:-1])) + 1
