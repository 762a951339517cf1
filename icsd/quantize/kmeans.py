"""Our own weighted k-means ("kmeans", alias MKM) over a colour histogram, in NumPy (+ SciPy's k-d tree).

Same objective as k-means over the pixels (sum of squared colour errors), computed on the distinct
colours weighted by their counts, coarse to fine:

1. bin the histogram to 6 bits per channel (exact bin moments) when that shrinks it enough;
2. seed by greedy SSE-optimal binary splitting of the bins (`split`), deterministic;
3. Lloyd on the bins, then on the exact distinct colours, warm-started (`lloyd`: distance bounds,
   over-relaxation; stop on stable labels or a relative SSE change <= 1e-4 on the bins, <= 1e-3 on
   the exact colours, which start near convergence: that halves their work for < 0.2 % error);
4. round the centres to a uint8 palette and assign every distinct colour to its exact nearest entry.

Grey images (D = 1) get the exact 1-D optimum instead (`kmeans1d`).
"""

from __future__ import annotations

import numpy as np

from icsd.quantize.histogram import binned
from icsd.quantize.kmeans1d import optimal_kmeans_1d
from icsd.quantize.lloyd import assign_rounded, inherit, lloyd
from icsd.quantize.nearest import round_and_assign
from icsd.quantize.split import split_init

__all__ = ["weighted_kmeans", "BIN_BITS"]

BIN_BITS = 6  # 4 levels per bin: fine enough that seeding and Lloyd on bins land near the exact optimum
# Solve on the bins first only if they are this much fewer than the distinct colours.
_MIN_BIN_GAIN = 1.5
COARSE_TOL = 1e-4  # Lloyd on the bins: relative SSE change that counts as converged
FINE_TOL = 1e-3  # Lloyd on the exact colours, warm-started from the converged bins


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
        coarse = lloyd(bins.means, bins.weights, centres, wx=bins.sums, tol=COARSE_TOL)
        start = inherit(coarse, bins.inverse, x, bins.means)
        part = lloyd(x, w, coarse.centres, start=start, tol=FINE_TOL)
    else:
        part = lloyd(x, w, centres, tol=COARSE_TOL)
    palette = np.clip(np.rint(part.centres), 0, 255)
    return palette.astype(np.uint8), assign_rounded(x, part, palette)
