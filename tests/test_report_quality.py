"""PSNR and SSIM (icsd.report.quality) against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icsd.report.quality import SSIM_WINDOW, gaussian_window, luminance, psnr, ssim

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_identical_images_have_ssim_one_and_infinite_psnr() -> None:
    image = _noise((40, 50, 3))
    assert ssim(image, image) == 1.0
    assert psnr(image, image) == math.inf


@pytest.mark.parametrize(("a", "b"), [(100, 100), (100, 120), (0, 255), (30, 200)])
def test_flat_images_give_the_luminance_term_alone(a: int, b: int) -> None:
    # No variance anywhere: the contrast-structure term is C2/C2 = 1, leaving (2ab + C1) / (a^2 + b^2 + C1).
    x, y = np.full((20, 30), a, np.uint8), np.full((20, 30), b, np.uint8)
    assert ssim(x, y) == pytest.approx((2 * a * b + C1) / (a * a + b * b + C1), abs=1e-5)  # float32 maps


def test_one_window_matches_the_formula_written_out() -> None:
    # An 11x11 image has exactly one window: Wang et al.'s equation with the 2-D Gaussian weights, directly.
    x = _noise((SSIM_WINDOW, SSIM_WINDOW), seed=1)
    y = np.clip(x * 0.7 + _noise(x.shape, seed=2) * 0.3, 0, 255).astype(np.uint8)
    expected = _ssim_one_window(x, y)
    assert 0.1 < expected < 0.99
    assert ssim(x, y) == pytest.approx(expected, abs=1e-5)


def _ssim_one_window(x: np.ndarray, y: np.ndarray) -> float:
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    w = np.outer(gaussian_window(), gaussian_window())
    mx, my = (w * xf).sum(), (w * yf).sum()
    vx, vy = (w * (xf - mx) ** 2).sum(), (w * (yf - my) ** 2).sum()
    cov = (w * (xf - mx) * (yf - my)).sum()
    return ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))


def test_the_mean_is_over_every_valid_window() -> None:
    x, y = _noise((13, 12), seed=3), _noise((13, 12), seed=4)
    windows = [_ssim_one_window(x[r : r + 11, c : c + 11], y[r : r + 11, c : c + 11])
               for r in range(3) for c in range(2)]
    assert ssim(x, y) == pytest.approx(np.mean(windows), abs=1e-5)


def test_gaussian_window_is_matlabs_fspecial() -> None:
    weights = gaussian_window()
    assert weights.sum() == pytest.approx(1.0)
    assert weights[5] / weights[4] == pytest.approx(math.exp(1 / (2 * 1.5**2)))
    assert weights[0] == pytest.approx(weights[10])


def test_ssim_falls_with_noise_and_is_symmetric() -> None:
    image = np.repeat(np.linspace(0, 255, 64, dtype=np.float64)[None, :], 48, axis=0)
    rng = np.random.default_rng(5)
    noisy = [np.clip(image + rng.normal(0, s, image.shape), 0, 255).astype(np.uint8) for s in (2, 10, 40)]
    scores = [ssim(image.astype(np.uint8), n) for n in noisy]
    assert scores[0] > scores[1] > scores[2]
    assert ssim(noisy[1], image.astype(np.uint8)) == pytest.approx(scores[1], abs=1e-6)


def test_ssim_is_on_luminance_with_bt601_weights() -> None:
    rgb = _noise((16, 16, 3), seed=6)
    assert luminance(rgb)[3, 4] == pytest.approx(0.299 * rgb[3, 4, 0] + 0.587 * rgb[3, 4, 1] + 0.114 * rgb[3, 4, 2])
    swapped = rgb[..., ::-1].copy()  # same luminance only where R == B: different in general
    assert ssim(rgb, swapped) < 1


def test_psnr_of_a_known_error() -> None:
    x = np.zeros((10, 10, 3), np.uint8)
    y = x.copy()
    y[0, 0, 0] = 30  # MSE = 900 / 300 = 3
    assert psnr(x, y) == pytest.approx(10 * math.log10(255**2 / 3))


def test_smaller_than_one_window_has_no_ssim_and_shapes_must_match() -> None:
    assert ssim(_noise((10, 40)), _noise((10, 40), seed=1)) is None
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(_noise((4, 4)), _noise((4, 5)))
