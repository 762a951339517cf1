"""Safe decoding of untrusted image bytes to an oriented RGB/L picture, and metadata-free PNG encoding.

Decoding rules (the contract the rest of the pipeline relies on):

- Size guard first: the dimensions are read from the header and checked against `max_pixels` before any
  pixel is decoded. Pillow's own decompression-bomb check is handled here, locally: its warning (above
  `Image.MAX_IMAGE_PIXELS`) is silenced because our limit applies instead; its hard error (above twice
  that, 179 MP by default) becomes `ImageTooLargeError`. That error is a ceiling `max_pixels`
  cannot lift: we never change Pillow's global limit.
- Every decoding failure becomes a one-line `DecodeError`; truncated files are errors, never padded.
- Animated GIF/WebP/PNG and multi-page TIFF: the first frame only.
- EXIF orientation is applied, so the picture is upright; its metadata (EXIF, ICC, text) is dropped.
- Modes are normalised to RGB or L, or to RGBA or LA when `keep_alpha` and some pixel is not opaque
  (otherwise transparency is composited onto `background`, white by default: "nothing" reads as paper);
  CMYK, YCbCr, LAB, HSV -> RGB without colour management; 1 -> L; 16-bit and 32-bit grey is scaled to
  8 bits (see `_to_8bit`), never clipped. Single-channel sources stay L.
- JPEG speed lever: given `min_size`, the JPEG is decoded at 1/2, 1/4 or 1/8 DCT scale while it stays
  at least that size, directly to RGB or L; the caller finishes with a real resample.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, JpegImagePlugin, UnidentifiedImageError

from icsd.core.errors import CoreError, DecodeError, ImageTooLargeError, TruncatedImageError
from icsd.core.png import encode_indexed_png

# Register the common format plugins (JPEG, PNG, GIF, BMP, PPM) now rather than in the first Image.open:
# the worker fork server imports this module, so every worker starts with them loaded instead of each
# importing a dozen modules during its first image (measured: ~10 ms of each worker's first job).
Image.preinit()

__all__ = ["PNG_COMPRESS_LEVEL", "Decoded", "decode", "encode_palette_png", "encode_png", "normalize_mode"]

# zlib settings for truecolour and grey (size-only) PNG output, measured on the benchmark's 15 camera JPEGs
# downsampled 5x (bench/out/camera): level 5 (level 6: 1.7x the time for -0.4 % bytes), through Pillow's encoder
# for its per-row filter choice, with zlib's run-length-only Z_RLE strategy: -1.8/-2.5 % bytes and 2.4x faster
# than the default strategy on those filtered rows. Palette PNGs use libdeflate: see icsd.core.png.
PNG_COMPRESS_LEVEL = 5
_Z_RLE = 3  # zlib.Z_RLE, passed to Pillow's PNG encoder as compress_type

# EXIF orientation -> the transpose that makes the picture upright (the table of ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = {5, 6, 7, 8}
_ALPHA_MODES = {"RGBA": "RGB", "RGBa": "RGB", "LA": "L", "PA": "RGB"}
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
_WIDE_GREY_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}

SizeHint = Callable[[int, int], tuple[int, int] | None]


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded picture: `image` is upright, mode RGB or L, and `1/reduction` of `size` (rounded up)."""

    image: Image.Image
    size: tuple[int, int]  # full-resolution, oriented (width, height): what size rules apply to
    reduction: int  # 1, 2, 4 or 8: the JPEG DCT scaling used; 1 = decoded at full size
    format: str | None  # Pillow's format name, e.g. "JPEG", "PNG"


