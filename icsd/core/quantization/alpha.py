"""Quantizing images with transparency: colour and alpha together, written as PLTE + tRNS.

Distances are measured between premultiplied pixels (colour x alpha, and alpha): an error in the colour of
a nearly transparent pixel costs as little as it shows, and every fully transparent pixel is the same point
(0, 0, 0, 0) whatever colour it stored, so they all share one entry. That entry is kept apart (index 0);
the other pixels are clustered into the remaining K - 1 entries by k-means over their premultiplied
histogram (the NumPy k-means, which takes any number of channels, whatever the strategy). Entries are then
ordered by alpha, translucent first, so the PNG's tRNS chunk stops at the last translucent one.

Pixels are (H, W, 4) RGBA or (H, W, 2) grey + alpha uint8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icsd.core.quantization.dither import diffuse, ordered
from icsd.core.quantization.kmeans import numpy_kmeans
from icsd.core.quantization.nearest import nearest

__all__ = ["OPAQUE", "AlphaQuantized", "quantize_alpha", "premultiply"]

OPAQUE = 248  # an entry's alpha from here up is written as 255 (libimagequant snaps near-opaque alike)


@dataclass(frozen=True, slots=True)
class AlphaQuantized:
    """palette: (K', C) uint8 colour (C = 3 RGB, 1 grey); alpha: (K',) uint8, ascending; indices (H, W) uint8."""

    palette: np.ndarray
    alpha: np.ndarray
    indices: np.ndarray

    def premultiplied(self) -> np.ndarray:
        """(K', C + 1) uint8: each entry as the distances see it."""
        return premultiply(np.concatenate([self.palette, self.alpha[:, None]], axis=1))


def premultiply(pixels: np.ndarray) -> np.ndarray:
    """(..., C + 1) uint8 colour-and-alpha -> the same shape with colour scaled by alpha / 255, rounded."""
    alpha = pixels[..., -1:].astype(np.uint32)
    colour = (pixels[..., :-1].astype(np.uint32) * alpha + 127) // 255
    return np.concatenate([colour, alpha], axis=-1).astype(np.uint8)


def quantize_alpha(pixels: np.ndarray, colors: int, *, dither: str = "none", strength: float = 1.0) -> AlphaQuantized:
    """At most `colors` (2..256) entries of colour and alpha for `pixels`; deterministic."""
    channels = pixels.shape[2]
    flat = premultiply(pixels).reshape(-1, channels)
    visible = flat[:, -1] > 0
    has_clear = not visible.all()
    points, counts = _distinct(flat[visible])
    room = colors - int(has_clear)
    if points.shape[0] <= room:
        centres = points
    else:
        centres, _ = numpy_kmeans(points, counts, room)
    entries = np.unique(np.concatenate([np.zeros((1, channels), np.uint8), centres]) if has_clear else centres,
                        axis=0)
    palette, alpha = _unpremultiply(entries)
    if len(np.unique(np.concatenate([palette, alpha[:, None]], axis=1), axis=0)) < len(alpha):
        palette, alpha = _distinct_entries(palette, alpha)
    order = np.lexsort((np.arange(len(alpha)), alpha))  # translucent first; ties keep their order
    palette, alpha = palette[order], alpha[order]
    seen = premultiply(np.concatenate([palette, alpha[:, None]], axis=1))  # what the written entries are
    indices = _map(premultiply(pixels), seen, dither, strength)
    return AlphaQuantized(palette, alpha, indices)


def _distinct(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of (N, D <= 4) uint8 points and their counts (packed into uint32 keys and sorted)."""
    key = np.zeros(points.shape[0], dtype=np.uint32)
    for channel in range(points.shape[1]):
        key = (key << 8) | points[:, channel]
    uniq, counts = np.unique(key, return_counts=True)
    out = np.empty((uniq.size, points.shape[1]), dtype=np.uint8)
    for channel in range(points.shape[1]):
        out[:, channel] = (uniq >> (8 * (points.shape[1] - 1 - channel))) & 0xFF
    return out, counts


def _unpremultiply(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour and alpha of premultiplied entries; alpha at or above OPAQUE becomes 255 (opaque pixels averaged
    with a few nearly opaque ones must stay opaque, or a whole opaque area turns faintly see-through)."""
    alpha = entries[:, -1]
    safe = np.maximum(alpha, 1).astype(np.float64)[:, None]
    colour = np.clip(np.rint(entries[:, :-1] * 255.0 / safe), 0, 255).astype(np.uint8)
    colour[alpha == 0] = 0
    return colour, np.where(alpha >= OPAQUE, 255, alpha).astype(np.uint8)


def _distinct_entries(palette: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entries made equal by rounding or the opaque snap, kept once."""
    rows = np.unique(np.concatenate([palette, alpha[:, None]], axis=1), axis=0)
    return rows[:, :-1], rows[:, -1].copy()


def _map(features: np.ndarray, seen: np.ndarray, dither: str, strength: float) -> np.ndarray:
    h, w, channels = features.shape
    if dither == "diffuse" and strength > 0:
        return diffuse(features, seen, strength)
    if dither == "ordered" and strength > 0:
        return ordered(features, seen, strength)
    points, inverse = np.unique(features.reshape(-1, channels), axis=0, return_inverse=True)
    labels, _ = nearest(points.astype(np.float64), seen.astype(np.float64))
    return labels.astype(np.uint8)[inverse.ravel()].reshape(h, w)
