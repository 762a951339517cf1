"""Indexed-colour PNG writer: a palette (with optional alpha) and per-pixel indices in, PNG bytes out.

Written here rather than through Pillow because every compressed image is one, and what makes these files
small is not Pillow's per-row filter search but the deflate stream. Rows are not filtered (filter type None
on every row, as pngquant does): a palette index is a label, not a quantity, so subtracting neighbours only
hides the repeats LZ77 finds. The stream is made by libdeflate (the `deflate` package), whose near-optimal
parsing is 7-15 % smaller than zlib level 5 at similar speed; its level follows the bit depth (below).

Measured on 23 real photographs and wallpapers (bench/photos.py), total bytes against pngquant
`--speed 4 --nofs` quantizing the same pixels, and encode time against zlib level 5 with None/Up rows and
Z_RLE below 8 bits (what this writer did before):

    K     zlib 5      libdeflate  time, libdeflate / zlib 5
    16    1.13        0.93        ~1.4
    64    0.95        0.91        ~0.9
    256   0.88        0.87        ~0.8

The file has exactly IHDR, PLTE, tRNS (only when some entry is not opaque), one IDAT and IEND: no metadata.

Higher efforts (`ICSD_PNG_EFFORT`, opt-in) write the same pixels in fewer bytes, for more time: `high`
deflates the same rows at libdeflate's level 12; `max` hands the `fast` file to oxipng (level 2: it tries
the PNG filters and filter heuristics per image, and reorders the palette so neighbouring indices are
alike: most of its gain over `high`), keeping the colour type (always a palette PNG), and the PLTE entry
for entry when asked (a shared palette). Measured in docs/performance.md (bench/png_effort.py).
"""

from __future__ import annotations

import os
import struct
import zlib
from types import ModuleType

import deflate
import numpy as np

__all__ = ["encode_indexed_png", "bit_depth", "deflate_level", "EFFORTS"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPE_PALETTE = 3
_FILTER_NONE = 0
# libdeflate levels: packed rows (<= 16 colours) are short and cheap to search harder than 6 costs ~1.5x
# the time for 1 % (7: 0.916, 6: 0.929 of pngquant's bytes at K=16); 8-bit rows gain 1.5 % from 7 at no
# more time than the old writer took.
_LEVEL_PACKED = 6
_LEVEL_BYTES = 7
_LEVEL_HIGH = 12  # libdeflate's strongest: 5-8 % smaller than the fast levels, 10-20x their time
_OXIPNG_LEVEL = 2  # levels 3-4: 0.6-1.1 % fewer bytes for 3-5x the time (bench/png_effort.py)
EFFORTS = ("fast", "high", "max")


def bit_depth(colors: int) -> int:
    """The smallest PNG bit depth holding indices below `colors` (1 <= colors <= 256)."""
    return 1 if colors <= 2 else 2 if colors <= 4 else 4 if colors <= 16 else 8


def deflate_level(depth: int, effort: str = "fast") -> int:
    """The libdeflate level used for rows of `depth` bits per index at `effort` fast or high."""
    if effort == "high":
        return _LEVEL_HIGH
    return _LEVEL_BYTES if depth == 8 else _LEVEL_PACKED


def encode_indexed_png(
    palette: np.ndarray,
    indices: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    effort: str = "fast",
    keep_palette: bool = False,
) -> bytes:
    """PNG bytes of `palette[indices]` at the smallest bit depth.

    `palette`: (K, 3) uint8 RGB, 1 <= K <= 256; `indices`: non-empty (H, W) uint8, every value < K (the
    caller checks both); `alpha`: optional (K,) uint8 opacity per entry, written as tRNS up to the last entry
    that is not opaque (so put translucent entries first); `effort`: one of EFFORTS (see the module docstring;
    `max` raises ModuleNotFoundError naming the `png` extra when pyoxipng is not installed); `keep_palette`:
    `max` may not reorder or drop entries (every other effort never does).
    """
    if effort == "max":
        oxipng = _oxipng()
        reductions = not keep_palette
        return oxipng.optimize_from_memory(
            encode_indexed_png(palette, indices, alpha=alpha),
            level=_OXIPNG_LEVEL,
            color_type_reduction=False,
            palette_reduction=reductions,
            bit_depth_reduction=reductions,
        )
    height, width = indices.shape
    depth = bit_depth(len(palette))
    rows = _packed_rows(indices, depth)
    scanlines = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    scanlines[:, 0] = _FILTER_NONE
    scanlines[:, 1:] = rows
    idat = deflate.zlib_compress(scanlines.tobytes(), deflate_level(depth, effort))
    header = struct.pack(">IIBBBBB", width, height, depth, _COLOUR_TYPE_PALETTE, 0, 0, 0)
    palette_bytes = np.ascontiguousarray(palette, dtype=np.uint8).tobytes()
    chunks = [(b"IHDR", header), (b"PLTE", palette_bytes)]
    if alpha is not None:
        translucent = np.flatnonzero(np.asarray(alpha) != 255)
        if translucent.size:
            chunks.append((b"tRNS", np.asarray(alpha[: translucent[-1] + 1], dtype=np.uint8).tobytes()))
    chunks += [(b"IDAT", idat), (b"IEND", b"")]
    return _SIGNATURE + b"".join(_chunk(kind, data) for kind, data in chunks)


def _oxipng() -> ModuleType:
    """pyoxipng, its thread pool capped at one thread (as every kernel in a worker: one worker per core)."""
    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # read when oxipng first builds its pool
    try:
        import oxipng
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "PNG effort 'max' needs oxipng: pip install 'icsd[png]' (or choose effort fast or high)", name=exc.name
        ) from exc
    return oxipng


def _packed_rows(indices: np.ndarray, depth: int) -> np.ndarray:
    """(H, ceil(W * depth / 8)) bytes: `8 / depth` indices per byte, leftmost in the high bits, rows padded."""
    if depth == 8:
        return indices
    per_byte = 8 // depth
    height, width = indices.shape
    padding = -width % per_byte
    if padding:
        indices = np.pad(indices, ((0, 0), (0, padding)))
    groups = indices.reshape(height, -1, per_byte)
    packed = groups[:, :, 0] << (8 - depth)
    for position in range(1, per_byte):
        packed |= groups[:, :, position] << (8 - depth * (position + 1))
    return packed


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
