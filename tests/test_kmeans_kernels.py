"""Tests for the k-means levels and kernels: the binned histogram levels, the NumPy path's coarse-to-fine
choices, and the compiled kernels (`_lloyd.c`) against brute force and the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from icsd.core.quantization import Quantized, compiled, quantize
from icsd.core.quantization import kmeans as kmeans_module
from icsd.core.quantization.bins import Bins, binned, coarsened, refined
from icsd.core.quantization.histogram import histogram
from icsd.core.quantization.lloyd import lloyd
from icsd.core.quantization.nearest import nearest


def _mse(q: Quantized, pixels: np.ndarray) -> float:
    diff = q.to_array().astype(np.float64) - pixels
    return float(np.mean(diff * diff))


@pytest.fixture
def numpy_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "AVAILABLE", False)


needs_compiled = pytest.mark.skipif(not compiled.AVAILABLE, reason="the compiled kernels are not built")


# --- coarse-to-fine levels (5-bit bins for small K, 7-bit bins for large K) ---------------------------


@pytest.fixture(scope="module")
def noisy_photo() -> np.ndarray:
    """china.jpg at half size with sensor-like noise: many distinct colours, as camera photos have, so the
    binned levels are all used."""
    from sklearn.datasets import load_sample_image

    rgb = np.asarray(Image.fromarray(load_sample_image("china.jpg")).reduce(2)).astype(np.int16)
    noise = np.random.default_rng(0).integers(-6, 7, size=rgb.shape, dtype=np.int16)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def _as_set(bins: Bins) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.lexsort(bins.coords.T[::-1])
    return bins.coords[order], bins.weights[order], bins.sums[order]


def test_binned_table_matches_sorting(noisy_photo: np.ndarray) -> None:
    hist = histogram(noisy_photo)
    bins = binned(hist.colors, hist.counts, 6)  # 18-bit keys: the dense-table path
    key = (hist.colors >> 2).astype(np.int64)
    uniq, inverse = np.unique((key[:, 0] << 12) | (key[:, 1] << 6) | key[:, 2], return_inverse=True)
    assert np.array_equal(bins.inverse, inverse.ravel())
    assert np.array_equal(bins.weights, np.bincount(inverse.ravel(), weights=hist.counts))
    assert np.array_equal(bins.coords[:, 0], uniq >> 12)
    np.testing.assert_array_equal(bins.coords[bins.inverse], key)


def test_coarsened_and_refined_equal_direct_binning(noisy_photo: np.ndarray) -> None:
    hist = histogram(noisy_photo)
    b6 = binned(hist.colors, hist.counts, 6)
    b5, b7 = coarsened(b6, 6), None
    for got, want in zip(_as_set(b5), _as_set(binned(hist.colors, hist.counts, 5)), strict=True):
        assert np.array_equal(got, want)
    assert np.array_equal(b5.coords[b5.inverse], b6.coords >> 1)  # inverse: fine bin -> coarse bin
    b7, parent = refined(b6, hist.colors, hist.counts, 6)
    for got, want in zip(_as_set(b7), _as_set(binned(hist.colors, hist.counts, 7)), strict=True):
        assert np.array_equal(got, want)
    assert np.array_equal(b7.coords[b7.inverse], hist.colors >> 1)  # inverse: colour -> bin
    assert np.array_equal(parent[b7.inverse], b6.inverse)


@pytest.mark.parametrize("k", [16, 256])
def test_coarse_to_fine_levels_are_used_and_exact(
    k: int, noisy_photo: np.ndarray, monkeypatch: pytest.MonkeyPatch, numpy_kernel: None
) -> None:
    """NumPy path: K <= 32 starts on 5-bit bins, K >= 128 adds 7-bit bins: the palette is still assigned exactly,
    deterministic, and as good as skipping those levels."""
    calls: list[str] = []
    for name in ("coarsened", "refined"):
        real = getattr(kmeans_module, name)
        monkeypatch.setattr(kmeans_module, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    q = quantize(noisy_photo, k)
    assert calls == (["coarsened"] if k <= kmeans_module.COARSER_MAX_K else ["refined"])
    assert 2 <= q.palette.shape[0] <= k
    again = quantize(noisy_photo, k)
    assert np.array_equal(q.palette, again.palette) and np.array_equal(q.indices, again.indices)
    x = noisy_photo.reshape(-1, 3).astype(np.int64)
    pal = q.palette.astype(np.int64)
    best = np.full(len(x), np.iinfo(np.int64).max)
    for row in pal:  # exact nearest distance, one palette entry at a time (bounded memory)
        np.minimum(best, ((x - row) ** 2).sum(axis=1), out=best)
    chosen = ((x - pal[q.indices.ravel()]) ** 2).sum(axis=1)
    assert np.array_equal(chosen, best)
    # Same error (within 0.5 %) as going straight from the 6-bit bins to the exact colours.
    monkeypatch.setattr(kmeans_module, "COARSER_MAX_K", 0)
    monkeypatch.setattr(kmeans_module, "MID_MIN_K", 10**9)
    direct = quantize(noisy_photo, k)
    assert _mse(q, noisy_photo) <= 1.005 * _mse(direct, noisy_photo)


def test_coarser_level_skipped_when_too_few_bins(
    noisy_photo: np.ndarray, monkeypatch: pytest.MonkeyPatch, numpy_kernel: None
) -> None:
    """NumPy path: below `_MIN_POINTS_PER_CENTRE` coarse bins per centre the 5-bit level is skipped: Lloyd starts on
    the 6-bit bins, and the result is still a valid exact palette."""
    hist = histogram(noisy_photo)
    n_bins = binned(hist.colors, hist.counts, 6).weights.size
    seen: list[int] = []
    real = kmeans_module.lloyd
    monkeypatch.setattr(kmeans_module, "lloyd", lambda x, *a, **kw: seen.append(x.shape[0]) or real(x, *a, **kw))
    monkeypatch.setattr(kmeans_module, "_MIN_POINTS_PER_CENTRE", 10**9)
    q = quantize(noisy_photo, 16)
    assert seen == [n_bins, hist.colors.shape[0]]
    assert 2 <= q.palette.shape[0] <= 16


# --- compiled kernels ----------------------------------------------------------------------------------


def _weighted_points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct integer colours with integer weights: (x float64, w int64, wx int64)."""
    rng = np.random.default_rng(seed)
    colours = np.unique(rng.integers(0, 256, (n, 3)), axis=0).astype(np.uint8)
    w = rng.integers(1, 50, colours.shape[0]).astype(np.int64)
    return colours.astype(np.float64), w, w[:, None] * colours


