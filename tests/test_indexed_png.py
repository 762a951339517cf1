"""The indexed PNG writer: exact pixels at every bit depth and odd width, a strict chunk layout with valid
CRCs, the filters it promises, and files no larger than Pillow's own encoder writes for a quantized photo."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from icsd.core.codec import PNG_COMPRESS_LEVEL, encode_palette_png
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
    back, rgb = decode_exact(encode_indexed_png(palette, indices, level=PNG_COMPRESS_LEVEL))
    assert back.mode == "P" and back.size == (width, height)
    assert np.array_equal(rgb, palette[indices])
    assert images.png_bit_depth(encode_indexed_png(palette, indices, level=1)) == bit_depth(colors)


def test_chunks_are_exactly_header_palette_data_end_with_valid_crcs() -> None:
    palette = np.array([[255, 0, 0], [0, 0, 255], [10, 20, 30]], dtype=np.uint8)
    data = encode_indexed_png(palette, np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8), level=9)
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


@pytest.mark.parametrize("colors", [2, 4, 16])
def test_packed_rows_take_up_or_none_whichever_leaves_fewer_nonzero_bytes(colors: int) -> None:
    pattern = (np.arange(24) % colors).astype(np.uint8)
    zeros = np.zeros(24, dtype=np.uint8)
    indices = np.stack([pattern, pattern, zeros, zeros, pattern])
    data = encode_indexed_png(np.zeros((colors, 3), dtype=np.uint8), indices, level=PNG_COMPRESS_LEVEL)
    # a repeated row -> Up (all zeros); zeros under a pattern -> None; a row under zeros or the first row is
    # the same either way, and a tie goes to Up
    assert filter_bytes(data, 5) == [2, 2, 0, 2, 2]
    assert np.array_equal(decode_exact(data)[0], indices)


@pytest.mark.parametrize("colors", [17, 256])
def test_byte_indices_are_not_filtered(colors: int) -> None:
    indices = (np.arange(12 * 10).reshape(10, 12) % colors).astype(np.uint8)
    data = encode_indexed_png(np.zeros((colors, 3), dtype=np.uint8), indices, level=PNG_COMPRESS_LEVEL)
    assert filter_bytes(data, 10) == [0] * 10


@pytest.mark.parametrize("colors", [2, 4, 16, 64])
def test_a_quantized_photo_is_no_larger_than_pillows_encoding(colors: int) -> None:
    q = quantize(images.sample_array("china.jpg"), colors)
    ours = encode_palette_png(q.palette, q.indices)
    img = Image.fromarray(q.indices)
    img.putpalette(q.palette.tobytes())
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, compress_type=zlib.Z_RLE if colors <= 16 else 0)
    assert len(ours) <= 1.02 * buf.tell()
    assert np.array_equal(decode_exact(ours)[1], q.to_array())
