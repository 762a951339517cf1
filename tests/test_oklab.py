"""Oklab conversions against Björn Ottosson's published values, and clustering in Oklab."""

from __future__ import annotations

import numpy as np
import pytest

from icsd.core import CompressParams, ParameterError
from icsd.core.quantization import quantize
from icsd.core.quantization.oklab import oklab_to_srgb, srgb_to_oklab, xyz_to_oklab
from tests import images


@pytest.mark.parametrize(
    ("xyz", "lab"),
    [  # the table in "A perceptual color space for image processing" (Ottosson, 2020), to 3 decimals
        ((0.950, 1.000, 1.089), (1.000, 0.000, 0.000)),
        ((1.000, 0.000, 0.000), (0.450, 1.236, -0.019)),
        ((0.000, 1.000, 0.000), (0.922, -0.671, 0.263)),
        ((0.000, 0.000, 1.000), (0.153, -1.415, -0.449)),
    ],
)
def test_xyz_to_oklab_matches_the_published_table(xyz, lab) -> None:
    assert xyz_to_oklab(np.array(xyz)) == pytest.approx(np.array(lab), abs=1e-3)


@pytest.mark.parametrize(
    ("rgb", "lab"),
    [  # sRGB primaries and white as Ottosson's reference implementation gives them
        ((255, 255, 255), (1.0, 0.0, 0.0)),
        ((255, 0, 0), (0.627955, 0.224863, 0.125846)),
        ((0, 255, 0), (0.866440, -0.233888, 0.179498)),
        ((0, 0, 255), (0.452014, -0.032457, -0.311528)),
    ],
)
def test_srgb_to_oklab_and_back(rgb, lab) -> None:
    converted = srgb_to_oklab(np.array(rgb, dtype=np.float64))
    assert converted == pytest.approx(np.array(lab), abs=1e-4)
    assert oklab_to_srgb(converted).tolist() == list(rgb)


def test_every_srgb_grey_level_round_trips() -> None:
    grey = np.repeat(np.arange(256, dtype=np.float64)[:, None], 3, axis=1)
    assert np.array_equal(oklab_to_srgb(srgb_to_oklab(grey)), grey.astype(np.uint8))


def test_oklab_clustering_gives_a_valid_palette_with_lower_perceptual_error() -> None:
    pixels = images.sample_array("china.jpg")[::2, ::2]
    rgb, ok = quantize(pixels, 16), quantize(pixels, 16, color_space="oklab")
    assert ok.palette.shape[1] == 3 and len(ok.palette) <= 16 and ok.indices.max() < len(ok.palette)
    delta = lambda q: np.linalg.norm(srgb_to_oklab(q.to_array().astype(float)) - srgb_to_oklab(  # noqa: E731
        pixels.astype(float)), axis=2).mean()
    assert delta(ok) < delta(rgb)


def test_bad_color_space_names_itself() -> None:
    with pytest.raises(ParameterError, match="color_space"):
        CompressParams(color_space="lab")
