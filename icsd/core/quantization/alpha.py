"""Quantizing images with transparency: colour and alpha together, written as PLTE + tRNS.

An image with alpha is seen over a background, and what must stay close is the pixel composited on whatever
the viewer puts behind it. On black a pixel is its premultiplied colour c (colour x alpha / 255); on white it
is c + 255 - alpha. With dc, da the differences of two pixels' c and alpha, the errors are dc on black and
dc - da on white, and the distance here weighs both, per colour channel:

    (1 - s) dc^2 + s (dc - da)^2  =  (dc - s da)^2 + s (1 - s) da^2

which is the plain Euclidean distance between the points (`composited_points`)

    (c + s (255 - alpha) per colour channel,  alpha x sqrt(C s (1 - s)))     C = 3 colour channels, 1 grey

(the pixel composited on a grey of level 255 s, and its alpha weighted by how many channels an alpha error
shows in), so k-means, nearest-entry mapping and the dither kernels work unchanged on these points.
libimagequant weighs alpha alike: its colour difference takes, per channel, the larger of the errors on
black and on white. Premultiplied distance alone, (dc, da), is the error on black: it under-weights alpha
errors seen on a light background (measured: 0.6-1.1 dB worse than pngquant composited on white). The
white share s = WHITE_SHARE and an extra ALPHA_BOOST were set on bench/quality.py --alpha-only so that the
margins over pngquant on white and on black come out about even (s = 0.5, the plain sum, gives a margin
on white 0.3-0.45 dB smaller than on black).

Every fully transparent pixel is the same point whatever colour it stored, so they share one entry, kept
apart at index 0; the other pixels are clustered into the remaining K - 1 entries by k-means over the
histogram of their points (rounded to uint8; the NumPy k-means, which takes any number of channels,
whatever the strategy). An opaque pixel only ever gets an opaque entry (when there is one): the fit ends
with a few Lloyd steps under that rule, where an entry whose pixels are mostly opaque is opaque. Each entry
is the mean of its cluster, written as (colour, alpha) uint8, alpha >= OPAQUE as 255. Entries are ordered by
alpha, translucent first, so the PNG's tRNS chunk stops at the last translucent one.

Pixels are (H, W, 4) RGBA or (H, W, 2) grey + alpha uint8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icsd.core.quantization.dither import diffuse, ordered
from icsd.core.quantization.kmeans import numpy_kmeans
from icsd.core.quantization.nearest import nearest

__all__ = ["OPAQUE", "AlphaQuantized", "composited_points", "premultiply", "quantize_alpha"]

WHITE_SHARE = 0.6  # s: the weight of the error on white (1 - s: on black)
ALPHA_BOOST = 1.15  # the alpha coordinate's extra weight (measured: -1.5 % bytes at K=16, PSNR within 0.06 dB)
_REFINE_STEPS = 1  # Lloyd steps under the opaque rule after k-means (more gained < 0.01 dB on the bench)
OPAQUE = 248  # an entry's alpha from here up is written as 255 (libimagequant snaps near-opaque alike)


@dataclass(frozen=True, slots=True)
class AlphaQuantized:
    """palette: (K', C) uint8 colour (C = 3 RGB, 1 grey); alpha: (K',) uint8, ascending; indices (H, W) uint8."""

    palette: np.ndarray
    alpha: np.ndarray
    indices: np.ndarray

    def premultiplied(self) -> np.ndarray:
        """(K', C + 1) uint8: each entry's colour composited on black, and its alpha."""
        return premultiply(np.concatenate([self.palette, self.alpha[:, None]], axis=1))


def premultiply(pixels: np.ndarray) -> np.ndarray:
    """(..., C + 1) uint8 colour-and-alpha -> the same shape with colour scaled by alpha / 255, rounded."""
    alpha = pixels[..., -1:].astype(np.uint32)
    colour = (pixels[..., :-1].astype(np.uint32) * alpha + 127) // 255
    return np.concatenate([colour, alpha], axis=-1).astype(np.uint8)


def composited_points(pixels: np.ndarray) -> np.ndarray:
    """(..., C + 1) uint8 colour-and-alpha -> (..., C + 1) float64 points whose squared Euclidean distance is
    the squared error composited on black and on white, weighted 1 - s and s (see the module docstring)."""
    alpha = pixels[..., -1:].astype(np.float64)
    on_grey = pixels[..., :-1] * (alpha / 255.0) + (255.0 - alpha) * WHITE_SHARE
    return np.concatenate([on_grey, alpha * _alpha_weight(pixels.shape[-1] - 1)], axis=-1)


def quantize_alpha(pixels: np.ndarray, colors: int, *, dither: str = "none", strength: float = 1.0) -> AlphaQuantized:
    """At most `colors` (2..256) entries of colour and alpha for `pixels`; deterministic."""
    channels = pixels.shape[2]
    flat = pixels.reshape(-1, channels)
    visible = flat[:, -1] > 0
    has_clear = not visible.all()
    points, counts = _distinct(np.rint(composited_points(flat[visible])).astype(np.uint8))
    room = colors - int(has_clear)
    means = points.astype(np.float64) if points.shape[0] <= room else _fit(points, counts, room)
    palette, alpha = _entries(means)
    if has_clear:
        palette = np.concatenate([np.zeros((1, channels - 1), np.uint8), palette])
        alpha = np.concatenate([np.zeros(1, np.uint8), alpha])
    rows = np.unique(np.concatenate([palette, alpha[:, None]], axis=1), axis=0)  # rounding can merge entries
    rows = rows[np.lexsort((np.arange(len(rows)), rows[:, -1]))]  # translucent first; ties keep their order
    indices = _map(pixels, rows, dither, strength)
    if has_clear:
        indices[pixels[..., -1] == 0] = 0  # the clear entry, even where dithering carried an error there
    return AlphaQuantized(np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, -1]), indices)


def _fit(points: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """(k', D) float64 centres for more than k distinct (rounded) points: k-means, then Lloyd steps under the
    mapping's rule that opaque pixels take opaque entries. An entry whose pixels are mostly opaque is made
    opaque (its alpha fixed at 255, its colour their mean); without this, a cluster of an opaque area and its
    soft edge gets a translucent mean, and the opaque pixels would be sent to some other, distant entry."""
    _, labels = numpy_kmeans(points, counts, k)
    x = points.astype(np.float64)
    top = _top(points.shape[1])
    opaque = points[:, -1] == np.rint(top)  # alpha 254 rounds below it, with either weight
    centres = _centres(x, counts, opaque, labels, top)
    for _ in range(_REFINE_STEPS):
        solid = np.flatnonzero(centres[:, -1] == top)
        fresh = np.empty_like(labels)
        fresh[~opaque] = _nearest_among(x[~opaque], centres, None)
        fresh[opaque] = _nearest_among(x[opaque], centres, solid if solid.size else None)
        if np.array_equal(fresh, labels):
            break
        labels = fresh
        centres = _centres(x, counts, opaque, labels, top)
    return centres


def _centres(x: np.ndarray, counts: np.ndarray, opaque: np.ndarray, labels: np.ndarray, top: float) -> np.ndarray:
    """Count-weighted mean of each non-empty cluster; clusters mostly of opaque points get alpha exactly top."""
    k = int(labels.max()) + 1
    weight = np.bincount(labels, weights=counts, minlength=k)
    solid = 2 * np.bincount(labels[opaque], weights=counts[opaque], minlength=k) >= weight
    sums = np.stack([np.bincount(labels, weights=counts * x[:, j], minlength=k) for j in range(x.shape[1])],
                    axis=1)
    used = weight > 0
    centres = sums[used] / weight[used, None]
    centres[solid[used], -1] = top
    return centres


def _alpha_weight(colour_channels: int) -> float:
    """The alpha coordinate's scale: sqrt(C x share x (1 - share)) makes distances the weighted errors on black
    and white exactly; ALPHA_BOOST on top (<= 1 / 0.85 keeps opaque at <= 255, so points fit in uint8)."""
    return float(np.sqrt(colour_channels * WHITE_SHARE * (1.0 - WHITE_SHARE))) * ALPHA_BOOST


def _distinct(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of (N, D <= 4) uint8 points and their counts."""
    keys, counts = np.unique(_packed(points), return_counts=True)
    return _unpacked(keys, points.shape[1]), counts


def _entries(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points back to (colour, alpha) uint8 entries. Alpha at or above OPAQUE becomes 255 (opaque pixels
    averaged with a few nearly opaque ones must stay opaque, or a whole opaque area turns faintly see-through)."""
    alpha = np.clip(means[:, -1] / _alpha_weight(means.shape[1] - 1), 0.0, 255.0)
    on_black = np.clip(means[:, :-1] - (255.0 - alpha[:, None]) * WHITE_SHARE, 0.0, alpha[:, None])
    colour = np.rint(on_black * 255.0 / np.maximum(alpha, 1e-9)[:, None])
    written = np.rint(alpha)
    colour[written == 0] = 0
    return np.clip(colour, 0, 255).astype(np.uint8), np.where(written >= OPAQUE, 255, written).astype(np.uint8)


def _map(pixels: np.ndarray, rows: np.ndarray, dither: str, strength: float) -> np.ndarray:
    """(H, W) uint8 index of each pixel's entry among `rows` ((K, C + 1) uint8, alpha ascending): nearest (or
    dithered) between composited points. An opaque pixel gets an opaque entry whenever there is one: a faintly
    see-through patch in an opaque area shows (a checkerboard behind it) more than the error counted."""
    h, w, channels = pixels.shape
    flat = pixels.reshape(-1, channels)
    seen = composited_points(rows)
    solid = np.flatnonzero(rows[:, -1] == 255) if rows[-1, -1] == 255 else None
    if dither in ("diffuse", "ordered") and strength > 0:
        kernel = diffuse if dither == "diffuse" else ordered
        indices = kernel(np.rint(composited_points(pixels)).astype(np.uint8), seen, strength).ravel()
        if solid is not None:
            wrong = (flat[:, -1] == 255) & (rows[indices, -1] < 255)
            indices[wrong] = _nearest_among(composited_points(flat[wrong]), seen, solid)
        return indices.reshape(h, w)
    distinct, inverse = np.unique(_packed(flat), return_inverse=True)
    colours = _unpacked(distinct, channels)
    labels = np.empty(len(colours), dtype=np.uint8)
    opaque = colours[:, -1] == 255 if solid is not None else np.zeros(len(colours), bool)
    labels[opaque] = _nearest_among(composited_points(colours[opaque]), seen, solid)
    labels[~opaque] = _nearest_among(composited_points(colours[~opaque]), seen, None)
    return labels[inverse.ravel()].reshape(h, w)


def _top(channels: int) -> float:
    """An opaque entry's last coordinate."""
    return 255.0 * _alpha_weight(channels - 1)


def _nearest_among(points: np.ndarray, centres: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """Index into `centres` of each point's nearest centre among `rows` (all of them when None)."""
    if len(points) == 0:
        return np.zeros(0, dtype=np.intp)
    if rows is None:
        return nearest(points, centres)[0]
    return rows[nearest(points, centres[rows])[0]]


def _packed(points: np.ndarray) -> np.ndarray:
    """(N,) uint32 key of each row of (N, D <= 4) uint8 points; _unpacked inverts it."""
    key = np.zeros(points.shape[0], dtype=np.uint32)
    for channel in range(points.shape[1]):
        key = (key << 8) | points[:, channel]
    return key


def _unpacked(keys: np.ndarray, channels: int) -> np.ndarray:
    out = np.empty((keys.size, channels), dtype=np.uint8)
    for channel in range(channels):
        out[:, channel] = (keys >> (8 * (channels - 1 - channel))) & 0xFF
    return out
