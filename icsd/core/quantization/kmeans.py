"""Our own weighted k-means ("kmeans", alias MKM) over a colour histogram.

Same objective as k-means over the pixels (sum of squared colour errors), computed on the distinct
colours weighted by their counts, coarse to fine. Two implementations of the same plan:

- compiled (`compiled.py` over `_lloyd.c` and `_pixels.c`, used whenever they were built): seeds by greedy
  binary splitting of the 6-bit bins, then Lloyd to a relative SSE change <= 1e-4 on the 6-bit bins, the
  7-bit bins and the exact colours in turn, each warm-started from the partition before; C makes the tight
  tolerance on every level affordable, which is where its lower error comes from (measured on the
  benchmark photos: 0.3-0.8 % below the NumPy path, in about half its time). Below K = 64 it stops at the
  6-bit bins, read straight from the pixels, and gives every pixel its exact nearest palette entry: the
  finer levels gained < 0.1 % there (measured: error 1.0005x with them skipped, geometric mean over the
  benchmark photos at K = 16), and skipping them skips the exact histogram, a sort of every pixel. Up to
  K = 32 Lloyd starts on 5-bit bins, as on the NumPy path (-22 % k-means time at K = 16/32, same error);
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

from icsd.core.quantization import compiled
from icsd.core.quantization.bins import Bins, binned, coarsened, refined, with_inverse
from icsd.core.quantization.histogram import BIN_BITS, Histogram
from icsd.core.quantization.kmeans1d import optimal_kmeans_1d
from icsd.core.quantization.lloyd import MAX_ITER, RELAX, Partition, assign_rounded, inherit, lloyd
from icsd.core.quantization.nearest import round_and_assign
from icsd.core.quantization.split import split_init

__all__ = ["weighted_kmeans", "numpy_kmeans", "compiled_kmeans"]

# Solve on the bins first only if they are this much fewer than the distinct colours.
_MIN_BIN_GAIN = 1.5
_MIN_POINTS_PER_CENTRE = 16  # a coarser level is used only with at least this many bins per centre
COARSE_TOL = 1e-4  # Lloyd on the bins: relative SSE change that counts as converged
FINE_TOL = 1e-3  # Lloyd on the exact colours, warm-started from the converged bins
COARSER_MAX_K = 32  # up to this K, start Lloyd on 5-bit bins
MID_MIN_K = 128  # from this K, add a level of 7-bit bins before the exact colours
MID_TOL = 1e-3  # Lloyd on the 7-bit bins


# Compiled path: Lloyd tolerance on every level. Below COMPILED_MID_MIN_K it stops at the 6-bit bins (see the
# module docstring); from K = 64 a 7-bit level runs between the 6-bit bins and the exact colours.
COMPILED_TOL = 1e-4
COMPILED_MID_MIN_K = 64


def weighted_kmeans(hist: Histogram, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(palette (k', D) uint8, (H, W) uint8 index of every pixel's exact nearest entry) for an image of more
    than k distinct colours.

    Deterministic; `seed` is accepted for the common strategy signature but nothing here is random.
    """
    if hist.grey:
        palette, labels = round_and_assign(hist.colors, optimal_kmeans_1d(hist.colors, hist.counts, k))
    elif compiled.AVAILABLE:
        return compiled_kmeans(hist, k)
    else:
        palette, labels = numpy_kmeans(hist.colors, hist.counts, k)
    return palette, hist.expand(labels)


def compiled_kmeans(hist: Histogram, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The compiled path for an RGB image of more than k colours: split seeds, then Lloyd on the 6-bit bins,
    and from K = 64 on the 7-bit bins and the exact colours (a level that would not be clearly smaller than
    the next is skipped). Returns the palette and every pixel's exact nearest entry."""
    bins = hist.bins()
    few = bins.weights.size < _MIN_POINTS_PER_CENTRE * k
    if few or (k >= COMPILED_MID_MIN_K and bins.weights.size * _MIN_BIN_GAIN > hist.colors.shape[0]):
        return _compiled_exact(hist, k)  # too few colours for bins to help
    bw, bwx = bins.weights.astype(np.int64), bins.sums.astype(np.int64)
    centres, labels = compiled.split(bins.coords, bw, bwx, k, 1 << BIN_BITS)
    coarse = coarsened(bins, BIN_BITS) if k <= COARSER_MAX_K else None
    if coarse is not None and coarse.weights.size >= _MIN_POINTS_PER_CENTRE * k:
        cw, cwx = coarse.weights.astype(np.int64), coarse.sums.astype(np.int64)
        centres, coarse_labels = _compiled_lloyd(coarse.means, cw, cwx, centres, None)
        labels = coarse_labels[coarse.inverse]
    centres, labels = _compiled_lloyd(bins.means, bw, bwx, centres, labels)
    if k < COMPILED_MID_MIN_K:
        return hist.assign(centres)
    colors, counts = hist.colors, hist.counts
    bins = with_inverse(bins, colors, BIN_BITS)
    mid, parent = refined(bins, colors, counts, BIN_BITS)
    if mid.weights.size * _MIN_BIN_GAIN <= colors.shape[0]:
        mw, mwx = mid.weights.astype(np.int64), mid.sums.astype(np.int64)
        centres, labels = _compiled_lloyd(mid.means, mw, mwx, centres, labels[parent])
        labels = labels[mid.inverse]
    else:
        labels = labels[bins.inverse]
    w = counts.astype(np.int64)
    x = colors.astype(np.float64)
    centres, labels = _compiled_lloyd(x, w, w[:, None] * colors, centres, labels)
    palette, labels = compiled.round_and_assign(x, centres, labels)
    return palette, hist.expand(labels)


def _compiled_exact(hist: Histogram, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Split seeds and Lloyd on the exact colours (images with too few colours for bins to help)."""
    colors, counts = hist.colors, hist.counts
    w = counts.astype(np.int64)
    wx = w[:, None] * colors
    centres, labels = compiled.split(colors, w, wx, k, 256)
    x = colors.astype(np.float64)
    tol = COMPILED_TOL if k >= COMPILED_MID_MIN_K else FINE_TOL
    centres, labels = _compiled_lloyd(x, w, wx, centres, labels, tol)
    palette, labels = compiled.round_and_assign(x, centres, labels)
    return palette, hist.expand(labels)


def _compiled_lloyd(
    x: np.ndarray,
    w: np.ndarray,
    wx: np.ndarray,
    centres: np.ndarray,
    labels: np.ndarray | None,
    tol: float = COMPILED_TOL,
) -> tuple[np.ndarray, np.ndarray]:
    if centres.shape[0] < 2:  # one part: its mean is already the answer
        return centres, np.zeros(x.shape[0], np.int32) if labels is None else labels
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
