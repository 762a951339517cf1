"""Perceptual colour: k-means in Oklab (Björn Ottosson, 2020), the palette written back in sRGB.

Euclidean distance in sRGB over-weights differences an eye barely sees (among bright greens) and
under-weights ones it sees well (among darks and blues); in Oklab equal distances look about equally
different, so clustering there spends the palette where it shows. The distinct colours of the image are
converted once, laid on a 0..255 grid per Oklab axis (L x 255, a and b x 255 around 128: steps of ~0.004,
below a just-noticeable difference of ~0.02), clustered by the weighted k-means (NumPy path, any strategy),
converted back and rounded to sRGB, and every colour mapped to the entry nearest in Oklab.
"""

from __future__ import annotations

import numpy as np

from icsd.core.quantization.histogram import Histogram
from icsd.core.quantization.kmeans import numpy_kmeans
from icsd.core.quantization.nearest import nearest

__all__ = ["fit_oklab", "linear_to_srgb", "oklab_to_srgb", "srgb_to_linear", "srgb_to_oklab", "xyz_to_oklab"]

# Ottosson's matrices: XYZ (D65) -> LMS, linear sRGB -> LMS, cube-rooted LMS -> Lab, and the inverses.
_XYZ_TO_LMS = np.array([[0.8189330101, 0.3618667424, -0.1288597137],
                        [0.0329845436, 0.9293118715, 0.0361456387],
                        [0.0482003018, 0.2643662691, 0.6338517070]])
_RGB_TO_LMS = np.array([[0.4122214708, 0.5363325363, 0.0514459929],
                        [0.2119034982, 0.6806995451, 0.1073969566],
                        [0.0883024619, 0.2817188376, 0.6299787005]])
_LMS_TO_LAB = np.array([[0.2104542553, 0.7936177850, -0.0040720468],
                        [1.9779984951, -2.4285922050, 0.4505937099],
                        [0.0259040371, 0.7827717662, -0.8086757660]])
_LAB_TO_LMS = np.array([[1.0, 0.3963377774, 0.2158037573],
                        [1.0, -0.1055613458, -0.0638541728],
                        [1.0, -0.0894841775, -1.2914855480]])
_LMS_TO_RGB = np.array([[4.0767416621, -3.3077115913, 0.2309699292],
                        [-1.2684380046, 2.6097574011, -0.3413193965],
                        [-0.0041960863, -0.7034186147, 1.7076147010]])
_GRID_SCALE = 255.0
_GRID_OFFSET = np.array([0.0, 128.0, 128.0])


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB values in 0..1 -> linear light (IEC 61966-2-1)."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


def xyz_to_oklab(xyz: np.ndarray) -> np.ndarray:
    """(..., 3) CIE XYZ (D65, Y = 1 for white) -> (..., 3) Oklab L, a, b."""
    return np.cbrt(xyz @ _XYZ_TO_LMS.T) @ _LMS_TO_LAB.T


def srgb_to_oklab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB -> (..., 3) float64 Oklab."""
    return np.cbrt(srgb_to_linear(rgb / 255.0) @ _RGB_TO_LMS.T) @ _LMS_TO_LAB.T


def oklab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """(..., 3) Oklab -> (..., 3) uint8 sRGB, out-of-gamut colours clipped."""
    rgb = linear_to_srgb((lab @ _LAB_TO_LMS.T) ** 3 @ _LMS_TO_RGB.T)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def fit_oklab(hist: Histogram, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(palette (K' <= k, 3) uint8 sRGB, (H, W) uint8 index of every pixel's entry nearest in Oklab) for an RGB
    image of more than k distinct colours."""
    colors, counts = hist.colors, hist.counts
    lab = srgb_to_oklab(colors.astype(np.float64))
    grid = np.clip(np.rint(lab * _GRID_SCALE + _GRID_OFFSET), 0, 255).astype(np.uint8)
    points, inverse = np.unique(grid, axis=0, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights=counts, minlength=points.shape[0]).astype(np.int64)
    if points.shape[0] > k:
        centres, _ = numpy_kmeans(points, weights, k)
    else:
        centres = points
    palette = np.unique(oklab_to_srgb((centres.astype(np.float64) - _GRID_OFFSET) / _GRID_SCALE), axis=0)
    labels, _ = nearest(lab, srgb_to_oklab(palette.astype(np.float64)))
    indices = hist.expand(labels)
    assert indices is not None  # an image's histogram has pixels
    return palette, indices
