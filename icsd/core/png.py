"""Indexed-colour PNG writer: a palette and per-pixel indices in, PNG bytes out (NumPy and zlib only).

Written here rather than through Pillow because every compressed image is one, and Pillow's encoder spends
half its time trying four filters on every row. For packed indices (1, 2 or 4 bits per pixel) two will do,
picked per row by a count NumPy makes in one pass: the row as is ("None"), or minus the row above ("Up"),
which turns the rows a quantized photo repeats into zeros that zlib's run-length strategy stores in a few
bits. 8-bit indices are not filtered and use zlib's default strategy, as Pillow does for them.

The file has exactly IHDR, PLTE, one IDAT and IEND: no metadata.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["encode_indexed_png", "bit_depth"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPE_PALETTE = 3
_FILTER_NONE, _FILTER_UP = 0, 2


def bit_depth(colors: int) -> int:
    """The smallest PNG bit depth holding indices below `colors` (1 <= colors <= 256)."""
    return 1 if colors <= 2 else 2 if colors <= 4 else 4 if colors <= 16 else 8


def encode_indexed_png(palette: np.ndarray, indices: np.ndarray, *, level: int) -> bytes:
    """PNG bytes of `palette[indices]` at the smallest bit depth.

    `palette`: (K, 3) uint8 RGB, 1 <= K <= 256; `indices`: non-empty (H, W) uint8, every value < K (the
    caller checks both); `level`: zlib compression level.
    """
    height, width = indices.shape
    depth = bit_depth(len(palette))
    rows = _packed_rows(indices, depth)
    scanlines = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    if depth < 8:
        _filter_packed(rows, scanlines)
        strategy = zlib.Z_RLE
    else:
        scanlines[:, 0] = _FILTER_NONE
        scanlines[:, 1:] = rows
        strategy = zlib.Z_DEFAULT_STRATEGY
    deflate = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
    idat = deflate.compress(scanlines) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, _COLOUR_TYPE_PALETTE, 0, 0, 0)
    palette_bytes = np.ascontiguousarray(palette, dtype=np.uint8).tobytes()
    chunks = ((b"IHDR", header), (b"PLTE", palette_bytes), (b"IDAT", idat), (b"IEND", b""))
    return _SIGNATURE + b"".join(_chunk(kind, data) for kind, data in chunks)


def _filter_packed(rows: np.ndarray, scanlines: np.ndarray) -> None:
    """Fill `scanlines` (filter byte + row) with each row as is (None) or minus the row above (Up), whichever
    leaves fewer non-zero bytes: zlib's run-length strategy then stores the zero runs in a few bits."""
    up = scanlines[:, 1:]
    up[0] = rows[0]  # the first row's "above" is zeros
    np.subtract(rows[1:], rows[:-1], out=up[1:])  # modulo 256, as PNG defines it
    keep = np.count_nonzero(rows, axis=1) < np.count_nonzero(up, axis=1)
    scanlines[:, 0] = np.where(keep, _FILTER_NONE, _FILTER_UP)
    if keep.any():
        up[keep] = rows[keep]


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
