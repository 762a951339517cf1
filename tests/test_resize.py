"""Downsampling geometry: the three size rules, the exact-size crop, stride pixel skipping, draft mapping."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from icsd.core.params import CompressParams, Resample
from icsd.core.resize import DRAFT_GAP, crop_box, downsample, draft_size, stride_indices, target_size
from tests.images import gradient, sample_array


def coords_image(width: int, height: int) -> Image.Image:
    """RGB where red = x and green = y (sizes <= 256), so every pixel says where it came from."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[..., 0] = np.arange(width)[None, :]
    arr[..., 1] = np.arange(height)[:, None]
    return Image.fromarray(arr)


# --- scale rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [
        ((1000, 800), 5, (200, 160)),
        ((1003, 801), 5, (201, 161)),  # not divisible: round up, the last partial block counts
        ((640, 427), 5, (128, 86)),
        ((1000, 800), 2.5, (400, 320)),
        ((21, 42), 1.4, (15, 30)),  # 21 / 1.4 is 15.000000000000002 in floating point
        ((3, 2), 5, (1, 1)),  # at least one pixel
        ((7, 9), 1, (7, 9)),
        ((1, 100_000), 5, (1, 20_000)),
    ],
)
def test_scale_rule_rounds_up_per_side(size: tuple[int, int], scale: float, expected: tuple[int, int]) -> None:
    assert target_size(*size, CompressParams(scale=scale)) == expected


def test_box_downsample_averages_blocks() -> None:
    arr = np.arange(100, dtype=np.uint8).reshape(10, 10)
    out = np.asarray(downsample(Image.fromarray(arr), CompressParams(scale=5)))
    expected = arr.reshape(2, 5, 2, 5).mean(axis=(1, 3))
    assert out.shape == (2, 2)
    assert np.abs(out - expected).max() <= 0.5


@pytest.mark.parametrize("resample", list(Resample))
def test_every_resampler_gives_the_target_size(resample: Resample) -> None:
    img = Image.fromarray(sample_array())
    out = downsample(img, CompressParams(scale=5, resample=resample))
    assert out.size == (128, 86)
    assert out.mode == "RGB"


def test_nothing_to_do_returns_the_same_image() -> None:
    img = coords_image(30, 20)
    assert downsample(img, CompressParams(scale=1)) is img
    assert downsample(img, CompressParams(scale=1, resample="stride")) is img
    assert downsample(img, CompressParams(max_size=(100, 100))) is img


# --- stride (the original system's pixel skipping) ----------------------------------------------------


def test_stride_keeps_first_and_last_row_and_column() -> None:
    img = coords_image(23, 17)  # 23 = 4*5 + 3, 17 = 3*5 + 2: a[::5] would miss the last row and column
    out = np.asarray(downsample(img, CompressParams(scale=5, resample="stride")))
    assert out.shape == (4, 5, 3)  # ceil(17/5), ceil(23/5)
    assert out[0, :, 0].tolist() == [0, 5, 10, 15, 22]
    assert out[:, 0, 1].tolist() == [0, 5, 10, 16]


def test_stride_equals_plain_slicing_when_the_last_pixel_is_on_the_grid() -> None:
    img = coords_image(21, 16)  # 21 = 4*5 + 1, 16 = 3*5 + 1
    out = np.asarray(downsample(img, CompressParams(scale=5, resample="stride")))
    assert np.array_equal(out, np.asarray(img)[::5, ::5])


def test_stride_indices() -> None:
    assert stride_indices(0, 10, 4, 3).tolist() == [0, 3, 6, 9]
    assert stride_indices(0, 11, 4, 3).tolist() == [0, 3, 6, 10]
    assert stride_indices(0, 5, 1, 5).tolist() == [0]
    assert stride_indices(0, 100, 5).tolist() == [0, 25, 50, 74, 99]  # evenly spaced, both ends kept


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGBA", "I;16", "F", "CMYK"])
def test_stride_works_in_any_mode(mode: str) -> None:
    img = Image.fromarray(gradient(23, 17)).convert(mode)
    out = downsample(img, CompressParams(scale=5, resample="stride"))
    assert (out.mode, out.size) == (mode, (5, 4))
    assert out.getpixel((4, 3)) == img.getpixel((22, 16))
    assert out.getpixel((1, 1)) == img.getpixel((5, 5))
    if mode == "P":
        assert out.getpalette() == img.getpalette()


def test_stride_with_exact_size_samples_the_crop() -> None:
    img = coords_image(200, 100)  # crop box for 50x50 is x 50..150
    out = np.asarray(downsample(img, CompressParams(size=(50, 50), resample="stride")))
    assert out.shape == (50, 50, 3)
    assert (out[0, 0, 0], out[0, -1, 0]) == (50, 149)
    assert (out[0, 0, 1], out[-1, 0, 1]) == (0, 99)


