"""The whole pure core pipeline: bytes + CompressParams in, PNG bytes + stats out.

    decode (reduced JPEG DCT scale when allowed) -> orient -> downsample -> quantize -> palette PNG

`compress` raises `ImageError` subclasses for bad input; `icsd.core.jobs.compress_job` is what executors run
in worker processes (it never raises for a bad image). `Result` lives in `icsd.core.jobs`, which the daemon
imports without loading this module's NumPy/Pillow stack.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
from PIL import Image

from icsd.core.codec import decode, encode_palette_png, encode_png
from icsd.core.jobs import Result
from icsd.core.params import Alpha, CompressParams, Strategy
from icsd.core.quality import psnr
from icsd.core.quantization import quantize
from icsd.core.quantization.alpha import premultiply, quantize_alpha
from icsd.core.resize import downsample, draft_size

__all__ = ["Result", "compress"]


def compress(data: bytes, params: CompressParams) -> Result:
    """Downsample and colour-quantize one encoded image to a PNG; raises ImageError for bad input."""
    start = time.perf_counter()
    decoded = decode(
        data,
        max_pixels=params.max_pixels,
        grayscale=params.grayscale,
        min_size=partial(draft_size, params=params),
        keep_alpha=params.alpha is Alpha.KEEP,
        background=params.background,
    )
    small = downsample(decoded.image, params, source_size=decoded.size, reduction=decoded.reduction)
    if params.strategy is Strategy.SIZE_ONLY:
        png = encode_png(small)
        colors = _count_colors(small)
        fidelity = None
    elif small.mode in ("RGBA", "LA"):
        png, colors, fidelity = _quantize_alpha(np.asarray(small), params)
    else:
        pixels = np.asarray(small)
        quantized = quantize(
            pixels, params.colors, params.strategy, params.seed, dither=params.dither.value,
            strength=params.dither_strength, color_space=params.color_space.value,
        )
        png = encode_palette_png(quantized.palette, quantized.indices)
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
    )


def _quantize_alpha(pixels: np.ndarray, params: CompressParams) -> tuple[bytes, int, float]:
    """(PNG with PLTE + tRNS, palette length, PSNR of the premultiplied pixels) for an RGBA or LA image."""
    quantized = quantize_alpha(pixels, params.colors, dither=params.dither.value, strength=params.dither_strength)
    png = encode_palette_png(quantized.palette if quantized.palette.shape[1] == 3 else quantized.palette[:, 0],
                             quantized.indices, alpha=quantized.alpha)
    return png, len(quantized.alpha), psnr(premultiply(pixels), quantized.premultiplied(), quantized.indices)


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
