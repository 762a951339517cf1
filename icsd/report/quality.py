"""Image quality numbers for the compare page: PSNR and SSIM, in NumPy alone.

SSIM is Wang, Bovik, Sheikh & Simoncelli (2004), "Image quality assessment: from error visibility to
structural similarity": an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, computed on
luminance (ITU-R BT.601 weights) over the windows that fit inside the image (MATLAB's filter2 'valid', as in
the authors' ssim_index.m), averaged. Written here rather than taken from scikit-image so the runtime needs
nothing beyond NumPy; the window is separable, so each local mean is two 1-D passes (~60 ms for 800x600).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["SSIM_WINDOW", "gaussian_window", "luminance", "psnr", "ssim"]

SSIM_WINDOW = 11
_SIGMA = 1.5
_K1, _K2, _L = 0.01, 0.03, 255.0
_C1, _C2 = (_K1 * _L) ** 2, (_K2 * _L) ** 2
_BT601 = np.array([0.299, 0.587, 0.114])


def luminance(pixels: np.ndarray) -> np.ndarray:
    """Y of an RGB (h, w, 3) array, or a grey (h, w) array as it is, as float64."""
    if pixels.ndim == 2:
        return pixels.astype(np.float64)
    return pixels[..., :3].astype(np.float64) @ _BT601


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over every channel (8-bit peak); inf for identical images."""
    _check_shapes(reference, test)
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(_L * _L / mse)


def ssim(reference: np.ndarray, test: np.ndarray) -> float | None:
    """Mean SSIM of the two images' luminance; None when the image is smaller than one 11x11 window."""
    _check_shapes(reference, test)
    # float32 halves the memory traffic; centring on 128 keeps E[x^2] - mu^2 accurate to ~1e-3 (C2 is 58.5)
    x = luminance(reference).astype(np.float32) - 128
    y = luminance(test).astype(np.float32) - 128
    if min(x.shape) < SSIM_WINDOW:
        return None
    mu_x, mu_y, xx, yy, xy = _local_means(np.stack([x, y, x * x, y * y, x * y]))
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    mu_x, mu_y = mu_x + 128, mu_y + 128
    index = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x * mu_x + mu_y * mu_y + _C1) * (var_x + var_y + _C2))
    return float(index.mean())


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = _SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian; its outer product with itself is the 2-D window (MATLAB's fspecial)."""
    offsets = np.arange(size) - (size - 1) / 2
    weights = np.exp(-(offsets**2) / (2 * sigma * sigma))
    return weights / weights.sum()


def _local_means(maps: np.ndarray) -> np.ndarray:
    """Gaussian-weighted mean of every full window ('valid') of each (h, w) map: a pass down, one across."""
    weights = gaussian_window().astype(maps.dtype)
    down = sliding_window_view(maps, SSIM_WINDOW, axis=1) @ weights
    return sliding_window_view(down, SSIM_WINDOW, axis=2) @ weights


def _check_shapes(reference: np.ndarray, test: np.ndarray) -> None:
    if reference.shape != test.shape:
        raise ValueError(f"images differ in shape: {reference.shape} vs {test.shape}")