# --- max_size rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "bound", "expected"),
    [
        ((4000, 3000), (1024, 1024), (1024, 768)),  # landscape
        ((3000, 4000), (1024, 1024), (768, 1024)),  # portrait
        ((1000, 333), (100, 100), (100, 33)),
        ((100_000, 1), (100, 100), (100, 1)),  # never below one pixel
        ((800, 600), (1024, 1024), (800, 600)),  # fits already: never upsampled
        ((1024, 10), (1024, 1024), (1024, 10)),
        ((500, 500), (400, 1000), (400, 400)),
    ],
)
def test_max_size_fits_without_upsampling(
    size: tuple[int, int], bound: tuple[int, int], expected: tuple[int, int]
) -> None:
    params = CompressParams(max_size=bound)
    out = target_size(*size, params)
    assert out == expected
    assert out[0] <= bound[0] and out[1] <= bound[1]


def test_max_size_downsample_keeps_aspect() -> None:
    out = downsample(Image.fromarray(sample_array()), CompressParams(max_size=(320, 320)))
    assert out.size == (320, 214)  # 427 * 0.5 = 213.5 -> 214


# --- exact size rule: cover, then centre-crop ------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected_box"),
    [
        ((2000, 1000), (500.0, 0.0, 1500.0, 1000.0)),  # landscape: crop left and right
        ((1000, 2000), (0.0, 500.0, 1000.0, 1500.0)),  # portrait: crop top and bottom
        ((640, 640), (0.0, 0.0, 640.0, 640.0)),  # same aspect: nothing cropped
        ((50, 40), (5.0, 0.0, 45.0, 40.0)),  # smaller than the target: crop, then upsample
    ],
)
def test_exact_size_crop_box_is_centred_with_the_target_aspect(
    size: tuple[int, int], expected_box: tuple[float, float, float, float]
) -> None:
    params = CompressParams(size=(100, 100))
    assert crop_box(*size, params) == pytest.approx(expected_box)
    assert target_size(*size, params) == (100, 100)


def test_exact_size_non_square_target() -> None:
    params = CompressParams(size=(224, 112))  # aspect 2
    assert crop_box(1000, 1000, params) == pytest.approx((0.0, 250.0, 1000.0, 750.0))
    assert crop_box(3000, 1000, params) == pytest.approx((500.0, 0.0, 2500.0, 1000.0))


def test_exact_size_downsample_takes_the_centre() -> None:
    img = coords_image(200, 100)
    out = np.asarray(downsample(img, CompressParams(size=(20, 20))))
    assert out.shape == (20, 20, 3)
    # 20 output columns average source columns 50..149 in blocks of 5: the first block's mean x is 52
    assert abs(int(out[0, 0, 0]) - 52) <= 1
    assert abs(int(out[0, -1, 0]) - 147) <= 1


def test_exact_size_upsamples_a_small_image() -> None:
    out = downsample(coords_image(50, 40), CompressParams(size=(100, 100)))
    assert out.size == (100, 100)


def test_size_rule_precedence() -> None:
    both = CompressParams(size=(64, 64), max_size=(10, 10), scale=2)
    assert target_size(640, 480, both) == (64, 64)
    assert target_size(640, 480, CompressParams(max_size=(100, 100), scale=2)) == (100, 75)


# --- reduced (draft) decodes --------------------------------------------------------------------------


def test_draft_size_keeps_the_gap() -> None:
    assert draft_size(4000, 3000, CompressParams(scale=5)) == (800 * DRAFT_GAP, 600 * DRAFT_GAP)
    assert draft_size(4000, 3000, CompressParams(scale=1.5)) is None  # no reduction possible
    assert draft_size(4000, 3000, CompressParams(scale=8, resample="stride")) is None
    # exact size: the whole image must still cover the target after reduction (the crop is 3000x3000)
    assert draft_size(4000, 3000, CompressParams(size=(100, 100))) == (267, 200)


def test_downsample_of_a_reduced_image_gives_the_same_geometry() -> None:
    # A smooth ramp shows any misplaced box; 643x427 is not divisible by 4 (last reduced pixel is partial).
    full = Image.fromarray(gradient(643, 427))
    params = CompressParams(scale=5)
    quarter = full.reduce(4)  # 161x107, what a 1/4-scale JPEG decode gives
    direct = downsample(full, params)
    via = downsample(quarter, params, source_size=full.size, reduction=4)
    assert via.size == direct.size == (129, 86)
    assert np.abs(np.asarray(via, dtype=np.int16) - np.asarray(direct, dtype=np.int16)).max() <= 1


def test_stride_refuses_a_reduced_image() -> None:
    with pytest.raises(ValueError, match="full-resolution"):
        downsample(coords_image(10, 10), CompressParams(resample="stride"), source_size=(40, 40), reduction=4)
