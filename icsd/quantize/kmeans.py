"""Our own weighted k-means ("kmeans", alias MKM) over a colour histogram, in NumPy (+ SciPy's k-d tree).

Same objective as k-means over the pixels (sum of squared colour errors), computed on the distinct
colours weighted by their counts, coarse to fine:

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

from icsd.quantize.histogram import Bins, binned, coarsened, refined
from icsd.quantize.kmeans1d import optimal_kmeans_1d
from icsd.quantize.lloyd import Partition, assign_rounded, inherit, lloyd
from icsd.quantize.nearest import round_and_assign
from icsd.quantize.split import split_init

__all__ = ["weighted_kmeans", "BIN_BITS"]

BIN_BITS = 6  # 4 levels per bin: fine enough that seeding and Lloyd on bins land near the exact optimum
# Solve on the bins first only if they are this much fewer than the distinct colours.
_MIN_BIN_GAIN = 1.5
_MIN_POINTS_PER_CENTRE = 16  # a coarser level is used only with at least this many bins per centre
COARSE_TOL = 1e-4  # Lloyd on the bins: relative SSE change that counts as converged
FINE_TOL = 1e-3  # Lloyd on the exact colours, warm-started from the converged bins
COARSER_MAX_K = 32  # up to this K, start Lloyd on 5-bit bins
MID_MIN_K = 128  # from this K, add a level of 7-bit bins before the exact colours
MID_TOL = 1e-3  # Lloyd on the 7-bit bins


def weighted_kmeans(colors: np.ndarray, counts: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(palette (k', D) uint8, exact nearest-palette label per colour) for U > k distinct colours.

    Deterministic; `seed` is accepted for the common strategy signature but nothing here is random.
    """
    if colors.shape[1] == 1:
        return round_and_assign(colors, optimal_kmeans_1d(colors, counts, k))
    x = colors.astype(np.float32)  # integer levels: exact in float32, half the memory of float64
    w = counts.astype(np.float64)
    bins = binned(colors, counts, BIN_BITS)
    centres = split_init(bins.means, bins.weights, bins.sums, bins.coords, 1 << BIN_BITS, k)
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
