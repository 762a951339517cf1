"""Our own weighted k-means ("kmeans", alias MKM) over a colour histogram.

Same objective as k-means over the pixels (sum of squared colour errors), computed on the distinct
colours weighted by their counts, coarse to fine. Two implementations of the same plan:

- compiled (`compiled.py` over `_lloyd.c`, used whenever it was built): seeds by greedy binary splitting
  of the 6-bit bins, then Lloyd to a relative SSE change <= 1e-4 on the 6-bit bins, the 7-bit bins and
  the exact colours in turn, each warm-started from the partition before; C makes the tight tolerance on
  every level affordable, which is where its lower error comes from (measured on the benchmark photos:
  0.3-0.8 % below the NumPy path, in about half its time);
- NumPy (the reference and fallback, below):

1. bin the histogram to 6 bits per channel (exact bin moments) when that shrinks it enough;
2. seed by greedy SSE-optimal binary splitting of the bins (`split`), deterministic;
3. Lloyd on the bins, then on the exact distinct colours, warm-started (`lloyd`: distance bounds,
   over-relaxation; stop on stable labels or a relative SSE change <= 1e-4 on the bins, <= 1e-3 on
   the exact colours, which start near convergence: that halves their work for < 0.2 % error).
   Extra levels, each warm-started from the one before (measured on the benchmark's camera photos):
   - K <= 32: Lloyd first on 5-bit bins merged from the 6-bit ones (~5x fewer points; most iterations
     happen there): -30 % time at K = 16, same error; not at K = 64 (+0.1 % error), nor with fewer than
     16 such bins per centre (clusters would start empty);
   - K >= 128: Lloyd on 7-bit bins (split from the 6-bit ones, ~2x fewer points than the colours)
     between the 6-bit bins and the exact colours: same time at K = 256, 0.13 % lower error (at K = 64
     it costs 8 % more time for 0.05 %);
4. round the centres to a uint8 palette and assign every distinct colour to its exact nearest entry.

Grey images (D = 1) get the exact 1-D optimum instead (`kmeans1d`).
"""

from __future__ import annotations

import numpy as np

from icsd.quantize import compiled
from icsd.quantize.histogram import Bins, binned, coarsened, refined
from icsd.quantize.kmeans1d import optimal_kmeans_1d
from icsd.quantize.lloyd import MAX_ITER, RELAX, Partition, assign_rounded, inherit, lloyd
from icsd.quantize.nearest import round_and_assign
from icsd.quantize.split import split_init

__all__ = ["weighted_kmeans", "numpy_kmeans", "compiled_kmeans", "BIN_BITS"]

BIN_BITS = 6  # 4 levels per bin: fine enough that seeding and Lloyd on bins land near the exact optimum
# Solve on the bins first only if they are this much fewer than the distinct colours.
_MIN_BIN_GAIN = 1.5
_MIN_POINTS_PER_CENTRE = 16  # a coarser level is used only with at least this many bins per centre
COARSE_TOL = 1e-4  # Lloyd on the bins: relative SSE change that counts as converged
FINE_TOL = 1e-3  # Lloyd on the exact colours, warm-started from the converged bins
COARSER_MAX_K = 32  # up to this K, start Lloyd on 5-bit bins
MID_MIN_K = 128  # from this K, add a level of 7-bit bins before the exact colours
MID_TOL = 1e-3  # Lloyd on the 7-bit bins


# Compiled path: Lloyd tolerance on every level, except the exact colours for K < COMPILED_MID_MIN_K, which
# use FINE_TOL (1e-3): below K = 64 each exact iteration costs about as much as all the binned ones, for
# < 0.4 % lower error; from K = 64 a 7-bit level runs between the 6-bit bins and the exact colours.
COMPILED_TOL = 1e-4
COMPILED_MID_MIN_K = 64


