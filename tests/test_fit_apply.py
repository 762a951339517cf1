"""Quantization as fit then apply: palettes from histograms (one image's or merged), mapping to a given palette."""

from __future__ import annotations

import numpy as np
import pytest

import icsd
from icsd.core.errors import ParameterError
from tests.images import sample_array


@pytest.fixture(scope="module")
def photos() -> tuple[np.ndarray, np.ndarray]:
    return sample_array("china.jpg")[::4, ::4].copy(), sample_array("flower.jpg")[::4, ::4].copy()


def test_merged_histogram_equals_histogram_of_concatenation(photos) -> None:
    a, b = photos
    merged = icsd.merge_histograms([icsd.color_histogram(a), icsd.color_histogram(b)])
    whole = icsd.color_histogram(np.concatenate([a, b], axis=0))
    assert np.array_equal(merged.colors, whole.colors)
    assert np.array_equal(merged.counts, whole.counts)
    assert merged.total == a.shape[0] * a.shape[1] + b.shape[0] * b.shape[1]


def test_merging_grey_histograms_counts_each_level() -> None:
    a = np.array([[0, 0, 7]], dtype=np.uint8)
    b = np.array([[7, 9]], dtype=np.uint8)
    merged = icsd.merge_histograms([icsd.color_histogram(a), icsd.color_histogram(b)])
    assert merged.colors[:, 0].tolist() == [0, 7, 9] and merged.counts.tolist() == [2, 2, 1]


def test_merging_grey_with_rgb_is_refused(photos) -> None:
    with pytest.raises(ValueError, match="grey and RGB"):
        icsd.merge_histograms([icsd.color_histogram(photos[0]), icsd.color_histogram(photos[0][..., 0].copy())])


@pytest.mark.parametrize("strategy", ["kmeans", "sklearn-kmeans", "sklearn-minibatch"])
@pytest.mark.parametrize("k", [4, 64])
def test_fit_on_a_dataset_histogram_gives_a_sorted_palette_of_k(photos, strategy: str, k: int) -> None:
    merged = icsd.merge_histograms([icsd.color_histogram(p) for p in photos])
    palette = icsd.fit_palette(merged, k, strategy, seed=3)
    assert palette.dtype == np.uint8 and palette.shape[1] == 3 and 2 <= palette.shape[0] <= k
    assert np.array_equal(palette, np.unique(palette, axis=0))
    assert np.array_equal(palette, icsd.fit_palette(merged, k, strategy, seed=3))  # deterministic for a seed


def test_fit_then_apply_is_as_good_as_quantize_pixel_for_pixel(photos) -> None:
    """Apply maps each pixel to its exact nearest entry: the same squared error per pixel as quantize (only
    exact ties may pick another entry, at the same distance)."""
    pixels = photos[0]
    fused = icsd.quantize(pixels, 16)
    applied = icsd.apply_palette(pixels, icsd.fit_palette(pixels, 16))
    assert np.array_equal(applied.palette, fused.palette)
    err = [((q.to_array().astype(int) - pixels) ** 2).sum(axis=2) for q in (fused, applied)]
    assert np.array_equal(err[0], err[1])


def test_a_given_palette_is_kept_entry_for_entry() -> None:
    pixels = np.array([[[250, 0, 0], [0, 0, 240]]], dtype=np.uint8)
    palette = np.array([[0, 255, 0], [255, 0, 0], [0, 0, 255], [9, 9, 9]], dtype=np.uint8)
    q = icsd.quantize(pixels, palette=palette)
    assert np.array_equal(q.palette, palette)  # unused entries stay, in order
    assert q.indices.tolist() == [[1, 2]]


def test_a_palette_with_fewer_colours_than_k_is_used_as_given() -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    q = icsd.apply_palette(grey, np.array([0, 40], dtype=np.uint8))
    assert q.palette.tolist() == [0, 40] and set(np.unique(q.indices)) == {0, 1}
    assert q.indices[0, 0] == 0 and q.indices[7, 7] == 1


@pytest.mark.parametrize(
    ("palette", "message"),
    [
        (np.zeros((0, 3), np.uint8), "1 to 256 colours"),
        (np.zeros((257, 3), np.uint8), "1 to 256 colours"),
        (np.zeros((4, 4), np.uint8), r"shape \(K, 3\)"),
        (np.zeros((4, 3), np.float32), "dtype uint8"),
    ],
)
def test_bad_palettes_name_the_argument(palette: np.ndarray, message: str) -> None:
    with pytest.raises(ParameterError, match=message) as caught:
        icsd.apply_palette(np.zeros((2, 2, 3), np.uint8), palette)
    assert caught.value.argument == "palette"
