"""Colour quantization: reduce an image's pixels to at most K colours.

Public, stable API (the benchmark and users import it):

    icsd.quantize(pixels, colors, strategy="kmeans", seed=0) -> Quantized

`pixels` is an (H, W, 3) RGB or (H, W) grayscale uint8 array. Strategies are looked up by
name in a registry; the original system's abbreviations (MKM, FKM, MBKM) are accepted.
`size-only` does no clustering and is handled by the pipeline, not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icsd.errors import SettingsError
from icsd.params import Strategy

__all__ = ["Quantized", "quantize"]


@dataclass(frozen=True, slots=True)
class Quantized:
    """A palette image: `palette[indices]` gives the quantized pixels.

    palette: (K', 3) uint8 for RGB input or (K',) uint8 for grayscale, K' <= K.
    indices: (H, W) uint8 (uint16 only if K' > 256, which the pipeline never asks for).
    """

    palette: np.ndarray
    indices: np.ndarray

    def to_array(self) -> np.ndarray:
        """The quantized image, same shape and dtype as the input pixels."""
        return self.palette[self.indices]


def quantize(pixels: np.ndarray, colors: int, strategy: str | Strategy = "kmeans", seed: int = 0) -> Quantized:
    """Reduce `pixels` to at most `colors` colours with the named strategy, deterministically for `seed`."""
    raise NotImplementedError  # implemented in the quantize work package
