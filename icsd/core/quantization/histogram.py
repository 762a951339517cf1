"""A colour histogram, computed only as far as a strategy needs it: one image's, or counts merged from many.

Every strategy clusters the weighted histogram instead of the pixels: the k-means objective is the same
(a colour repeated n times is one point of weight n) and photos have far fewer distinct colours than
pixels. Two views of it:

- `bins()`: the histogram binned to BIN_BITS per channel (exact bin moments). With the compiled kernels
  it is read straight from the pixels in one pass;
- `colors`/`counts`: the exact distinct colours, by sorting every pixel (a compiled radix sort when built,
  else NumPy's), computed on first use only. Small-K k-means and MiniBatch never need them: they
  solve on the bins and give each pixel its exact nearest palette entry with `index`.

A histogram made from counts (`from_counts`, `merge`) has no pixels: strategies fit it all the same, but
there is nothing to index, so `expand`, `index` and `assign` give None for the indices. That is the
dataset histogram a shared palette is fitted to.
"""

from __future__ import annotations

import sys

import numpy as np

from icsd.core.quantization import compiled
from icsd.core.quantization.bins import Bins, binned
from icsd.core.quantization.nearest import nearest

__all__ = ["BIN_BITS", "Histogram", "histogram", "merge"]

BIN_BITS = 6  # 4 levels per bin: fine enough that seeding and Lloyd on bins land near the exact optimum

# Pixels per chunk when scattering labels back: bounds the intp temporaries NumPy makes for fancy indexing.
_CHUNK = 1 << 16
# On little-endian machines the low 32-bit word (the pixel index) of each uint64 comes first.
_INDEX_WORD = 0 if sys.byteorder == "little" else 1