@needs_compiled
@pytest.mark.parametrize("k", [1, 2, 7, 33, 256])
def test_compiled_assign_is_exact_nearest(k: int) -> None:
    x, _, _ = _weighted_points(3000, seed=k)
    rng = np.random.default_rng(100 + k)
    centres = np.rint(rng.uniform(0, 255, (k, 3)))
    if k > 2:
        centres[1] = centres[0]  # a repeated palette row, as rounding can make
    d2 = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    want = d2.min(axis=1)
    for guess in (None, rng.integers(0, k, x.shape[0])):
        got = compiled.assign(x, centres, guess)
        assert got.dtype == np.int32
        assert np.array_equal(d2[np.arange(len(x)), got], want)


@needs_compiled
@pytest.mark.parametrize("k", [2, 16, 64])
def test_compiled_lloyd_reaches_a_lloyd_fixed_point_with_exact_means(k: int) -> None:
    """With tol=0 the loop runs until no point moves: every point is at its nearest centre and every centre
    is the exact weighted mean of its points."""
    x, w, wx = _weighted_points(4000, seed=k)
    start = x[np.random.default_rng(k).choice(len(x), k, replace=False)]
    centres, labels, iterations = compiled.lloyd(x, w, wx, start, tol=0.0, max_iter=1000, relax=1.8)
    assert 1 <= iterations < 1000
    nearest_labels, _ = nearest(x, centres)
    d2 = ((x - centres[labels]) ** 2).sum(axis=1)
    best = ((x - centres[nearest_labels]) ** 2).sum(axis=1)
    np.testing.assert_allclose(d2, best, rtol=0, atol=1e-9)
    mass = np.bincount(labels, weights=w, minlength=k)
    assert (mass > 0).all()
    for j in range(3):
        np.testing.assert_allclose(centres[:, j], np.bincount(labels, weights=wx[:, j], minlength=k) / mass)


