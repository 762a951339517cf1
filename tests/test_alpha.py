"""Transparency kept: colour and alpha quantized together, written as PLTE + tRNS with translucent entries
first; or flattened onto a chosen background."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from icsd.core import CompressParams, ParameterError, compress
from icsd.core.quantization.alpha import ALPHA_BOOST, WHITE_SHARE, composited_points, premultiply, quantize_alpha
from icsd.core.quantization.dither import dither_weights
from tests import images


def soft_disc(size: int = 96) -> np.ndarray:
    """An RGBA photo crop under a disc whose alpha falls from 255 to 0 over 12 px, clear outside."""
    rgb = images.sample_array("flower.jpg")[100 : 100 + size, 200 : 200 + size]
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size / 2, xx - size / 2)
    alpha = np.clip((size / 2 - 4 - radius) * (255 / 12), 0, 255).astype(np.uint8)
    return np.dstack([rgb, alpha])


def on_background(rgba: np.ndarray, level: int) -> np.ndarray:
    """RGBA (or LA) composited on a flat background of `level`, as float."""
    alpha = rgba[..., -1:].astype(np.float64) / 255
    return rgba[..., :-1] * alpha + level * (1 - alpha)


def psnr_on(original: np.ndarray, output: np.ndarray, level: int) -> float:
    mse = float(np.mean((on_background(original, level) - on_background(output, level)) ** 2))
    return 10 * np.log10(255**2 / mse)


def written(q) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The (H, W, C + 1) colour-and-alpha pixels a quantization writes."""
    return np.concatenate([q.palette, q.alpha[:, None]], axis=1)[q.indices]


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
    assert result.psnr is not None
    for level in (255, 0):  # close to the original whatever it is shown on
        assert psnr_on(pixels, rgba, level) > (15 if colors == 2 else 28)
    # The PSNR icsd reports is over the output composited on black and on white together (within the
    # rounding of composited uint8 values).
    both = np.concatenate([on_background(pixels, level) - on_background(rgba, level) for level in (0, 255)], axis=-1)
    assert result.psnr == pytest.approx(10 * np.log10(255**2 / float(np.mean(both**2))), abs=0.1)


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


def test_distance_weighs_the_errors_composited_on_black_and_on_white() -> None:
    rng = np.random.default_rng(1)
    for channels in (4, 2):
        a, b = (rng.integers(0, 256, (500, channels), dtype=np.uint8) for _ in range(2))
        on_black = on_background(a, 0) - on_background(b, 0)
        on_white = on_background(a, 255) - on_background(b, 255)
        da = a[:, -1:].astype(np.float64) - b[:, -1:]
        share = WHITE_SHARE
        expected = ((1 - share) * on_black**2 + share * on_white**2 + (ALPHA_BOOST**2 - 1) * share * (1 - share)
                    * da**2).sum(axis=1)
        got = ((composited_points(a) - composited_points(b)) ** 2).sum(axis=1)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-6)
        opaque, nearly = composited_points(np.array([[7] * (channels - 1) + [255], [7] * (channels - 1) + [254]],
                                                    np.uint8))[:, -1]
        assert np.rint(nearly) < np.rint(opaque) <= 255  # opaque points stay apart when rounded to uint8


def test_a_half_transparent_white_edge_stays_white_on_white_and_no_darker_on_black() -> None:
    """A dark opaque square holding a white one, rimmed by a one-pixel white edge at alpha 128, clear around:
    with room for only two entries besides the clear one, premultiplied distance gave the rim a dark grey,
    a dark ring on a white page; the rim must look white on white and be no worse on black than dropping it."""
    img = np.zeros((40, 40, 4), np.uint8)
    img[5:35, 5:35] = (60, 60, 60, 255)
    img[10:30, 10:30] = (255, 255, 255, 255)
    rim = np.zeros((40, 40), bool)
    rim[4:36, 4:36] = True
    rim[5:35, 5:35] = False
    img[rim] = (255, 255, 255, 128)
    out = written(quantize_alpha(img, 3))
    assert (on_background(out, 255)[rim] >= 240).all()
    assert (np.abs(on_background(out, 0)[rim] - on_background(img, 0)[rim]) <= 128).all()
    assert (out[10:30, 10:30, 3] == 255).all() and (out[10:30, 10:30, :3] >= 240).all()
    assert (out[5:9, 5:35] == (60, 60, 60, 255)).all()
    assert (out[..., 3][img[..., 3] == 0] == 0).all()
    full = written(quantize_alpha(img, 4))  # room for the rim's own entry: exact on both backgrounds
    assert (full == img).all()


@pytest.mark.parametrize("dither", ["none", "diffuse", "ordered"])
def test_opaque_pixels_get_opaque_entries_and_clear_ones_the_clear_entry_with_every_dither(dither: str) -> None:
    pixels = soft_disc(120)
    for colors in (8, 64):
        q = quantize_alpha(pixels, colors, dither=dither)
        out = written(q)
        assert (out[..., 3][pixels[..., 3] == 255] == 255).all()
        assert (q.indices[pixels[..., 3] == 0] == 0).all()
        assert list(q.alpha) == sorted(q.alpha) and q.alpha[0] == 0


def test_grey_with_alpha_uses_the_same_weighting() -> None:
    rgba = soft_disc()
    la = np.dstack([rgba[..., :3].mean(axis=2).astype(np.uint8), rgba[..., 3]])
    q = quantize_alpha(la, 16)
    assert q.palette.shape[1] == 1 and q.alpha[0] == 0
    out = written(q)
    assert (out[..., 1][la[..., 1] == 255] == 255).all()
    for level in (255, 0):
        assert psnr_on(la, out, level) > 30


def test_dither_weights_of_an_opaque_rgba_image_are_its_rgb_ones() -> None:
    """Alpha adds its own edges to where dithering stops, and nothing inside an opaque area."""
    soft = soft_disc()
    rgb = soft[..., :3]
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(dither_weights(opaque), dither_weights(rgb))
    assert dither_weights(rgb).min() == 0 < dither_weights(rgb).max()  # edges not dithered, flat areas are
    assert (dither_weights(soft) <= dither_weights(soft[..., :3])).all()
