"""Optimal 1-D weighted k-means for grey images (dynamic programming over the <= 256 grey levels).

In one dimension the optimal clusters are contiguous runs of sorted levels, so the exact minimum of the
k-means objective is found by DP (Wang & Song's Ckmeans.1d.dp) in O(k U^2) with U <= 256 levels:
cheap, deterministic, and never worse than any Lloyd local minimum.
"""

from __future__ import annotations

import numpy as np

__all__ = ["optimal_kmeans_1d"]


def optimal_kmeans_1d(levels: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """(k, 1) float64 centres for sorted distinct (U, 1) levels with counts; U > k is assumed."""
    x = levels[:, 0].astype(np.float64)
    w = counts.astype(np.float64)
    u = x.size
    # Prefix sums give the SSE of any run [i, j] in O(1): S2 - S1^2 / W.
    pw = np.concatenate(([0.0], np.cumsum(w)))
    p1 = np.concatenate(([0.0], np.cumsum(w * x)))
    p2 = np.concatenate(([0.0], np.cumsum(w * x * x)))
    j = np.arange(u)[:, None]  # run end (inclusive)
    i = np.arange(u)[None, :]  # run start
    with np.errstate(divide="ignore", invalid="ignore"):
        mass = pw[j + 1] - pw[i]
        s1 = p1[j + 1] - p1[i]
        cost = np.where(i <= j, (p2[j + 1] - p2[i]) - s1 * s1 / mass, np.inf)  # cost[j, i]: run [i, j]
    best = cost[:, 0].copy()  # best[j]: optimal SSE of levels [0, j] with the current number of clusters
    starts = np.zeros((k, u), dtype=np.intp)  # start of the last run in that optimum
    total = np.full((u, u), np.inf)  # total[j, i]: last run [i, j] after c runs covering [0, i - 1]
    rows = np.arange(u)
    for c in range(1, k):
        np.add(cost[:, 1:], best[None, :-1], out=total[:, 1:])  # row-wise argmin: contiguous and fast
        starts[c] = total.argmin(axis=1)
        best = total[rows, starts[c]]
    centres = np.empty(k, dtype=np.float64)
    end = u - 1
    for c in range(k - 1, -1, -1):
        start = int(starts[c, end]) if c > 0 else 0
        centres[c] = (p1[end + 1] - p1[start]) / (pw[end + 1] - pw[start])
        end = start - 1
    return centres[:, None]