def decode(
    data: bytes,
    *,
    max_pixels: int,
    grayscale: bool = False,
    min_size: SizeHint | None = None,
    keep_alpha: bool = False,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Decoded:
    """Decode `data` to an upright RGB (or L) picture, refusing oversized or broken input.

    `min_size(width, height)` receives the oriented full size and returns the smallest oriented size the
    caller can work from (or None for full size); it lets JPEGs decode at a reduced DCT scale.
    Raises `DecodeError` or `ImageTooLargeError` (both `ImageError`); MemoryError propagates (transient).
    """
    if not data:
        raise DecodeError("empty file (0 bytes): not an image")
    with warnings.catch_warnings():
        # Our max_pixels replaces Pillow's soft bomb warning; Pillow's data warnings (corrupt EXIF,
        # odd palettes) describe pictures we can still use, and must not become errors under -W error.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)
        img = _open(data, max_pixels)
        width, height = img.size
        if width * height > max_pixels:
            raise _too_large((width, height), max_pixels)
        if width < 1 or height < 1:
            raise DecodeError(f"image has no pixels ({width}x{height})")
        # JPEG: orientation comes from the header parsed at open, needed before drafting. Other formats
        # read it after loading (PNG's getexif() would otherwise load the file outside our error handling).
        is_jpeg = isinstance(img, JpegImagePlugin.JpegImageFile)
        orientation = _orientation(img) if is_jpeg else 1
        reduction = _draft(img, orientation, grayscale=grayscale, min_size=min_size) if is_jpeg else 1
        _load(img)
        if not is_jpeg:
            orientation = _orientation(img)
        try:
            picture = normalize_mode(img, grayscale=grayscale, keep_alpha=keep_alpha, background=background)
        except ValueError as exc:  # a mode Pillow cannot convert
            raise DecodeError(f"unsupported {img.format or 'image'} pixel mode {img.mode}: {_summary(exc)}") from None
    if orientation in _UPRIGHT:
        picture = picture.transpose(_UPRIGHT[orientation])
        width, height = (height, width) if orientation in _SWAPS_AXES else (width, height)
    picture.info = {}  # metadata is dropped: the output must carry none
    return Decoded(image=picture, size=(width, height), reduction=reduction, format=img.format)


def normalize_mode(
    img: Image.Image,
    *,
    grayscale: bool = False,
    keep_alpha: bool = False,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Convert any Pillow mode to RGB or L (L when `grayscale` or single-channel); may return `img`.

    Transparency (alpha band, palette alpha or a tRNS colour) is kept as RGBA or LA when `keep_alpha` and
    some pixel is not fully opaque; otherwise it is composited onto `background`.
    """
    if img.mode in _WIDE_GREY_MODES:
        img = _to_8bit(img)
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode in ("P", "L", "RGB") and img.has_transparency_data:
        img = img.convert("LA" if img.mode == "L" else "RGBA")
    if img.mode in _ALPHA_MODES:
        if img.mode in ("RGBa", "PA"):
            img = img.convert("RGBA")
        if keep_alpha and img.getchannel(img.mode[-1]).getextrema()[0] < 255:
            return img.convert("LA") if grayscale and img.mode == "RGBA" else img
        img = _flatten(img, background)
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, RGBX
    if grayscale and img.mode != "L":
        img = img.convert("L")
    return img


def encode_palette_png(
    palette: np.ndarray,
    indices: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    effort: str = "fast",
    keep_palette: bool = False,
) -> bytes:
    """An indexed PNG of `palette[indices]`: PLTE of exactly len(palette) entries, smallest bit depth.

    `palette` is (K, 3) RGB or (K,) grey, 1 <= K <= 256; `indices` (H, W) values < K. The depth follows the
    palette length: K <= 2 -> 1 bit, <= 4 -> 2, <= 16 -> 4, else 8 (see icsd.core.png). No metadata chunks.
    `effort` (fast, high, max) trades encode time for bytes, never pixels; `max` may reorder the palette and
    drop unused entries unless `keep_palette` (icsd.core.png).
    """
    palette = np.asarray(palette, dtype=np.uint8)
    if palette.ndim == 1:
        palette = np.repeat(palette[:, None], 3, axis=1)
    if palette.ndim != 2 or palette.shape[1] != 3 or not 1 <= len(palette) <= 256:
        raise ValueError(f"palette must be (K, 3) or (K,) with 1 <= K <= 256, got shape {palette.shape}")
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.size == 0:
        raise ValueError(f"indices must be a non-empty (H, W) array, got shape {indices.shape}")
    if int(indices.max()) >= len(palette) or int(indices.min()) < 0:
        raise ValueError(f"indices must be < palette length {len(palette)}, got max {int(indices.max())}")
    return encode_indexed_png(
        palette, np.ascontiguousarray(indices, dtype=np.uint8), alpha=alpha, effort=effort, keep_palette=keep_palette
    )


def encode_png(img: Image.Image) -> bytes:
    """A truecolour (RGB, RGBA) or grey (L, LA) PNG of `img`, without metadata (size-only output)."""
    if img.mode not in ("RGB", "L", "RGBA", "LA"):
        raise ValueError(f"encode_png needs an RGB, L, RGBA or LA image, got mode {img.mode}")
    return _save_png(img, _Z_RLE)


def _save_png(img: Image.Image, strategy: int) -> bytes:
    buf = io.BytesIO()
    # Pillow copies an ICC profile and transparency from img.info unless told otherwise.
    img.save(
        buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, compress_type=strategy, icc_profile=None,
        transparency=None, exif=b"",
    )
    return buf.getvalue()


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Image.open on the bytes (headers only), with every failure mapped to an ImageError."""
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise _too_large(_claimed_size(data), max_pixels) from None
    except UnidentifiedImageError:
        kind = _sniff(data)
        if kind is None:
            raise DecodeError(
                f"not an image Pillow can read (format not recognised; {len(data):,} bytes starting {data[:8]!r})"
            ) from None
        raise DecodeError(
            f"truncated or corrupt {kind} file: it starts like a {kind} but its header is unreadable"
        ) from None
    except (MemoryError, CoreError):
        raise
    except Exception as exc:  # plugins raise SyntaxError, struct.error, ValueError, EOFError ... on bad headers
        if _ran_out(exc):
            raise TruncatedImageError(f"truncated {_sniff(data) or 'image'} header: {_summary(exc)}") from None
        raise DecodeError(f"truncated or corrupt {_sniff(data) or 'image'} header: {_summary(exc)}") from None


def _too_large(size: tuple[int, int] | None, max_pixels: int) -> ImageTooLargeError:
    """The error for an image over our limit or over Pillow's hard one (2 x Image.MAX_IMAGE_PIXELS)."""
    if size is None:  # Pillow refused it, and its header does not tell us more
        return ImageTooLargeError(f"image is above Pillow's decompression-bomb limit of {_pillow_limit():,} pixels")
    width, height = size
    what = f"image is {width}x{height} ({width * height:,} pixels)"
    hard = _pillow_limit()
    if hard is not None and width * height > hard:
        if max_pixels < hard:
            return ImageTooLargeError(f"{what}, above the limit of {max_pixels:,} pixels set by max_pixels")
        return ImageTooLargeError(
            f"{what}, above Pillow's decompression-bomb limit of {hard:,} pixels, which max_pixels cannot raise"
        )
    return ImageTooLargeError(f"{what}, above the limit of {max_pixels:,} pixels; raise max_pixels to accept it")


def _pillow_limit() -> int | None:
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS


def _claimed_size(data: bytes) -> tuple[int, int] | None:
    """The size a header claims, read by the first plugin that accepts it (for error messages only).

    Image.open refuses a bomb without telling its size; the plugin constructors only parse headers.
    """
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        try:
            accepted = True if accept is None else accept(data[:16])
            if accepted and not isinstance(accepted, str):  # a str is Pillow's "almost, but" message
                return factory(io.BytesIO(data), "").size
        except Exception:
            continue
    return None


def _sniff(data: bytes) -> str | None:
    """The format a file's signature announces, to say "corrupt PNG" rather than "unknown format"."""
    for magic, kind in _SIGNATURES:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _load(img: Image.Image) -> None:
    """Decode the pixels of the first frame; a truncated or corrupt file is an error, not a partial image."""
    try:
        img.load()
    except Image.DecompressionBombError as exc:  # e.g. a GIF frame larger than its header claimed
        raise ImageTooLargeError(f"image is too large for Pillow to decode safely: {_summary(exc)}") from None
    except MemoryError:
        raise
    except Exception as exc:  # OSError "image file is truncated", SyntaxError "broken PNG file", zlib.error ...
        if _ran_out(exc):
            raise TruncatedImageError(f"truncated {img.format or 'image'} data: {_summary(exc)}") from None
        raise DecodeError(f"truncated or corrupt {img.format or 'image'} data: {_summary(exc)}") from None


def _ran_out(exc: Exception) -> bool:
    """Pillow's way of saying the data ended early ("image file is truncated", "Truncated File Read"): the
    file may still be arriving, unlike one that is corrupt (see TruncatedImageError)."""
    return isinstance(exc, OSError) and "truncated" in str(exc).lower()


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1..8); 1 when absent, invalid or unreadable (a picture is still a picture)."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def _draft(img: Image.Image, orientation: int, *, grayscale: bool, min_size: SizeHint | None) -> int:
    """Ask the JPEG decoder for RGB/L at the smallest DCT scale >= min_size; returns the reduction."""
    width, height = img.size
    swap = orientation in _SWAPS_AXES
    want = min_size(*((height, width) if swap else (width, height))) if min_size else None
    if want is not None and swap:
        want = (want[1], want[0])
    drafted = img.draft("L" if grayscale else "RGB", want)
    if drafted is None:
        return 1
    return max(1, round(width / drafted[1][2]))


def _flatten(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Composite an RGBA or LA image onto `background`."""
    colour = background if img.mode == "RGBA" else round(0.299 * background[0] + 0.587 * background[1]
                                                         + 0.114 * background[2])
    base = Image.new(_ALPHA_MODES[img.mode], img.size, colour)
    base.paste(img, mask=img)  # alpha band as the mask: out = colour * a + white * (1 - a)
    return base


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float grey to 8-bit L, by the value range the data evidently uses.

    16-bit modes (I;16*): 0..65535 -> 0..255 (rounded v / 257). Mode I: values already in 0..255 are
    kept, 0..65535 are treated as 16-bit, anything else is stretched min..max. Mode F: 0..1 -> 0..255,
    0..255 kept, anything else stretched min..max; NaN -> 0.
    """
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        out = (arr.astype(np.uint32) + 128) // 257
        return Image.fromarray(out.astype(np.uint8))
    values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if img.mode == "F" and low >= 0 and high <= 1:
        values = values * 255
    elif low >= 0 and high <= 255:
        pass
    elif img.mode == "I" and low >= 0 and high <= 65535:
        values = values / 257
    elif high > low:
        values = (values - low) * (255 / (high - low))
    else:  # a constant image outside 0..255
        values = np.clip(values, 0, 255)
    return Image.fromarray(np.rint(values).astype(np.uint8))


def _summary(exc: BaseException) -> str:
    """A library's exception message for ours: one line (whitespace collapsed), at most 200 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
