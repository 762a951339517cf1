"""Dithering kernels on hand-made images: a flat area's mean colour kept, edges left alone, ordered output fixed
by position, and the compiled kernels equal to the reference ones."""

from __future__ import annotations

import numpy as np
import pytest

from icsd.core import CompressParams, ParameterError
from icsd.core.quantization import dither, quantize
from tests import images

needs_compiled = pytest.mark.skipif(not dither.COMPILED, reason="the compiled dither kernel is not built")
METHODS = [dither.diffuse, dither.ordered]


def flat(value: tuple[int, int, int], shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.broadcast_to(np.array(value, dtype=np.uint8), (*shape, 3)).copy()


@pytest.mark.parametrize("method", METHODS)
def test_a_flat_area_between_two_entries_keeps_its_mean_colour(method) -> None:
    palette = np.array([[0, 0, 0], [100, 100, 100]], dtype=np.uint8)
    pixels = flat((30, 30, 30))
    mapped = palette[method(pixels, palette, 1.0)].astype(float)
    assert abs(mapped.mean() - 30) < 3  # exact mapping would give 0 everywhere
    assert (method(pixels, palette, 0.0) == 0).all()  # strength 0 is the exact mapping


@pytest.mark.parametrize("method", METHODS)
def test_grey_gradient_keeps_its_local_means(method) -> None:
    ramp = np.tile(np.linspace(0, 255, 256).astype(np.uint8), (64, 1))
    palette = np.array([0, 85, 170, 255], dtype=np.uint8)
    mapped = palette[method(ramp, palette, 1.0)].astype(float)
    exact = palette[np.abs(ramp[..., None].astype(int) - palette.astype(int)).argmin(axis=2)].astype(float)
    blocks = lambda a: a.reshape(8, 8, 16, 16).mean(axis=(1, 3))  # noqa: E731  16x16 block means
    assert np.abs(blocks(mapped) - blocks(ramp.astype(float))).mean() < 0.5 * np.abs(
        blocks(exact) - blocks(ramp.astype(float))).mean()


@pytest.mark.parametrize("method", METHODS)
def test_a_hard_edge_between_palette_colours_is_not_dithered(method) -> None:
    pixels = flat((0, 0, 0), (32, 32))
    pixels[:, 16:] = 250
    palette = np.array([[0, 0, 0], [128, 128, 128], [250, 250, 250]], dtype=np.uint8)
    out = method(pixels, palette, 1.0)
    assert (out[:, :16] == 0).all() and (out[:, 16:] == 2).all()


def test_edges_and_texture_get_no_dithering_weight_and_flat_areas_full() -> None:
    pixels = flat((40, 40, 40), (20, 20))
    pixels[:, 10:] = 200
    weights = dither.dither_weights(pixels)
    assert (weights[:, 8:12] == 0).all() and (weights[:, :7] == 1).all() and (weights[:, 13:] == 1).all()
    noise = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    assert dither.dither_weights(noise).max() == 0


def test_ordered_is_identical_between_runs_and_depends_only_on_position() -> None:
    pixels = images.sample_array("china.jpg")[:120, :160]
    q = quantize(pixels, 8)
    first = dither.ordered(pixels, q.palette, 0.8)
    assert np.array_equal(first, dither.ordered(pixels.copy(), q.palette, 0.8))
    # a crop starting on the 8x8 threshold grid maps each pixel as the whole image does, away from its border
    crop = dither.ordered(np.ascontiguousarray(pixels[16:, 24:]), q.palette, 0.8)
    assert np.array_equal(crop[2:-2, 2:-2], first[18:-2, 26:-2])


@needs_compiled
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("grey", "colors"), [(False, 2), (False, 16), (False, 64), (True, 5)])
def test_compiled_and_reference_kernels_agree_exactly(method, grey: bool, colors: int) -> None:
    pixels = images.sample_array("flower.jpg")[::6, ::6]
    pixels = np.ascontiguousarray(pixels[..., 1] if grey else pixels)
    q = quantize(pixels, colors)
    for strength in (1.0, 0.5):
        compiled = method(pixels, q.palette, strength)
        assert np.array_equal(compiled, method(pixels, q.palette, strength, compiled=False))


@pytest.mark.parametrize("name", ["diffuse", "ordered"])
def test_quantize_with_dither_uses_the_fitted_palette_and_lowers_low_pass_error(name: str) -> None:
    pixels = np.tile(np.linspace(20, 220, 200).astype(np.uint8), (40, 1))
    plain, dithered = quantize(pixels, 4), quantize(pixels, 4, dither=name)
    assert set(dithered.palette.tolist()) <= set(plain.palette.tolist())
    inside = (pixels[0] > plain.palette.min()) & (pixels[0] < plain.palette.max())  # colours a mix can reach
    band = lambda a: a.astype(float).reshape(40, 25, 8).mean(axis=(0, 2))  # noqa: E731  means of 8-column bands
    band_error = lambda q: np.abs(band(q.to_array()) - band(pixels))[inside[::8]].mean()  # noqa: E731
    assert band_error(dithered) < 0.5 * band_error(plain)


def test_bad_dither_parameters_name_themselves() -> None:
    with pytest.raises(ParameterError, match="dither"):
        CompressParams(dither="floyd")
    with pytest.raises(ParameterError, match="dither_strength"):
        CompressParams(dither="diffuse", dither_strength=1.5)
    with pytest.raises(ParameterError, match="dither"):
        quantize(np.zeros((4, 4), np.uint8) + np.arange(4, dtype=np.uint8), 2, dither="random")
