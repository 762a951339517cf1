"""Dithered mapping of pixels to a palette: edge-aware error diffusion and an ordered (Bayer) mix.

Both spend their dithering where an eye sees bands, in flat and slowly varying areas, and little on edges
(where it makes jagged lines) and noisy texture (already "dithered" by nature): a per-pixel weight, 1 where
the local contrast is low and 0 where it is high, scales the dithering (libimagequant's idea, in remap.rs).

- `diffuse`: serpentine Floyd-Steinberg. The best low-pass fidelity; the output depends on every pixel
  before it, so it compresses worse than a plain mapping.
- `ordered`: each pixel picks between its nearest entry and the next one along its error, by an 8x8 Bayer
  threshold: a two-colour mix whose average is the pixel, decided by its position alone, so it repeats
  (compresses well) and is identical between runs and between similar frames.

Pixels are (H, W) grey or (H, W, D) uint8, the palette (K, D) uint8 with the same D. The compiled kernels
(`_dither.c`) and the reference ones below agree exactly (tests/test_dither.py); the reference `diffuse`
is a Python loop, slow, used only when the extension is not built.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["COMPILED", "diffuse", "ordered", "squared_error", "dither_weights"]

# Local contrast (the larger of the horizontal and vertical central differences, max over 3x3, 0..255
# units) below which a pixel is fully dithered and above which it is not at all.
_FLAT, _BUSY = 4.0, 24.0
_QUIET = 2.0  # squared error below which a pixel is not dithered
_DAMP_ABOVE, _DAMPING = 1728.0, 0.75  # squared error above which the diffused error is damped
_CLAMP = (-25.5, 280.5)
_BAYER = np.array(
    [[0, 32, 8, 40, 2, 34, 10, 42], [48, 16, 56, 24, 50, 18, 58, 26], [12, 44, 4, 36, 14, 46, 6, 38],
     [60, 28, 52, 20, 62, 30, 54, 22], [3, 35, 11, 43, 1, 33, 9, 41], [51, 19, 59, 27, 49, 17, 57, 25],
     [15, 47, 7, 39, 13, 45, 5, 37], [63, 31, 55, 23, 61, 29, 53, 21]], dtype=np.float64)
_THRESHOLDS = (_BAYER + 0.5) / 64.0


def _load():  # type: ignore[no-untyped-def]
    if os.environ.get("ICSD_PURE_NUMPY", "") not in ("", "0"):
        return None
    try:
        from icsd.core.quantization import _dither
    except ImportError:
        return None
    return _dither


_kernel = _load()
COMPILED = _kernel is not None


def diffuse(pixels: np.ndarray, palette: np.ndarray, strength: float, *, compiled: bool = True) -> np.ndarray:
    """(H, W) uint8 indices of `pixels` mapped to `palette` with edge-aware error diffusion of `strength`
    (0: none, 1: full; the response is made roughly linear, and 15/16 keeps errors from piling up)."""
    pixels, rows, weights = _prepare(pixels, palette)
    level = (1.0 - (1.0 - strength) ** 2) * (15.0 / 16.0)
    if compiled and _kernel is not None:
        return _run(_kernel.diffuse, pixels, rows, weights, level)
    return _diffuse_reference(pixels, rows, _gaps(rows), weights, level)


def ordered(pixels: np.ndarray, palette: np.ndarray, strength: float, *, compiled: bool = True) -> np.ndarray:
    """(H, W) uint8 indices of `pixels` mapped to `palette` by an edge-aware Bayer mix of `strength` (0..1)."""
    pixels, rows, weights = _prepare(pixels, palette)
    if compiled and _kernel is not None:
        return _run(_kernel.ordered, pixels, rows, weights, float(strength))
    return _ordered_reference(pixels, rows, _gaps(rows), weights, float(strength))


def squared_error(pixels: np.ndarray, palette: np.ndarray, indices: np.ndarray) -> int:
    """Sum over pixels of the squared distance to their entry: `((pixels - palette[indices]) ** 2).sum()`."""
    d = 1 if pixels.ndim == 2 else pixels.shape[2]
    if _kernel is not None:
        flat = np.ascontiguousarray(pixels)
        return int(_kernel.squared_error(flat, np.ascontiguousarray(palette, dtype=np.uint8),
                                         np.ascontiguousarray(indices, dtype=np.uint8), indices.size, d))
    diff = pixels.astype(np.float64).reshape(-1, d) - palette.reshape(-1, d)[indices.ravel()]
    return int(np.einsum("ij,ij->", diff, diff))


def dither_weights(pixels: np.ndarray) -> np.ndarray:
    """(H, W) float64 in [0, 1]: 1 where the neighbourhood is flat or a slow gradient, 0 on edges and texture.
    The contrast is the luma's; with a fourth channel (alpha) it is the larger of the luma's and its own, so
    alpha edges are edges too."""
    if pixels.ndim == 2:
        contrast = _contrast(pixels.astype(np.float64))
    else:
        luma = pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])[: min(3, pixels.shape[2])]
        contrast = _contrast(luma)
        if pixels.shape[2] == 4:
            np.maximum(contrast, _contrast(pixels[..., 3].astype(np.float64)), out=contrast)
    spread = np.pad(contrast, 1, mode="edge")
    h, w = contrast.shape
    local = contrast.copy()
    for dy in range(3):
        for dx in range(3):
            np.maximum(local, spread[dy : dy + h, dx : dx + w], out=local)
    return np.clip((_BUSY - local) / (_BUSY - _FLAT), 0.0, 1.0)


def _contrast(plane: np.ndarray) -> np.ndarray:
    """(H, W): the larger of the horizontal and vertical central differences, halved."""
    padded = np.pad(plane, 1, mode="edge")
    return np.maximum(
        np.abs(padded[1:-1, 2:] - padded[1:-1, :-2]), np.abs(padded[2:, 1:-1] - padded[:-2, 1:-1])
    ) / 2.0


def _prepare(pixels: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = np.ascontiguousarray(palette, dtype=np.float64).reshape(-1, d)
    return np.ascontiguousarray(pixels), rows, np.ascontiguousarray(dither_weights(pixels))


def _run(kernel, pixels: np.ndarray, rows: np.ndarray, weights: np.ndarray, level: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    h, w = pixels.shape[:2]
    out = np.empty((h, w), dtype=np.uint8)
    kernel(pixels, weights, h, w, rows.shape[1], rows, _gaps(rows), rows.shape[0], level, out)
    return out


def _gaps(rows: np.ndarray) -> np.ndarray:
    """(K,) squared distance of each entry to its nearest other entry (inf for a one-entry palette)."""
    between = _distances(rows, rows)
    np.fill_diagonal(between, np.inf)
    return np.ascontiguousarray(between.min(axis=1))


def _distances(points: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(M, K) squared distances, summed channel by channel in the compiled kernel's order."""
    total = np.square(points[:, None, 0] - rows[None, :, 0])
    for j in range(1, rows.shape[1]):
        total = total + np.square(points[:, None, j] - rows[None, :, j])
    return total


