"""Typed wrappers over the compiled kernels, which are optional: k-means over weighted colours (`_lloyd.c`) and
passes over an image's pixels (`_pixels.c`).

The extensions are built at install time when a C compiler is present; without them `AVAILABLE` is False and
the quantizers run their NumPy kernels (`lloyd.py`, `histogram.py`), the reference the compiled ones are
tested against.
Setting ICSD_PURE_NUMPY=1 in the environment ignores the extension (for comparisons and debugging).
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np

from icsd.core.quantization.bins import Bins, _moments, _unpack

__all__ = [
    "AVAILABLE", "lloyd", "assign", "split", "round_and_assign", "pixel_bins", "pixel_bin_moments", "nearest_pixels",
    "used_entries", "sort_pixels",
]

# bin_pixels sums channels in uint32: exact below this many pixels (larger images use the exact histogram).
PIXEL_BINS_MAX = 1 << 24


def _load() -> tuple[ModuleType, ModuleType] | tuple[None, None]:
    if os.environ.get("ICSD_PURE_NUMPY", "") not in ("", "0"):
        return None, None
    try:
        from icsd.core.quantization import _lloyd, _pixels
    except ImportError:
        return None, None
    return _lloyd, _pixels


_kernels, _pixel_kernels = _load()
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


def pixel_bins(pixels: np.ndarray, bits: int) -> Bins | None:
    """The colour histogram of (H, W, 3) uint8 `pixels` binned to `bits` per channel, read straight from the
    pixels (no exact histogram): the same bins, in the same order, as `histogram.binned` over the exact
    colours, but without `inverse`. None when the image has too many pixels for the kernel's exact sums."""
    moments = pixel_bin_moments(pixels, bits)
    if moments is None:
        return None
    keys, counts, sums = moments
    weights, total = counts.astype(np.float64), sums.astype(np.float64)
    return Bins(total / weights[:, None], weights, total, _unpack(keys, bits, 3), None)


def pixel_bin_moments(pixels: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """`pixel_bins` as exact integers: (M,) intp bin keys ascending, (M,) int64 counts, (M, 3) int64 colour sums;
    None when the image has too many pixels for the kernel's exact sums."""
    assert _pixel_kernels is not None, "the compiled kernels are not built"
    n = pixels.shape[0] * pixels.shape[1]
    if n >= PIXEL_BINS_MAX:
        return None
    keys, counts, sums = _pixel_kernels.bin_pixels(np.ascontiguousarray(pixels), n, bits)
    return (
        np.frombuffer(keys, dtype=np.int32).astype(np.intp),
        np.frombuffer(counts, dtype=np.int64),
        np.frombuffer(sums, dtype=np.int64).reshape(-1, 3),
    )


def sort_pixels(pixels: np.ndarray) -> np.ndarray:
    """(N,) uint64 (colour << 32 | pixel index) of every pixel of (H, W, 3) uint8 `pixels` (N < 2^32), ascending:
    what `np.sort` of those keys gives, by a radix sort (several times faster; a scratch copy meanwhile)."""
    assert _pixel_kernels is not None, "the compiled kernels are not built"
    n = pixels.shape[0] * pixels.shape[1]
    out, scratch = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
    _pixel_kernels.sort_pixels(np.ascontiguousarray(pixels), n, out, scratch)
    return out


def nearest_pixels(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) uint8 index of the exact nearest entry of a (K, 3) uint8 palette (K <= 256) for every pixel of
    (H, W, 3) uint8 `pixels`; ties go to the lowest index."""
    assert _pixel_kernels is not None, "the compiled kernels are not built"
    h, w = pixels.shape[:2]
    out = np.empty((h, w), dtype=np.uint8)
    pal = np.ascontiguousarray(palette, dtype=np.uint8)
    _pixel_kernels.nearest_pixels(np.ascontiguousarray(pixels), h * w, pal, pal.shape[0], out)
    return out


def used_entries(indices: np.ndarray, k: int) -> np.ndarray:
    """(k,) bool: which of k palette entries the uint8 `indices` (every value < k) use."""
    assert _pixel_kernels is not None, "the compiled kernels are not built"
    out = np.empty(k, dtype=np.uint8)
    flat = np.ascontiguousarray(indices, dtype=np.uint8)
    _pixel_kernels.used_entries(flat, flat.size, k, out)
    return out.view(bool)
