"""Exact nearest-centre assignment in colour space (Euclidean), for the Lloyd loop and the final palette.

Brute force computes ||c||^2 - 2 x.c per (point, centre) pair with D broadcast multiply-adds instead
of a BLAS matmul: the inner dimension is only 3, where BLAS calls are dominated by overhead and thread
wake-ups. Large problems use a k-d tree over the centres, which in 3-D answers a query in O(log K).
Both are exact; they may differ only in how exact ties are broken.
"""

from __future__ import annotations

import numpy as np

__all__ = ["nearest", "round_and_assign"]

# Below this many (point x centre) pairs brute force beats building and querying a tree.
_BRUTE_MAX_PAIRS = 1 << 15
# Pairs per brute-force chunk: keeps the distance block around 1 MB (float32) whatever the image size.
_CHUNK_PAIRS = 1 << 18


def nearest(
    points: np.ndarray, centres: np.ndarray, *, want_dist: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """For (M, D) points and (K, D) centres: (M,) intp index of the nearest centre and, if asked,
    the (M,) float64 squared distance to it."""
    m, k = points.shape[0], centres.shape[0]
    if k == 1:
        labels = np.zeros(m, dtype=np.intp)
        return labels, (_sq_dist(points, centres[0]) if want_dist else None)
    if m * k <= _BRUTE_MAX_PAIRS or points.shape[1] == 1:
        return _brute(points, centres, want_dist)
    from scipy.spatial import cKDTree  # on first use: ~0.2 s of start-up that most workers never need

    dist, labels = cKDTree(centres).query(points, k=1)
    return labels, (np.square(dist) if want_dist else None)


def _sq_dist(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    diff = points - centre
    return np.einsum("ij,ij->i", diff, diff)


def _brute(points: np.ndarray, centres: np.ndarray, want_dist: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """argmin over centres of ||c||^2 - 2 x.c, in chunks of points; float64 so ties stay rare and exact."""
    m, d = points.shape
    k = centres.shape[0]
    x = points.astype(np.float64, copy=False)
    c2 = np.einsum("ij,ij->i", centres, centres)
    neg2c = -2.0 * centres.T  # (D, K)
    labels = np.empty(m, dtype=np.intp)
    dist = np.empty(m, dtype=np.float64) if want_dist else None
    step = max(1, _CHUNK_PAIRS // k)
    block = np.empty((min(step, m), k), dtype=np.float64)
    for start in range(0, m, step):
        xs = x[start : start + step]
        b = block[: xs.shape[0]]
        np.multiply(xs[:, :1], neg2c[:1], out=b)
        for j in range(1, d):
            b += xs[:, j : j + 1] * neg2c[j : j + 1]
        b += c2
        lab = b.argmin(axis=1)
        labels[start : start + xs.shape[0]] = lab
        if dist is not None:
            dist[start : start + xs.shape[0]] = np.take_along_axis(b, lab[:, None], axis=1)[:, 0] + np.einsum(
                "ij,ij->i", xs, xs
            )
    if dist is not None:
        np.maximum(dist, 0.0, out=dist)
    return labels, dist


def round_and_assign(colors: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round float centres to a uint8 palette and label every colour with its exact nearest entry."""
    palette = np.clip(np.rint(centres), 0, 255)
    labels, _ = nearest(colors.astype(np.float64), palette)
    return palette.astype(np.uint8), labels