@needs_compiled
@pytest.mark.parametrize("k", [8, 32])
def test_compiled_lloyd_matches_numpy_lloyd(k: int) -> None:
    """Same start, both run to a fixed point (plain Lloyd steps): the same partition."""
    x, w, wx = _weighted_points(3000, seed=7 * k)
    start = x[np.random.default_rng(k).choice(len(x), k, replace=False)]
    c_centres, c_labels, _ = compiled.lloyd(x, w, wx, start, tol=0.0, max_iter=1000, relax=1.0)
    part = lloyd(x, w.astype(np.float64), start, tol=0.0, max_iter=1000, relax=1.0)
    assert np.array_equal(c_labels, part.labels)
    np.testing.assert_allclose(c_centres, part.centres, rtol=0, atol=1e-9)


@needs_compiled
def test_compiled_lloyd_reseeds_empty_clusters() -> None:
    """A centre no point is nearest to (far from all data) is moved onto the worst-served point."""
    x, w, wx = _weighted_points(500, seed=3)
    x, w, wx = x[x[:, 0] < 100], w[x[:, 0] < 100], wx[x[:, 0] < 100]
    start = np.array([[20.0, 50, 50], [80, 200, 200], [255, 255, 255]])  # the last one owns nothing
    centres, labels, _ = compiled.lloyd(x, w, wx, start, tol=0.0, max_iter=1000, relax=1.0)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert centres[2, 0] < 100


@needs_compiled
def test_compiled_split_separates_two_tight_clusters() -> None:
    coords = np.array([[10, 10, 10], [12, 10, 10], [200, 40, 40], [204, 40, 40]], dtype=np.uint8)
    w = np.array([3, 1, 2, 2])
    centres, labels = compiled.split(coords, w, w[:, None] * coords, 2, 256)
    assert labels[0] == labels[1] != labels[2] == labels[3]
    got = centres[np.argsort(centres[:, 0])]
    np.testing.assert_allclose(got, [[10.5, 10, 10], [202, 40, 40]])


@needs_compiled
def test_compiled_split_stops_when_points_run_out() -> None:
    coords = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.uint8)
    w = np.ones(3, dtype=np.int64)
    centres, labels = compiled.split(coords, w, w[:, None] * coords, 10, 16)
    assert centres.shape == (3, 3) and sorted(labels) == [0, 1, 2]


@needs_compiled
def test_compiled_kernels_reject_bad_arguments() -> None:
    x, w, wx = _weighted_points(100, seed=1)
    with pytest.raises(ValueError, match="not a centre index"):
        compiled.lloyd(x, w, wx, x[:4], np.full(len(x), 9), tol=1e-4, max_iter=10, relax=1.0)
    with pytest.raises(ValueError, match="expected"):
        compiled.lloyd(x, w[:-1], wx, x[:4], tol=1e-4, max_iter=10, relax=1.0)
    with pytest.raises(ValueError, match="not below"):
        compiled.split(np.full((2, 3), 70, np.uint8), w[:2], wx[:2], 2, 64)


