"""The indexed PNG writer: exact pixels at every bit depth and odd width, a strict chunk layout with valid
CRCs, tRNS for alpha, no row filters, and files no larger than Pillow's encoding of a quantized photo."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from icsd.core.codec import encode_palette_png
from icsd.core.png import bit_depth, encode_indexed_png
from icsd.core.quantization import quantize
from tests import images


def decode_exact(data: bytes) -> tuple[Image.Image, np.ndarray]:
    back = Image.open(io.BytesIO(data))
    back.load()  # Pillow checks every chunk's CRC and the zlib stream here
    return back, np.asarray(back.convert("RGB"))


@pytest.mark.parametrize("colors", [1, 2, 3, 4, 5, 9, 16, 17, 100, 256])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 9), (7, 1), (5, 3), (13, 31), (64, 66)])
def test_pixels_survive_at_every_depth_and_width(colors: int, height: int, width: int) -> None:
    rng = np.random.default_rng(colors * 1000 + width)
    palette = rng.integers(0, 256, (colors, 3), dtype=np.uint8)
    indices = rng.integers(0, colors, (height, width), dtype=np.uint8)
    back, rgb = decode_exact(encode_indexed_png(palette, indices))
    assert back.mode == "P" and back.size == (width, height)
    assert np.array_equal(rgb, palette[indices])
    assert images.png_bit_depth(encode_indexed_png(palette, indices)) == bit_depth(colors)


def test_chunks_are_exactly_header_palette_data_end_with_valid_crcs() -> None:
    palette = np.array([[255, 0, 0], [0, 0, 255], [10, 20, 30]], dtype=np.uint8)
    data = encode_indexed_png(palette, np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload), kind
        kinds.append(kind)
        pos += 12 + length
    assert pos == len(data) and kinds == [b"IHDR", b"PLTE", b"IDAT", b"IEND"]
    chunks = dict(images.png_chunks(data))
    assert struct.unpack(">IIBBBBB", chunks[b"IHDR"]) == (3, 2, 2, 3, 0, 0, 0)  # 2-bit palette, no interlace
    assert chunks[b"PLTE"] == palette.tobytes()


def filter_bytes(data: bytes, height: int) -> list[int]:
    raw = zlib.decompress(dict(images.png_chunks(data))[b"IDAT"])
    stride = len(raw) // height
    return [raw[row * stride] for row in range(height)]


@pytest.mark.parametrize("colors", [2, 4, 16, 17, 256])
def test_no_row_is_filtered(colors: int) -> None:
    """Indices are labels: filter None on every row (as pngquant), the repeats are left to deflate."""
    pattern = (np.arange(24) % colors).astype(np.uint8)
    indices = np.stack([pattern, pattern, np.zeros(24, dtype=np.uint8), pattern[::-1], pattern])
    data = encode_indexed_png(np.zeros((colors, 3), dtype=np.uint8), indices)
    assert filter_bytes(data, 5) == [0] * 5
    assert np.array_equal(decode_exact(data)[0], indices)


def test_alpha_is_written_as_a_trns_chunk_up_to_the_last_translucent_entry() -> None:
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    alpha = np.array([0, 128, 255, 255], dtype=np.uint8)
    indices = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.uint8)
    data = encode_indexed_png(palette, indices, alpha=alpha)
    assert [kind for kind, _ in images.png_chunks(data)] == [b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"]
    assert dict(images.png_chunks(data))[b"tRNS"] == bytes([0, 128])
    rgba = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))
    assert np.array_equal(rgba, np.concatenate([palette, alpha[:, None]], axis=1)[indices])
    opaque = encode_indexed_png(palette, indices, alpha=np.full(4, 255, dtype=np.uint8))
    assert b"tRNS" not in [kind for kind, _ in images.png_chunks(opaque)]


@pytest.mark.parametrize("colors", [2, 4, 16, 64])
def test_a_quantized_photo_is_no_larger_than_pillows_encoding(colors: int) -> None:
    q = quantize(images.sample_array("china.jpg"), colors)
    ours = encode_palette_png(q.palette, q.indices)
    img = Image.fromarray(q.indices)
    img.putpalette(q.palette.tobytes())
    buf = io.BytesIO()
    img.save(buf, format="PNG")  # Pillow's defaults: zlib level 6, no filter for palette images
    assert len(ours) <= 1.01 * buf.tell()
    assert np.array_equal(decode_exact(ours)[1], q.to_array())
