"""What `icsd compare`'s workers run: bytes + params in, the core's numbers plus quality and pictures out.

The numbers are the core's own `compress` (what `batch` and the daemon write). Each image is first run as
size-only: that truecolour downsample is the reference every variant's PSNR and SSIM are measured against,
and the page's "original". Previews are the output shrunk to fit PREVIEW px with nearest-neighbour sampling
(no blending, so the palette shows as it is); crops are the output's central CROP x CROP pixels, unscaled,
for the page to enlarge without smoothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from icsd.core import CompressParams, ImageError, compress
from icsd.report.quality import psnr, ssim

__all__ = ["CROP", "PREVIEW", "Measured", "measure"]

PREVIEW = 256  # longest side of a preview, px
CROP = 64  # side of the enlarged crop, px of the output


@dataclass(frozen=True, slots=True)
class Measured:
    """One image compressed one way: the stats the page shows, and its pictures; or a one-line error."""

    error: str | None = None
    input_bytes: int = 0
    output_bytes: int = 0
    input_size: tuple[int, int] = (0, 0)
    output_size: tuple[int, int] = (0, 0)
    colors: int = 0
    seconds: float = 0.0
    psnr: float | None = None  # dB against the reference; inf for the reference itself
    ssim: float | None = None
    preview: bytes = b""  # PNG
    crop: bytes = b""  # PNG
    reference: bytes = b""  # the output PNG, kept only for the size-only reference run

    @property
    def bits_per_pixel(self) -> float:
        width, height = self.output_size
        return 8 * self.output_bytes / (width * height) if width * height else 0.0


def measure(data: bytes, params: CompressParams, reference: bytes | None) -> Measured:
    """Compress `data`; with `reference` (the size-only PNG) also PSNR and SSIM against it.

    Without a reference this is the reference run: its PNG comes back in `Measured.reference`. Bad image
    data is a Measured with `error` set (never an exception), as compress_job does for the daemon.
    """
    try:
        result = compress(data, params)
    except ImageError as exc:
        return Measured(error=exc.message)
    except MemoryError:
        return Measured(error="out of memory while compressing")
    if reference is None:
        quality: tuple[float | None, float | None] = (float("inf"), 1.0)
    else:
        mode = "L" if params.grayscale else "RGB"
        quality = _quality(_pixels(reference, mode), _pixels(result.data, mode))
    return Measured(
        input_bytes=result.input_bytes,
        output_bytes=result.output_bytes,
        input_size=result.input_size,
        output_size=result.output_size,
        colors=result.colors,
        seconds=result.seconds,
        psnr=quality[0],
        ssim=quality[1],
        preview=_preview(result.data),
        crop=_crop(result.data),
        reference=result.data if reference is None else b"",
    )


def _quality(reference: np.ndarray, pixels: np.ndarray) -> tuple[float | None, float | None]:
    return psnr(reference, pixels), ssim(reference, pixels)


def _pixels(png: bytes, mode: str) -> np.ndarray:
    """The PNG's pixels in `mode` (RGB or L): palette images become their colours, not their indices."""
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert(mode))


def _preview(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        ratio = PREVIEW / max(image.size)
        if ratio < 1:
            size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
            image = image.resize(size, Image.Resampling.NEAREST)
        return _encode(image)


def _crop(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        left, top = max(0, (image.width - CROP) // 2), max(0, (image.height - CROP) // 2)
        return _encode(image.crop((left, top, min(image.width, left + CROP), min(image.height, top + CROP))))


def _encode(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