@needs_compiled
@pytest.mark.parametrize("k", [16, 64, 256])
def test_compiled_path_is_no_worse_than_numpy_path(
    k: int, noisy_photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a photo-like image the compiled path's error is at most the NumPy path's (+0.3 %)."""
    fast = quantize(noisy_photo, k)
    monkeypatch.setattr(compiled, "AVAILABLE", False)
    reference = quantize(noisy_photo, k)
    assert fast.palette.shape[0] <= k
    assert _mse(fast, noisy_photo) <= 1.003 * _mse(reference, noisy_photo)


# --- compiled pixel passes (`_pixels.c`): bins and nearest entries read straight from the pixels ---------


@needs_compiled
@pytest.mark.parametrize("bits", [3, 5, 6])
def test_pixel_bins_equal_binning_the_exact_histogram(bits: int, noisy_photo: np.ndarray) -> None:
    hist = histogram(noisy_photo)
    want = binned(hist.colors, hist.counts, bits)
    got = compiled.pixel_bins(noisy_photo, bits)
    assert got is not None and got.inverse is None
    for name in ("coords", "weights", "sums", "means"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


@needs_compiled
def test_pixel_bins_leave_the_largest_images_to_the_exact_histogram(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond PIXEL_BINS_MAX pixels the kernel's uint32 sums could overflow: no bins, the exact path runs."""
    pixels = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    monkeypatch.setattr(compiled, "PIXEL_BINS_MAX", 64 * 64)
    assert compiled.pixel_bins(pixels, 6) is None
    q = quantize(pixels, 16)
    assert q.palette.shape[0] <= 16 and q.indices.shape == (64, 64)


def _brute_nearest(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """numpy.argmin over exact integer distances: the lowest index among equally near entries."""
    x = pixels.reshape(-1, 3).astype(np.int64)
    d2 = ((x[:, None, :] - palette.astype(np.int64)[None, :, :]) ** 2).sum(axis=2)
    return d2.argmin(axis=1).reshape(pixels.shape[:2])


@needs_compiled
@pytest.mark.parametrize("k", [1, 2, 16, 64, 256])
def test_nearest_pixels_is_exact_with_lowest_index_on_ties(k: int, noisy_photo: np.ndarray) -> None:
    rng = np.random.default_rng(k)
    pixels = np.concatenate([noisy_photo[:40, :60], rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)])
    palette = rng.integers(0, 256, (k, 3)).astype(np.uint8)
    if k > 2:
        palette[1] = palette[0]  # a repeated entry: every pixel near it ties, entry 0 must win
        palette[2] = [10, 10, 10]
        pixels[0, :2] = [[12, 10, 10], [8, 10, 10]]  # exactly between candidates on one axis is fine too
    got = compiled.nearest_pixels(pixels, palette)
    assert got.dtype == np.uint8 and got.shape == pixels.shape[:2]
    assert np.array_equal(got, _brute_nearest(pixels, palette))


@needs_compiled
def test_nearest_pixels_breaks_exact_ties_towards_the_lowest_index() -> None:
    palette = np.array([[0, 0, 0], [10, 0, 0], [5, 0, 0], [5, 0, 0]], dtype=np.uint8)
    pixels = np.array([[[5, 0, 0], [3, 0, 0], [7, 0, 0], [8, 0, 0]]], dtype=np.uint8)
    # 5 is entries 2 and 3 exactly (2 wins); 3 and 7 are nearest to 5; 8 is nearer to 10 than to 5
    assert compiled.nearest_pixels(pixels, palette).tolist() == [[2, 2, 2, 1]]
    tie = np.array([[0, 0, 0], [10, 0, 0]], dtype=np.uint8)
    assert compiled.nearest_pixels(np.array([[[5, 0, 0]]], dtype=np.uint8), tie).tolist() == [[0]]


@needs_compiled
def test_pixel_kernels_reject_bad_arguments() -> None:
    from icsd.core.quantization import _pixels

    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    out = np.empty(16, dtype=np.uint8)
    with pytest.raises(ValueError, match="1 <= k <= 256"):
        _pixels.nearest_pixels(pixels, 16, np.zeros((0, 3), np.uint8), 0, out)
    with pytest.raises(ValueError, match="output bytes"):
        _pixels.nearest_pixels(pixels, 16, np.zeros((2, 3), np.uint8), 2, out[:8])
    with pytest.raises(ValueError, match="bits"):
        _pixels.bin_pixels(pixels, 16, 7)
    with pytest.raises(ValueError, match="3 n bytes"):
        _pixels.bin_pixels(pixels, 15, 6)
    with pytest.raises(ValueError, match="not below k = 2"):
        _pixels.used_entries(np.array([0, 1, 5], np.uint8), 3, 2, np.empty(2, np.uint8))
    with pytest.raises(ValueError, match="output"):
        _pixels.used_entries(np.array([0, 1], np.uint8), 2, 2, np.empty(3, np.uint8))


@needs_compiled
def test_sort_pixels_equals_sorting_the_keys(noisy_photo: np.ndarray) -> None:
    """The radix sort behind the exact histogram gives exactly np.sort of (colour << 32 | index), ties in index
    order, so histogram, counts and the per-pixel inverse are unchanged; also for extreme colours and one pixel."""
    extremes = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 15], [0, 255, 240], [255, 255, 255]]], np.uint8)
    for pixels in (noisy_photo, extremes, extremes[:, :1]):
        flat = pixels.reshape(-1, 3).astype(np.uint64)
        index = np.arange(flat.shape[0], dtype=np.uint64)
        keys = (flat[:, 0] << 48) | (flat[:, 1] << 40) | (flat[:, 2] << 32) | index
        assert np.array_equal(compiled.sort_pixels(pixels), np.sort(keys))