def weighted_kmeans(colors: np.ndarray, counts: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(palette (k', D) uint8, exact nearest-palette label per colour) for U > k distinct colours.

    Deterministic; `seed` is accepted for the common strategy signature but nothing here is random.
    """
    if colors.shape[1] == 1:
        return round_and_assign(colors, optimal_kmeans_1d(colors, counts, k))
    if compiled.AVAILABLE:
        return compiled_kmeans(colors, counts, k)
    return numpy_kmeans(colors, counts, k)


def compiled_kmeans(colors: np.ndarray, counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The compiled path for U > k distinct RGB colours: split seeds, then Lloyd on 6-bit bins, 7-bit bins
    and the exact colours (levels that would not be clearly smaller than the next are skipped)."""
    w = counts.astype(np.int64)
    wx = w[:, None] * colors
    bins = binned(colors, counts, BIN_BITS)
    if bins.weights.size * _MIN_BIN_GAIN > colors.shape[0] or bins.weights.size < _MIN_POINTS_PER_CENTRE * k:
        # Too few colours for bins to help: seed and solve on the exact colours.
        centres, labels = compiled.split(colors, w, wx, k, 256)
    else:
        bw, bwx = bins.weights.astype(np.int64), bins.sums.astype(np.int64)
        centres, labels = compiled.split(bins.coords, bw, bwx, k, 1 << BIN_BITS)
        centres, labels = _compiled_lloyd(bins.means, bw, bwx, centres, labels)
        mid, parent = refined(bins, colors, counts, BIN_BITS) if k >= COMPILED_MID_MIN_K else (None, None)
        if mid is not None and mid.weights.size * _MIN_BIN_GAIN <= colors.shape[0]:
            mw, mwx = mid.weights.astype(np.int64), mid.sums.astype(np.int64)
            centres, labels = _compiled_lloyd(mid.means, mw, mwx, centres, labels[parent])
            labels = labels[mid.inverse]
        else:
            labels = labels[bins.inverse]
    x = colors.astype(np.float64)
    centres, labels = _compiled_lloyd(x, w, wx, centres, labels, COMPILED_TOL if k >= COMPILED_MID_MIN_K else FINE_TOL)
    return compiled.round_and_assign(x, centres, labels)


def _compiled_lloyd(
    x: np.ndarray, w: np.ndarray, wx: np.ndarray, centres: np.ndarray, labels: np.ndarray, tol: float = COMPILED_TOL
) -> tuple[np.ndarray, np.ndarray]:
    if centres.shape[0] < 2:  # one part: its mean is already the answer
        return centres, labels
    centres, labels, _ = compiled.lloyd(x, w, wx, centres, labels, tol=tol, max_iter=MAX_ITER, relax=RELAX)
    return centres, labels


def numpy_kmeans(colors: np.ndarray, counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The NumPy path for U > k distinct colours (any D): see the module docstring."""
    x = colors.astype(np.float32)  # integer levels: exact in float32, half the memory of float64
    w = counts.astype(np.float64)
    bins = binned(colors, counts, BIN_BITS)
    centres, _ = split_init(bins.means, bins.weights, bins.sums, bins.coords, 1 << BIN_BITS, k)
    if centres.shape[0] < 2:  # cannot happen for U > k >= 2 distinct colours; keeps lloyd's K >= 2 contract
        return round_and_assign(colors, centres)
    if bins.weights.size * _MIN_BIN_GAIN <= x.shape[0]:
        binned_part, inverse, means = _solve_binned(colors, counts, bins, centres, k)
        del bins  # free the binned levels before the largest, exact one (peak memory)
        start = inherit(binned_part, inverse, x, means)
        del binned_part, inverse, means
        part = lloyd(x, w, None, start=start, tol=FINE_TOL)
    else:
        part = lloyd(x, w, centres, tol=COARSE_TOL)
    palette = np.clip(np.rint(part.centres), 0, 255)
    return palette.astype(np.uint8), assign_rounded(x, part, palette)


def _solve_binned(
    colors: np.ndarray, counts: np.ndarray, bins: Bins, centres: np.ndarray, k: int
) -> tuple[Partition, np.ndarray, np.ndarray]:
    """Lloyd over the binned levels, coarse to fine, from the seeds: (partition of the finest level, bin of
    every distinct colour, that level's bin means). Only these outlive the call."""
    coarse = coarsened(bins, BIN_BITS) if k <= COARSER_MAX_K else None
    if coarse is not None and coarse.weights.size >= _MIN_POINTS_PER_CENTRE * k:
        part = lloyd(coarse.means, coarse.weights, centres, wx=coarse.sums, tol=COARSE_TOL)
        start = inherit(part, coarse.inverse, bins.means, coarse.means)
        del coarse, part
        part = lloyd(bins.means, bins.weights, None, wx=bins.sums, start=start, tol=COARSE_TOL)
    else:
        part = lloyd(bins.means, bins.weights, centres, wx=bins.sums, tol=COARSE_TOL)
    if k < MID_MIN_K:
        return part, bins.inverse, bins.means
    mid, parent = refined(bins, colors, counts, BIN_BITS)
    if mid.weights.size * _MIN_BIN_GAIN > colors.shape[0]:  # too little gain over the exact colours
        return part, bins.inverse, bins.means
    start = inherit(part, parent, mid.means, bins.means)
    del part, parent
    part = lloyd(mid.means, mid.weights, None, wx=mid.sums, start=start, tol=MID_TOL)
    return part, mid.inverse, mid.means
