"""Transparency kept: colour and alpha quantized together, written as PLTE + tRNS with translucent entries
first; or flattened onto a chosen background."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from icsd.core import CompressParams, ParameterError, compress
from icsd.core.quantization.alpha import premultiply, quantize_alpha
from tests import images


def soft_disc(size: int = 96) -> np.ndarray:
    """An RGBA photo crop under a disc whose alpha falls from 255 to 0 over 12 px, clear outside."""
    rgb = images.sample_array("flower.jpg")[100 : 100 + size, 200 : 200 + size]
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size / 2, xx - size / 2)
    alpha = np.clip((size / 2 - 4 - radius) * (255 / 12), 0, 255).astype(np.uint8)
    return np.dstack([rgb, alpha])


def decoded_rgba(data: bytes) -> tuple[Image.Image, np.ndarray]:
    back = Image.open(io.BytesIO(data))
    back.load()
    return back, np.asarray(back.convert("RGBA"))


@pytest.mark.parametrize("colors", [2, 16, 256])
def test_rgba_round_trip_keeps_clear_clear_and_opaque_opaque(colors: int) -> None:
    pixels = soft_disc()
    result = compress(images.encode(Image.fromarray(pixels, "RGBA"), "PNG"), CompressParams(colors=colors, scale=1))
    back, rgba = decoded_rgba(result.data)
    assert back.mode == "P" and back.info.get("transparency") is not None
    assert (rgba[..., 3][pixels[..., 3] == 0] == 0).all()
    if colors > 2:
        assert (rgba[..., 3][pixels[..., 3] == 255] == 255).all()
    chunks = dict(images.png_chunks(result.data))
    trns, plte = chunks[b"tRNS"], chunks[b"PLTE"]
    assert len(plte) == 3 * result.colors and len(trns) <= result.colors
    assert list(trns) == sorted(trns) and trns[0] == 0  # translucent first, the clear entry at index 0
    assert result.psnr is not None and result.psnr > (12 if colors == 2 else 30)


def test_fully_transparent_pixels_share_one_entry_whatever_colour_they_stored() -> None:
    pixels = soft_disc()
    pixels[..., :3][pixels[..., 3] == 0] = np.random.default_rng(0).integers(0, 256, 3, dtype=np.uint8)
    q = quantize_alpha(pixels, 16)
    clear = q.indices[pixels[..., 3] == 0]
    assert (clear == 0).all() and q.alpha[0] == 0 and (q.alpha[1:] > 0).all()


def test_grey_with_alpha_and_palette_transparency_keep_alpha() -> None:
    for mode in ("LA", "P+transparency"):
        sample = images.mode_sample(mode, (90, 70))
        data = images.encode(sample, "PNG")
        _, rgba = decoded_rgba(compress(data, CompressParams(scale=1)).data)
        assert (rgba[:, :45, 3] == 0).all() and (rgba[:, 45:, 3] == 255).all(), mode


def test_premultiplied_distance_ignores_the_colour_of_clear_pixels() -> None:
    pixels = np.array([[[255, 0, 0, 0], [0, 255, 0, 0], [10, 20, 30, 255]]], dtype=np.uint8)
    assert premultiply(pixels).tolist() == [[[0, 0, 0, 0], [0, 0, 0, 0], [10, 20, 30, 255]]]


@pytest.mark.parametrize(("background", "expected"), [((255, 255, 255), 255), ((0, 0, 0), 0)])
def test_flatten_composites_onto_the_background(background: tuple[int, int, int], expected: int) -> None:
    data = images.encode(images.mode_sample("RGBA", (90, 70)), "PNG")
    result = compress(data, CompressParams(scale=1, alpha="flatten", background=background))
    _, rgba = decoded_rgba(result.data)
    assert b"tRNS" not in dict(images.png_chunks(result.data))
    assert (rgba[:, :45, :3] == expected).all() and (rgba[..., 3] == 255).all()


def test_an_opaque_rgba_image_is_written_as_before_without_trns() -> None:
    opaque = np.dstack([images.sample_array("china.jpg")[:64, :64], np.full((64, 64), 255, np.uint8)])
    rgba = compress(images.encode(Image.fromarray(opaque, "RGBA"), "PNG"), CompressParams(scale=1))
    rgb = compress(images.encode(Image.fromarray(opaque[..., :3]), "PNG"), CompressParams(scale=1))
    assert rgba.data == rgb.data


def test_bad_alpha_parameters_name_themselves() -> None:
    with pytest.raises(ParameterError, match="alpha"):
        CompressParams(alpha="drop")
    with pytest.raises(ParameterError, match="background"):
        CompressParams(background=(0, 0, 300))


def test_ihdr_says_palette() -> None:
    result = compress(images.encode(Image.fromarray(soft_disc(), "RGBA"), "PNG"), CompressParams(scale=2))
    assert struct.unpack(">IIBBBBB", dict(images.png_chunks(result.data))[b"IHDR"])[3] == 3
