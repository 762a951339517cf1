"""Binned colour histograms: distinct colours grouped into cubes of 2**(8 - bits) levels per channel, with
exact per-bin weights and colour sums, so k-means moments built from bins stay exact. Our k-means solves
coarse to fine on these levels; the scikit-learn strategies fit them instead of the exact colours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["Bins", "binned", "coarsened", "refined", "with_inverse"]

# Bin keys of up to this many bits are grouped through a dense table (2 MB of intp at 18 bits).
_TABLE_BITS = 18


@dataclass(frozen=True, slots=True)
class Bins:
    """The histogram coarsened to `bits` per channel: exact per-bin weights, sums and means.

    `sums` are exact integers (sum of count x colour), so k-means moments built from them stay exact.
    """

    means: np.ndarray  # (M, D) float64
    weights: np.ndarray  # (M,) float64
    sums: np.ndarray  # (M, D) float64
    coords: np.ndarray  # (M, D) intp bin coordinates in [0, 2**bits)
    inverse: np.ndarray | None  # (U,) bin of each distinct colour; None for bins read from the pixels


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


def with_inverse(bins: Bins, colors: np.ndarray, bits: int) -> Bins:
    """`bins` (at `bits` per channel, read from the pixels, so without `inverse`) with the bin of every one of
    the image's distinct `colors` filled in, through a dense table over the bin keys."""
    if bins.inverse is not None:
        return bins
    d = colors.shape[1]
    table = np.empty(1 << (bits * d), dtype=np.intp)
    table[_pack(bins.coords, bits)] = np.arange(bins.weights.size)
    return replace(bins, inverse=table[_pack((colors >> (8 - bits)).astype(np.intp), bits)])


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
    """`bins` (at `bits` per channel, built from these colours, with `inverse`) split one bit finer: the same bins as
    `binned(colors, counts, bits + 1)` in another order, found through a dense (parent bin, octant) table
    instead of a sort. Also returns the parent (input) bin of every new bin."""
    assert bins.inverse is not None, "refined needs the bin of every colour (see with_inverse)"
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
