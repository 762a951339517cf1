"""Apply: map pixels to a given palette. The one place pixels meet a palette, so dithering belongs here.

The exact mapping gives every pixel its nearest palette entry (Euclidean in the palette's colour space,
ties to the lowest index). A palette is used as given: entries no pixel picks stay, in their order, so a
palette shared by a dataset gives every image the same PLTE.
"""

from __future__ import annotations

import numpy as np

from icsd.core.errors import ParameterError, ParameterTypeError
from icsd.core.quantization import dither as kernels
from icsd.core.quantization.histogram import Histogram

__all__ = ["DITHERS", "apply_palette", "check_palette"]

# Mapping methods apply_palette accepts; "none" is exact nearest entry, the others are in dither.py.
DITHERS = ("none", "diffuse", "ordered")


def apply_palette(hist: Histogram, palette: np.ndarray, *, dither: str = "none", strength: float = 1.0) -> np.ndarray:
    """(H, W) uint8 index into `palette` ((K, D) uint8, D matching the image) for every pixel of `hist`'s image."""
    if dither not in DITHERS:
        raise ParameterError("dither", f"dither must be one of {', '.join(DITHERS)}, got {dither!r}")
    if not 0.0 <= strength <= 1.0:
        raise ParameterError("strength", f"dither strength must be between 0 and 1, got {strength}")
    if dither != "none" and strength > 0.0:
        if hist.pixels is None:
            raise ValueError("this histogram has no pixels to map (it was made from counts)")
        method = kernels.diffuse if dither == "diffuse" else kernels.ordered
        return method(hist.pixels, palette, strength)
    indices = hist.index(palette)
    if indices is None:
        raise ValueError("this histogram has no pixels to map (it was made from counts)")
    return indices


def check_palette(palette: object, channels: int) -> np.ndarray:
    """A valid (K, channels) uint8 copy of a user's palette (K in 1..256), or a ParameterError naming it."""
    if not isinstance(palette, np.ndarray):
        raise ParameterTypeError("palette", f"palette must be a NumPy array, got {type(palette).__name__}")
    if palette.dtype != np.uint8:
        raise ParameterTypeError("palette", f"palette must have dtype uint8, got {palette.dtype}")
    rows = palette.reshape(-1, 1) if palette.ndim == 1 else palette
    if rows.ndim != 2 or rows.shape[1] != channels:
        want = "(K,) or (K, 1) for grey pixels" if channels == 1 else "(K, 3) for RGB pixels"
        raise ParameterError("palette", f"palette must have shape {want}, got {palette.shape}")
    if not 1 <= rows.shape[0] <= 256:
        raise ParameterError("palette", f"palette must have 1 to 256 colours, got {rows.shape[0]}")
    return np.ascontiguousarray(rows)
