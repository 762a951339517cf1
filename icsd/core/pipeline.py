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
from icsd.core.jobs import Result, png_palette
from icsd.core.params import Alpha, CompressParams, Strategy
from icsd.core.quality import psnr, psnr_over
from icsd.core.quantization import quantize
from icsd.core.quantization.alpha import premultiply, quantize_alpha
from icsd.core.resize import downsample, draft_size

__all__ = ["Result", "compress", "decode_downsampled", "palette_array", "palette_pixels"]


def compress(data: bytes, params: CompressParams) -> Result:
    """Downsample and colour-quantize one encoded image to a PNG; raises ImageError for bad input."""
    start = time.perf_counter()
    keep_alpha = params.alpha is Alpha.KEEP and params.palette is None  # a shared palette has no alpha
    decoded, small = decode_downsampled(data, params, keep_alpha=keep_alpha)
    if params.strategy is Strategy.SIZE_ONLY:
        png = encode_png(small)
        colors = _count_colors(small)
        fidelity = None
    elif small.mode in ("RGBA", "LA"):
        png, colors, fidelity = _quantize_alpha(np.asarray(small), params)
    elif params.palette is not None:  # a shared palette: no fit, every output gets this PLTE entry for entry
        palette = palette_array(params.palette, grey=params.grayscale)
        pixels = palette_pixels(small, params)
        quantized = quantize(pixels, palette=palette, dither=params.dither.value, strength=params.dither_strength)
        png = encode_palette_png(
            quantized.palette, quantized.indices, effort=params.png_effort.value, keep_palette=True
        )
        colors = len(quantized.palette)
        fidelity = psnr(pixels, quantized.palette, quantized.indices)
    else:
        pixels = np.asarray(small)
        quantized = quantize(
            pixels, params.colors, params.strategy, params.seed, dither=params.dither.value,
            strength=params.dither_strength, color_space=params.color_space.value,
        )
        png = encode_palette_png(quantized.palette, quantized.indices, effort=params.png_effort.value)
        colors = len(quantized.palette)
        fidelity = psnr(pixels, quantized.palette, quantized.indices)
    return Result(
        data=png,
        input_bytes=len(data),
        output_bytes=len(png),
        input_size=decoded.size,
        output_size=small.size,
        colors=colors,
        strategy=params.strategy,
        seconds=time.perf_counter() - start,
        psnr=fidelity,
        plte=png_palette(png),
    )


def _quantize_alpha(pixels: np.ndarray, params: CompressParams) -> tuple[bytes, int, float]:
    """(PNG with PLTE + tRNS, palette length, PSNR composited on black and on white) for an RGBA or LA image."""
    quantized = quantize_alpha(pixels, params.colors, dither=params.dither.value, strength=params.dither_strength)
    png = encode_palette_png(quantized.palette if quantized.palette.shape[1] == 3 else quantized.palette[:, 0],
                             quantized.indices, alpha=quantized.alpha, effort=params.png_effort.value)
    entries = np.concatenate([quantized.palette, quantized.alpha[:, None]], axis=1)
    renderings = list(zip(_on_black_and_white(pixels), _on_black_and_white(entries), strict=True))
    fidelity = psnr_over(renderings, quantized.indices)
    return png, len(quantized.alpha), fidelity


def _on_black_and_white(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., C + 1) colour-and-alpha uint8 -> its colour composited on black and on white, (..., C) uint8 each.
    The PSNR over both is what a viewer sees on either background (premultiplied values alone are the error
    on black only)."""
    premultiplied = premultiply(pixels)
    on_black = np.ascontiguousarray(premultiplied[..., :-1])
    on_white = on_black.astype(np.uint16) + (255 - premultiplied[..., -1:])  # colour <= alpha: stays <= 255
    return on_black, on_white.astype(np.uint8)


def decode_downsampled(
    data: bytes, params: CompressParams, *, keep_alpha: bool = False
) -> tuple[Decoded, Image.Image]:
    """The pipeline's decode (reduced JPEG DCT scale when allowed) and downsample: what gets quantized.
    Transparency is composited onto `params.background` unless `keep_alpha` (then RGBA/LA when not opaque)."""
    decoded = decode(
        data,
        max_pixels=params.max_pixels,
        grayscale=params.grayscale,
        min_size=partial(draft_size, params=params),
        keep_alpha=keep_alpha,
        background=params.background,
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
    """Distinct colours of an RGB, L, RGBA or LA image (sorting packed pixels: ~40x faster than getcolors)."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        return int(np.count_nonzero(np.bincount(arr.ravel(), minlength=256)))
    packed = arr[..., 0].astype(np.uint32)
    for channel in range(1, arr.shape[2]):
        packed = (packed << 8) | arr[..., channel]
    packed = np.sort(packed, axis=None)
    return int(np.count_nonzero(packed[1:] != packed[:-1])) + 1