@needs_compiled
def test_sort_pixels_rejects_bad_arguments() -> None:
    from icsd.core.quantization import _pixels

    pixels, out = np.zeros((2, 2, 3), np.uint8), np.empty(4, np.uint64)
    with pytest.raises(ValueError, match="8 n bytes"):
        _pixels.sort_pixels(pixels, 4, out, np.empty(3, np.uint64))
    with pytest.raises(ValueError, match="3 n pixel bytes"):
        _pixels.sort_pixels(pixels, 3, out[:3], out[:3].copy())


@needs_compiled
@pytest.mark.parametrize("k", [1, 2, 16, 255, 256])
def test_used_entries_matches_bincount(k: int) -> None:
    rng = np.random.default_rng(k)
    for indices in (rng.integers(0, k, (37, 23), dtype=np.uint8), np.full((3, 4), k - 1, np.uint8)):
        indices[indices == k // 2] = 0  # leave an entry unused
        expected = np.bincount(indices.ravel(), minlength=k) > 0
        assert np.array_equal(compiled.used_entries(indices, k), expected)


@needs_compiled
@pytest.mark.parametrize("strategy", ["kmeans", "sklearn-minibatch"])
def test_small_k_never_sorts_the_pixels(
    strategy: str, noisy_photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small-K k-means and MiniBatch work from the binned pixels: the exact histogram (a sort of every pixel)
    is not computed, and every pixel still gets its exact nearest palette entry. K = 64 k-means needs it."""
    import sys

    histogram_module = sys.modules["icsd.core.quantization.histogram"]
    sorts: list[int] = []
    real = histogram_module._rgb_histogram
    monkeypatch.setattr(histogram_module, "_rgb_histogram", lambda px: sorts.append(px.size) or real(px))
    q = quantize(noisy_photo, 16, strategy)
    assert sorts == []
    # Exact nearest: the chosen entry is as near as the best one (quantize() sorts the palette afterwards,
    # so an exact tie may resolve to either of the equally near entries).
    pal = q.palette.astype(np.int64)
    x = noisy_photo.astype(np.int64)
    chosen = ((x - pal[q.indices]) ** 2).sum(axis=2)
    best = ((x - pal[_brute_nearest(noisy_photo, q.palette)]) ** 2).sum(axis=2)
    assert np.array_equal(chosen, best)
    quantize(noisy_photo, 64)
    assert sorts == [noisy_photo.size]
