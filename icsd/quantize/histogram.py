"""Colour histograms: the distinct colours of an image with their pixel counts.

Every strategy clusters the weighted histogram instead of the pixels: the k-means objective is the
same (a colour repeated n times is one point of weight n) and photos have far fewer distinct colours
than pixels. `Histogram.expand` maps per-colour labels back to an (H, W) index image.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Histogram", "histogram", "Bins", "binned", "coarsened", "refined"]

# Pixels per chunk when scattering labels back: bounds the intp temporaries NumPy makes for fancy indexing.
_CHUNK = 1 << 16
# Bin keys of up to this many bits are grouped through a dense table (2 MB of intp at 18 bits).
_TABLE_BITS = 18


@dataclass(frozen=True, slots=True)
class Histogram:
    """Distinct colours (U, D) uint8 (D = 3 for RGB, 1 for grey), their counts (U,), and how to map back.

    `_order` holds, for RGB, the sorted packed (colour << 32 | pixel index) keys so `expand` needs no
    (N,) intp inverse array; for grey it is None and the pixels themselves index a lookup table.
    """

    colors: np.ndarray
    counts: np.ndarray
    shape: tuple[int, ...]
    _pixels: np.ndarray | None
    _order: np.ndarray | None

    def expand(self, labels: np.ndarray) -> np.ndarray:
        """(U,) label per distinct colour -> (H, W) label per pixel, same dtype as `labels`."""
        if self._pixels is not None:  # grey: a 256-entry lookup table indexed by the pixel values
            lut = np.zeros(256, dtype=labels.dtype)
            lut[self.colors[:, 0]] = labels
            return lut[self._pixels]
        assert self._order is not None
        n = self._order.size
        per_pixel = np.repeat(labels, self.counts)  # in sorted-key order
        index = self._order.view(np.uint32)[_INDEX_WORD::2]  # pixel index of each sorted entry
        out = np.empty(n, dtype=labels.dtype)
        for start in range(0, n, _CHUNK):
            stop = start + _CHUNK
            out[index[start:stop]] = per_pixel[start:stop]
        return out.reshape(self.shape[:2])


def histogram(pixels: np.ndarray) -> Histogram:
    """The colour histogram of a valid (H, W) or (H, W, 3) uint8 image."""
    if pixels.ndim == 2:
        counts = np.bincount(pixels.ravel(), minlength=256)
        levels = np.flatnonzero(counts)
        return Histogram(levels.astype(np.uint8)[:, None], counts[levels], pixels.shape, pixels, None)
    return _rgb_histogram(pixels)


# On little-endian machines the low 32-bit word (the pixel index) of each uint64 comes first.
_INDEX_WORD = 0 if sys.byteorder == "little" else 1


def _rgb_histogram(pixels: np.ndarray) -> Histogram:
    """Sort (packed RGB << 32 | pixel index) once: distinct colours, counts and the inverse in 8 bytes/pixel.

    One in-place uint64 sort is several times faster than np.unique(return_inverse=True) (an argsort)
    and needs no (N,) intp inverse, which keeps the added memory near 3x the decoded image.
    """
    flat = pixels.reshape(-1, 3)
    n = flat.shape[0]
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
    return Histogram(colors, counts, pixels.shape, None, order)


@dataclass(frozen=True, slots=True)
class Bins:
    """The histogram coarsened to `bits` per channel: exact per-bin weights, sums and means.

    `sums` are exact integers (sum of count x colour), so k-means moments built from them stay exact.
    """

    means: np.ndarray  # (M, D) float64
    weights: np.ndarray  # (M,) float64
    sums: np.ndarray  # (M, D) float64
    coords: np.ndarray  # (M, D) intp bin coordinates in [0, 2**bits)
    inverse: np.ndarray  # (U,) bin of each distinct colour


def binned(colors: np.ndarray, counts: np.ndarray, bits: int) -> Bins:
    """Group distinct colours into cubes of 2**(8 - bits) levels per channel."""
    d = colors.shape[1]
    key = _pack((colors >> (8 - bits)).astype(np.intp), bits)
    if bits * d <= _TABLE_BITS:  # a dense table over every bin key: no sort (np.unique argsorts)
        uniq, inverse = _group(key, 1 << (bits * d))
    else:
        uniq, inverse = np.unique(key, return_inverse=True)
    weights, sums = _moments(inverse, uniq.size, counts, lambda j: counts * colors[:, j], d)
    return Bins(sums / weights[:, None], weights, sums, _unpack(uniq, bits, d), inverse)


def coarsened(bins: Bins, bits: int, shift: int = 1) -> Bins:
    """`bins` (at `bits` per channel) merged into cubes `shift` bits coarser, from their exact moments:
    as `binned(colors, counts, bits - shift)` but over the M bins instead of the U colours, and with
    `inverse` mapping each input bin (not each colour) to its coarse bin."""
    d = bins.coords.shape[1]
    out_bits = bits - shift
    uniq, inverse = _group(_pack(bins.coords >> shift, out_bits), 1 << (out_bits * d))
    weights, sums = _moments(inverse, uniq.size, bins.weights, lambda j: bins.sums[:, j], d)
    return Bins(sums / weights[:, None], weights, sums, _unpack(uniq, out_bits, d), inverse)


def refined(bins: Bins, colors: np.ndarray, counts: np.ndarray, bits: int) -> tuple[Bins, np.ndarray]:
    """`bins` (at `bits` per channel, built from these colours) split one bit finer: the same bins as
    `binned(colors, counts, bits + 1)` in another order, found through a dense (parent bin, octant) table
    instead of a sort. Also returns the parent (input) bin of every new bin."""
    d = colors.shape[1]
    octant = _pack((colors >> (7 - bits)) & 1, 1)
    uniq, inverse = _group(bins.inverse * (1 << d) + octant, bins.weights.size << d)
    weights, sums = _moments(inverse, uniq.size, counts, lambda j: counts * colors[:, j], d)
    parent = uniq >> d
    coords = (bins.coords.take(parent, axis=0) << 1) | _unpack(uniq & ((1 << d) - 1), 1, d)
    return Bins(sums / weights[:, None], weights, sums, coords, inverse), parent


def _pack(coords: np.ndarray, bits: int) -> np.ndarray:
    """(N, D) per-channel cube coordinates of `bits` bits -> one integer key per row."""
    key = coords[:, 0].astype(np.intp)
    for j in range(1, coords.shape[1]):
        key = (key << bits) | coords[:, j]
    return key


def _unpack(keys: np.ndarray, bits: int, d: int) -> np.ndarray:
    """Inverse of `_pack`: keys -> (M, D) intp coordinates."""
    coords = np.empty((keys.size, d), dtype=np.intp)
    for j in range(d):
        coords[:, j] = (keys >> (bits * (d - 1 - j))) & ((1 << bits) - 1)
    return coords


def _group(key: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and each row's index among them, through a dense table of `size` slots."""
    occupied = np.bincount(key, minlength=size) > 0
    uniq = np.flatnonzero(occupied)
    table = np.empty(occupied.size, dtype=np.intp)
    table[uniq] = np.arange(uniq.size)
    return uniq, table[key]


def _moments(
    inverse: np.ndarray, m: int, weight: np.ndarray, weighted: Callable[[int], np.ndarray], d: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group total weight and weighted sums; `weighted(j)` is channel j already multiplied by weight
    (built one channel at a time so no (N, D) float temporary is allocated)."""
    weights = np.bincount(inverse, weights=weight, minlength=m).astype(np.float64)
    sums = np.empty((m, d))
    for j in range(d):
        sums[:, j] = np.bincount(inverse, weights=weighted(j), minlength=m)
    return weights, sums
