"""Real test images, generated on the fly: sklearn's sample photos and pictures in every Pillow mode.

Functions return encoded bytes (what the core receives) or PIL images; `write` puts bytes on disk for
tests of the shell. Contents are deterministic and easy to check: gradients, flat colours, markers.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageCms

__all__ = [
    "animated_gif",
    "encode",
    "exif_jpeg",
    "gradient",
    "icc_profile",
    "mode_sample",
    "MODE_SAMPLES",
    "multipage_tiff",
    "png16_gray",
    "png16_rgb",
    "png_bomb",
    "png_chunks",
    "png_bit_depth",
    "raw_png",
    "sample_array",
    "sample_bytes",
    "upright_marker",
    "write",
]

# mode -> format that reopens in exactly that mode
MODE_SAMPLES = {
    "1": "PNG",
    "L": "PNG",
    "LA": "PNG",
    "P": "PNG",
    "P+transparency": "PNG",
    "RGB": "PNG",
    "RGBA": "PNG",
    "CMYK": "TIFF",
    "CMYK-jpeg": "JPEG",
    "YCbCr": "TIFF",
    "LAB": "TIFF",
    "I;16": "PNG",
    "I": "TIFF",
    "F": "TIFF",
}


@cache
def sample_array(name: str = "china.jpg") -> np.ndarray:
    """sklearn's bundled photo ("china.jpg" 640x427 or "flower.jpg"), (H, W, 3) uint8, read-only."""
    from sklearn.datasets import load_sample_image

    arr = load_sample_image(name)
    arr.setflags(write=False)
    return arr


def sample_bytes(name: str = "china.jpg", fmt: str = "JPEG", **save: Any) -> bytes:
    """A sklearn sample photo encoded as `fmt` (JPEG quality 90 unless given)."""
    if fmt == "JPEG":
        save.setdefault("quality", 90)
    return encode(Image.fromarray(sample_array(name)), fmt, **save)


def encode(img: Image.Image | np.ndarray, fmt: str, **save: Any) -> bytes:
    """Encode an image (or a uint8 array) with Pillow."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    """Write bytes to `path` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def gradient(width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: red rises left->right, green top->bottom, blue is constant 64."""
    red = np.linspace(0, 255, width).round().astype(np.uint8)
    green = np.linspace(0, 255, height).round().astype(np.uint8)
    arr = np.empty((height, width, 3), dtype=np.uint8)
    arr[..., 0] = red[None, :]
    arr[..., 1] = green[:, None]
    arr[..., 2] = 64
    return arr


def mode_sample(mode: str, size: tuple[int, int] = (32, 24)) -> Image.Image:
    """A picture in `mode` (keys of MODE_SAMPLES) with checkable content.

    Alpha and transparency samples are transparent on the left half (so they must come out white).
    """
    width, height = size
    rgb = Image.fromarray(gradient(width, height))
    left = np.zeros((height, width), dtype=bool)
    left[:, : width // 2] = True
    if mode == "1":
        return Image.fromarray((np.indices((height, width)).sum(axis=0) % 2).astype(bool))
    if mode in ("L", "RGB", "CMYK", "CMYK-jpeg", "YCbCr", "LAB"):
        return rgb.convert(mode.split("-")[0])
    if mode in ("LA", "RGBA"):
        img = rgb.convert(mode)
        img.putalpha(Image.fromarray(np.where(left, 0, 255).astype(np.uint8)))
        return img
    if mode == "P":
        return rgb.quantize(8)
    if mode == "P+transparency":
        indices = np.where(left, 0, 1 + np.arange(width)[None, :] % 3).astype(np.uint8)
        img = Image.fromarray(indices)
        img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])  # index 0 (black) is transparent
        img.info["transparency"] = 0
        return img
    if mode == "I;16":
        return Image.fromarray(_ramp(width, height, 65535).astype(np.uint16))
    if mode == "I":
        return Image.fromarray(_ramp(width, height, 65535).astype(np.int32))
    if mode == "F":
        return Image.fromarray((_ramp(width, height, 1000) / 1000).astype(np.float32))
    raise ValueError(f"no sample for mode {mode!r}")


def _ramp(width: int, height: int, top: int) -> np.ndarray:
    """0..top left to right, the same on every row."""
    return np.repeat(np.linspace(0, top, width).round()[None, :], height, axis=0)


def png16_gray(width: int = 64, height: int = 8) -> bytes:
    """16-bit grey PNG, 0..65535 left to right (Pillow reopens it as I;16)."""
    return encode(Image.fromarray(_ramp(width, height, 65535).astype(np.uint16)), "PNG")


def png16_rgb(width: int = 64, height: int = 8) -> bytes:
    """16-bit RGB PNG (Pillow cannot write one): R 0..65535 left to right, G 65535, B 0."""
    ramp = _ramp(width, height, 65535).astype(">u2")
    pixels = np.stack([ramp, np.full_like(ramp, 65535), np.zeros_like(ramp)], axis=-1)
    return raw_png(width, height, bit_depth=16, color_type=2, rows=[row.tobytes() for row in pixels])


def raw_png(width: int, height: int, *, bit_depth: int, color_type: int, rows: list[bytes]) -> bytes:
    """A PNG written by hand: filter type 0 on every row, one IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\0" + row for row in rows))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_bomb(width: int, height: int) -> bytes:
    """A valid-looking RGB PNG header claiming width x height, with only a few bytes of pixel data.

    Costs nothing to build; a decoder that does not refuse it up front would try to allocate it all.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk of a PNG file, in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def png_bit_depth(data: bytes) -> int:
    """The bit depth byte of a PNG's IHDR chunk."""
    kind, payload = png_chunks(data)[0]
    assert kind == b"IHDR"
    return payload[8]


def animated_gif(colors: tuple[str, ...] = ("red", "blue", "lime"), size: tuple[int, int] = (20, 10)) -> bytes:
    """An animated GIF whose frame i is a flat `colors[i]`."""
    frames = [Image.new("RGB", size, c) for c in colors]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def multipage_tiff(colors: tuple[str, ...] = ("red", "blue"), size: tuple[int, int] = (20, 10)) -> bytes:
    """A multi-page TIFF whose page i is a flat `colors[i]`."""
    pages = [Image.new("RGB", size, c) for c in colors]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def icc_profile() -> bytes:
    """An sRGB ICC profile, to check that output PNGs carry no iCCP chunk."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def upright_marker(width: int = 60, height: int = 40) -> np.ndarray:
    """Smooth gradient with a white block in the top-left corner: any wrong rotation or flip shows."""
    arr = gradient(width, height)
    arr[: height // 4, : width // 4] = 255
    return arr


# EXIF orientation -> the transpose that undoes it (so the stored image, oriented, is upright again)
_STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def exif_jpeg(
    upright: np.ndarray, orientation: int, *, gps: bool = True, icc: bool = False, quality: int = 95
) -> bytes:
    """A JPEG that stores `upright` transposed, with the EXIF orientation that puts it back upright.

    Carries a camera make and (by default) GPS coordinates, to check that none of it reaches the output.
    """
    img = Image.fromarray(upright)
    if _STORE[orientation] is not None:
        img = img.transpose(_STORE[orientation])
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "TestCam"
    if gps:
        info = exif.get_ifd(ExifTags.IFD.GPSInfo)
        info[ExifTags.GPS.GPSLatitudeRef] = "N"
        info[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.0)
    extra = {"icc_profile": icc_profile()} if icc else {}
    return encode(img, "JPEG", quality=quality, exif=exif.tobytes(), **extra)