class Histogram:
    """The colours of one valid (H, W) grey or (H, W, 3) RGB uint8 image, or counts without pixels; see the
    module docstring."""

    __slots__ = ("_bins", "_colors", "_counts", "_order", "channels", "pixels")

    def __init__(self, pixels: np.ndarray | None) -> None:
        self.pixels = pixels
        self.channels = 0 if pixels is None else (1 if pixels.ndim == 2 else 3)  # D: 1 grey, 3 RGB
        self._colors: np.ndarray | None = None
        self._counts: np.ndarray | None = None
        self._order: np.ndarray | None = None  # RGB: sorted (colour << 32 | pixel index) keys, for expand
        self._bins: Bins | None = None

    @classmethod
    def from_counts(cls, colors: np.ndarray, counts: np.ndarray) -> Histogram:
        """A histogram of (U, D) uint8 distinct colours, sorted, with (U,) int64 counts; it has no pixels."""
        hist = cls(None)
        hist.channels = colors.shape[1]
        hist._colors, hist._counts = colors, counts
        return hist

    @classmethod
    def from_bins(cls, colors: np.ndarray, counts: np.ndarray, bins: Bins) -> Histogram:
        """`from_counts` whose BIN_BITS bins are given (`bins.inverse` = each colour's bin) rather than derived
        from the colours: a dataset's bins, whose exact sums the colours (rounded means) only approximate."""
        hist = cls.from_counts(colors, counts)
        hist._bins = bins
        return hist

    @property
    def grey(self) -> bool:
        return self.channels == 1

    @property
    def total(self) -> int:
        """How many pixels the histogram counts."""
        return int(self.counts.sum()) if self.pixels is None else self.pixels.shape[0] * self.pixels.shape[1]

    @property
    def colors(self) -> np.ndarray:
        """(U, D) uint8 distinct colours, sorted (D = 3 for RGB, 1 for grey)."""
        return self._exact()[0]

    @property
    def counts(self) -> np.ndarray:
        """(U,) pixel count of each distinct colour."""
        return self._exact()[1]

    def bins(self) -> Bins:
        """The histogram binned to BIN_BITS per channel; `inverse` is None when read from the pixels."""
        if self._bins is None:
            direct = self._colors is None and self.channels == 3 and compiled.AVAILABLE
            pixel_bins = compiled.pixel_bins(self.pixels, BIN_BITS) if direct else None
            self._bins = pixel_bins or binned(self.colors, self.counts, BIN_BITS)
        return self._bins

    def at_most(self, k: int) -> bool:
        """Whether the image has at most `k` distinct colours (more bins than k settle it without sorting)."""
        if self._colors is None and self.channels == 3 and compiled.AVAILABLE and self.bins().weights.size > k:
            return False
        return self.colors.shape[0] <= k

    def expand(self, labels: np.ndarray) -> np.ndarray | None:
        """(U,) palette index (< 256) per distinct colour -> (H, W) uint8 index per pixel (None: no pixels)."""
        if self.pixels is None:
            return None
        labels = labels.astype(np.uint8, copy=False)
        colors = self.colors
        if self._order is None:  # grey: a 256-entry lookup table indexed by the pixel values
            lut = np.zeros(256, dtype=labels.dtype)
            lut[colors[:, 0]] = labels
            return lut[self.pixels]
        n = self._order.size
        per_pixel = np.repeat(labels, self.counts)  # in sorted-key order
        index = self._order.view(np.uint32)[_INDEX_WORD::2]  # pixel index of each sorted entry
        out = np.empty(n, dtype=labels.dtype)
        for start in range(0, n, _CHUNK):
            stop = start + _CHUNK
            out[index[start:stop]] = per_pixel[start:stop]
        return out.reshape(self.pixels.shape[:2])

    def assign(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Round float centres to a uint8 palette, distinct and sorted (the order quantize() keeps, so it
        has nothing to remap), and give every pixel its exact nearest entry."""
        rounded = np.clip(np.rint(centres), 0, 255).astype(np.uint8)
        # return_inverse for its side effect: without it NumPy >= 2's unique() checks for masked arrays and
        # so imports numpy.ma, ~15-20 ms in each worker's first image (measured, -X importtime).
        palette, _ = np.unique(rounded, axis=0, return_inverse=True)
        return palette, self.index(palette)

    def index(self, palette: np.ndarray) -> np.ndarray | None:
        """(H, W) uint8 index of the exact nearest entry of a (K <= 256, D) uint8 palette for every pixel
        (None when the histogram has no pixels)."""
        if self.pixels is None:
            return None
        if self._colors is None and self.channels == 3 and compiled.AVAILABLE:
            return compiled.nearest_pixels(self.pixels, palette)
        labels, _ = nearest(self.colors.astype(np.float64), palette.astype(np.float64))
        return self.expand(labels)

    def _exact(self) -> tuple[np.ndarray, np.ndarray]:
        """(colors, counts), computed on first use."""
        if self._colors is None or self._counts is None:
            assert self.pixels is not None  # a histogram from counts has them from the start
            if self.pixels.ndim == 2:
                counts = np.bincount(self.pixels.ravel(), minlength=256)
                levels = np.flatnonzero(counts)
                self._colors, self._counts = levels.astype(np.uint8)[:, None], counts[levels]
            else:
                self._colors, self._counts, self._order = _rgb_histogram(self.pixels)
        return self._colors, self._counts


def histogram(pixels: np.ndarray) -> Histogram:
    """The (lazy) colour histogram of a valid (H, W) or (H, W, 3) uint8 image."""
    return Histogram(pixels)


def merge(histograms: list[Histogram]) -> Histogram:
    """One histogram counting every pixel of `histograms` (all grey or all RGB): the exact distinct colours
    with summed counts, so fitting it is fitting the concatenated images. Memory is bounded by the distinct
    colours (at most 2**24), not by the pixels."""
    if not histograms:
        raise ValueError("merge needs at least one histogram")
    channels = {h.channels for h in histograms}
    if len(channels) != 1:
        raise ValueError("cannot merge grey and RGB histograms: quantize them in one colour mode")
    colors = np.concatenate([h.colors for h in histograms])
    counts = np.concatenate([h.counts.astype(np.int64) for h in histograms])
    key = colors[:, 0].astype(np.uint32)
    for channel in range(1, colors.shape[1]):
        key = (key << 8) | colors[:, channel]
    uniq, inverse = np.unique(key, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=counts, minlength=uniq.size).astype(np.int64)
    merged = np.empty((uniq.size, colors.shape[1]), dtype=np.uint8)
    for channel in range(colors.shape[1]):
        merged[:, channel] = (uniq >> (8 * (colors.shape[1] - 1 - channel))) & 0xFF
    return Histogram.from_counts(merged, summed)


def _rgb_histogram(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort (packed RGB << 32 | pixel index) once: distinct colours, counts and the inverse in 8 bytes/pixel.

    One uint64 sort is several times faster than np.unique(return_inverse=True) (an argsort) and needs no
    (N,) intp inverse, which keeps the added memory near 3x the decoded image (plus 8 bytes/pixel of scratch
    while the compiled radix sort runs).
    """
    flat = pixels.reshape(-1, 3)
    n = flat.shape[0]
    if compiled.AVAILABLE:  # the same keys by a radix sort: 3-6x faster than NumPy's sort (measured, 0.3-1 MP)
        order = compiled.sort_pixels(pixels)
        words = order.view(np.uint32).reshape(n, 2)
    else:
        order = np.empty(n, dtype=np.uint64)
        words = order.view(np.uint32).reshape(n, 2)
        key = words[:, 1 - _INDEX_WORD]
        np.left_shift(flat[:, 0], 16, out=key, dtype=np.uint32)
        key |= flat[:, 1].astype(np.uint32) << 8
        key |= flat[:, 2]
        words[:, _INDEX_WORD] = np.arange(n, dtype=np.uint32)
        order.sort()
    sorted_keys = words[:, 1 - _INDEX_WORD]
    boundary = np.empty(n + 1, dtype=bool)
    boundary[0] = boundary[n] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=boundary[1:n])
    starts = np.flatnonzero(boundary)
    counts = np.diff(starts)
    uniq = sorted_keys[starts[:-1]]
    colors = np.empty((uniq.size, 3), dtype=np.uint8)
    colors[:, 0] = uniq >> 16
    colors[:, 1] = uniq >> 8
    colors[:, 2] = uniq
    return colors, counts, order