def _nearest(points: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.argmin(_distances(points, rows), axis=1)  # ties: lowest index, as the kernel


def _ordered_reference(
    pixels: np.ndarray, rows: np.ndarray, gaps: np.ndarray, weights: np.ndarray, level: float
) -> np.ndarray:
    h, w = pixels.shape[:2]
    d = rows.shape[1]
    v = pixels.reshape(-1, d).astype(np.float64)
    out = np.empty(h * w, dtype=np.uint8)
    step = max(1, (1 << 18) // rows.shape[0])
    thresholds = np.tile(_THRESHOLDS, (h // 8 + 1, w // 8 + 1))[:h, :w].ravel()
    level_map = weights.ravel() * level
    for start in range(0, h * w, step):
        part = slice(start, start + step)
        x = v[part]
        c1 = _nearest(x, rows)
        a = rows[c1]
        e = x - a
        e2 = _row_sum(e * e)
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = np.maximum(np.sqrt(gaps[c1] / e2), 3.0)
        reach[~np.isfinite(reach)] = 3.0  # e2 == 0 (or a one-entry palette): such pixels are not dithered
        c2 = _nearest(x + reach[:, None] * e, rows)
        b = rows[c2] - a
        den = _row_sum(b * b)
        live = (e2 >= _QUIET) & (c2 != c1)
        t = np.zeros(len(x))
        t[live] = np.clip(_row_sum((x - a) * b)[live] / den[live], 0.0, 1.0)
        t = t * level_map[part]
        out[part] = np.where(live & (thresholds[part] < t), c2, c1)
    return out.reshape(h, w)


def _row_sum(a: np.ndarray) -> np.ndarray:
    total = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        total = total + a[:, j]
    return total


def _diffuse_reference(
    pixels: np.ndarray, rows: np.ndarray, gaps: np.ndarray, weights: np.ndarray, level: float
) -> np.ndarray:
    """The compiled diffusion, one pixel at a time in Python (the error of each depends on the last)."""
    h, w = pixels.shape[:2]
    d = rows.shape[1]
    px = pixels.reshape(h, w, d).astype(np.float64)
    out = np.empty((h, w), dtype=np.uint8)
    errs = [np.zeros((w + 2, d)), np.zeros((w + 2, d))]
    for y in range(h):
        forward = y % 2 == 0
        this_err, next_err = (errs[0], errs[1]) if forward else (errs[1], errs[0])
        next_err[:] = 0.0
        for step in range(w):
            x = step if forward else w - 1 - step
            s = this_err[x + 1] * (level * weights[y, x])
            spx = px[y, x].copy()
            if float(_row_sum(s[None] * s[None])[0]) >= _QUIET:
                spx = np.clip(spx + s, *_CLAMP)
            m = int(_nearest(spx[None], rows)[0])
            out[y, x] = m
            e = spx - rows[m]
            limit = gaps[m] if gaps[m] > _DAMP_ABOVE else _DAMP_ABOVE
            v = e * (_DAMPING if float(_row_sum(e[None] * e[None])[0]) > limit else 1.0)
            if forward:
                this_err[x + 2] += v * (7.0 / 16.0)
                next_err[x] += v * (3.0 / 16.0)
                next_err[x + 1] += v * (5.0 / 16.0)
                next_err[x + 2] = v * (1.0 / 16.0)
            else:
                this_err[x] += v * (7.0 / 16.0)
                next_err[x] = v * (1.0 / 16.0)
                next_err[x + 1] += v * (5.0 / 16.0)
                next_err[x + 2] += v * (3.0 / 16.0)
    return out
