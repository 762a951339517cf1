"""PSNR of a result: the core's figure equals the textbook formula on the decoded output."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from icsd.core import CompressParams
from icsd.core.pipeline import compress
from icsd.core.quality import psnr
from tests import images


@pytest.mark.parametrize(("grayscale", "colors"), [(False, 2), (False, 16), (True, 16), (False, 256)])
def test_result_psnr_is_that_of_the_decoded_output_against_the_downsampled_image(grayscale: bool, colors: int) -> None:
    data = images.sample_bytes("china.jpg")
    result = compress(data, CompressParams(colors=colors, grayscale=grayscale, scale=4))
    written = np.asarray(Image.open(io.BytesIO(result.data)).convert("L" if grayscale else "RGB")).astype(float)
    small = compress(data, CompressParams(strategy="size-only", grayscale=grayscale, scale=4))
    reference = np.asarray(Image.open(io.BytesIO(small.data))).astype(float)
    assert result.psnr == pytest.approx(10 * math.log10(255**2 / np.mean((written - reference) ** 2)), abs=1e-9)
    assert small.psnr is None


def test_exact_output_is_infinite_psnr() -> None:
    pixels = np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    both = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)
    assert psnr(pixels, both, np.array([[0, 1]], np.uint8)) == math.inf
    assert psnr(pixels, np.array([[0, 0, 0]], dtype=np.uint8), np.array([[0, 0]], np.uint8)) == pytest.approx(
        10 * math.log10(255**2 / (3 * 255**2 / 6))
    )
