"""Typed wrappers over the compiled k-means kernels (`_lloyd.c`), which are optional.

The extension is built at install time when a C compiler is present; without it `AVAILABLE` is False and
our k-means runs its NumPy kernels (`lloyd.py`), the reference the compiled ones are tested against.
Setting ICSD_PURE_NUMPY=1 in the environment ignores the extension (for comparisons and debugging).
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np

from icsd.quantize.histogram import _moments

__all__ = ["AVAILABLE", "lloyd", "assign", "split", "round_and_assign"]


def _load() -> ModuleType | None:
    if os.environ.get("ICSD_PURE_NUMPY", "") not in ("", "0"):
        return None
    try:
        from icsd.quantize import _lloyd
    except ImportError:
        return None
    return _lloyd


_kernels = _load()
AVAILABLE = _kernels is not None


def lloyd(
    x: np.ndarray,
    w: np.ndarray,
    wx: np.ndarray,
    centres: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    tol: float,
    max_iter: int,
    relax: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Weighted k-means of points `x` (M, D) with integer weights `w` and exact integer sums `wx` = w * x,
    from (K >= 2, D) `centres`, or from the partition `labels` when given (centres then its starting centres).

    Returns (centres = the exact weighted means of the final partition, int32 labels, iterations).
    """
    assert _kernels is not None, "the compiled kernels are not built"
    m = x.shape[0]
    out_centres = np.array(centres, dtype=np.float64, order="C")  # a fresh copy: updated in place
    out_labels = np.zeros(m, np.int32) if labels is None else np.array(labels, dtype=np.int32, order="C")
    iterations = _kernels.lloyd(
        np.ascontiguousarray(x, dtype=np.float64),
        np.ascontiguousarray(w, dtype=np.int64),
        np.ascontiguousarray(wx, dtype=np.int64),
        out_centres,
        out_labels,
        m,
        out_centres.shape[0],
        labels is not None,
        float(tol),
        int(max_iter),
        float(relax),
    )
    return out_centres, out_labels, iterations


def assign(x: np.ndarray, centres: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """int32 index of the exact nearest centre for every point of `x` (M, D); `labels`, when given, are
    starting guesses (cheap when nearly right) and are not modified."""
    assert _kernels is not None, "the compiled kernels are not built"
    m = x.shape[0]
    out = np.zeros(m, np.int32) if labels is None else np.array(labels, dtype=np.int32, order="C")
    c = np.ascontiguousarray(centres, dtype=np.float64)
    _kernels.assign(np.ascontiguousarray(x, dtype=np.float64), c, out, m, c.shape[0], labels is not None)
    return out


def split(coords: np.ndarray, w: np.ndarray, wx: np.ndarray, k: int, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeds by greedy SSE-optimal binary splitting of points with integer coordinates `coords` (M, 3) below
    `levels`, integer weights `w` and exact sums `wx`: ((k', 3) centres = the parts' weighted means, (M,)
    int32 part of every point), k' <= k (fewer only when the points run out)."""
    assert _kernels is not None, "the compiled kernels are not built"
    m = coords.shape[0]
    w64 = np.ascontiguousarray(w, dtype=np.int64)
    wx64 = np.ascontiguousarray(wx, dtype=np.int64)
    labels = np.empty(m, np.int32)
    n = _kernels.split(np.ascontiguousarray(coords, dtype=np.uint8), w64, wx64, labels, m, int(k), int(levels))
    mass, sums = _moments(labels, n, w64, lambda j: wx64[:, j], 3)
    return sums / mass[:, None], labels


def round_and_assign(x: np.ndarray, centres: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round float centres to a uint8 palette and give every point of `x` its exact nearest entry, starting
    from `labels` (the partition the centres came from: nearly right after rounding)."""
    palette = np.clip(np.rint(centres), 0, 255)
    return palette.astype(np.uint8), assign(x, palette, labels)
