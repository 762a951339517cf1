"""ICSD_PNG_EFFORT: higher efforts write the same palette and the same pixels in fewer bytes; `fast` is today's
writer byte for byte; bad values and a missing `png` extra stop with one line naming the setting."""

from __future__ import annotations

import importlib.abc
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icsd.core import CompressParams, ParameterError, PngEffort, compress
from icsd.core.png import EFFORTS, encode_indexed_png
from icsd.core.quantization import quantize
from icsd.errors import SettingsError
from icsd.settings import load_settings
from tests import images


def decoded(data: bytes) -> tuple[Image.Image, np.ndarray]:
    back = Image.open(io.BytesIO(data))
    back.load()  # checks every CRC and the zlib stream
    return back, np.asarray(back)


class _NoOxipng(importlib.abc.MetaPathFinder):
    """Makes `import oxipng` fail as it does when the `png` extra is not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "oxipng" or name.startswith("oxipng."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@pytest.fixture
def without_oxipng(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "oxipng" or n.startswith("oxipng.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoOxipng(), *sys.meta_path])


def _banded(colors: int) -> tuple[np.ndarray, np.ndarray]:
    """A random palette and smooth bands of indices with noise: something a filter search can win on."""
    rng = np.random.default_rng(colors)
    palette = rng.integers(0, 256, (colors, 3), dtype=np.uint8)
    indices = (np.add.outer(np.arange(61), np.arange(67)) // 5 + rng.integers(0, 2, (61, 67))) % colors
    return palette, indices.astype(np.uint8)


@pytest.mark.parametrize(("effort", "keep_palette"), [("high", False), ("max", True)])
@pytest.mark.parametrize("colors", [2, 3, 16, 17, 256])
def test_high_and_max_with_a_kept_palette_keep_palette_and_indices(
    effort: str, keep_palette: bool, colors: int
) -> None:
    palette, indices = _banded(colors)
    image, back = decoded(encode_indexed_png(palette, indices, effort=effort, keep_palette=keep_palette))
    assert image.mode == "P"
    assert np.array_equal(back, indices)
    assert np.array_equal(np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)[:colors], palette)


@pytest.mark.parametrize("colors", [2, 3, 16, 17, 256])
def test_max_may_reorder_the_palette_but_keeps_every_pixel(colors: int) -> None:
    palette, indices = _banded(colors)
    image, _ = decoded(encode_indexed_png(palette, indices, effort="max"))
    assert image.mode == "P"
    assert np.array_equal(np.asarray(image.convert("RGB")), palette[indices])


@pytest.mark.parametrize("effort", ["high", "max"])
def test_alpha_survives_every_effort(effort: str) -> None:
    palette = np.array([[0, 0, 0], [200, 10, 10], [10, 200, 10], [10, 10, 200]], dtype=np.uint8)
    alpha = np.array([0, 128, 255, 255], dtype=np.uint8)
    indices = (np.arange(12 * 10).reshape(12, 10) % 4).astype(np.uint8)
    image, _ = decoded(encode_indexed_png(palette, indices, alpha=alpha, effort=effort))
    rgba = np.asarray(image.convert("RGBA"))
    assert np.array_equal(rgba, np.concatenate([palette, alpha[:, None]], axis=1)[indices])


@pytest.mark.parametrize("colors", [16, 64, 256])
def test_higher_efforts_make_a_photo_smaller_with_identical_pixels(colors: int) -> None:
    q = quantize(images.sample_array("china.jpg"), colors)
    sizes = {}
    for effort in EFFORTS:
        data = encode_indexed_png(q.palette, q.indices, effort=effort)
        assert np.array_equal(np.asarray(decoded(data)[0].convert("RGB")), q.to_array()), effort
        sizes[effort] = len(data)
    assert sizes["max"] < sizes["fast"] and sizes["high"] < sizes["fast"]


def test_pipeline_output_differs_only_in_bytes() -> None:
    data = images.sample_bytes("flower.jpg")
    fast = compress(data, CompressParams())
    best = compress(data, CompressParams(png_effort="max"))
    assert best.output_bytes < fast.output_bytes
    assert np.array_equal(np.asarray(decoded(best.data)[0].convert("RGB")),
                          np.asarray(decoded(fast.data)[0].convert("RGB")))
    assert best.psnr == fast.psnr


def test_max_keeps_a_shared_palette_entry_for_entry() -> None:
    shared = ((0, 0, 0), (255, 255, 255), (200, 40, 40), (40, 200, 40), (40, 40, 200), (90, 90, 90))
    result = compress(images.sample_bytes("china.jpg"), CompressParams(palette=shared, png_effort="max"))
    image, _ = decoded(result.data)
    assert [tuple(e) for e in np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)[: len(shared)]] == list(shared)
    assert len(image.getpalette()) == 3 * len(shared)


def test_effort_is_part_of_the_fingerprint_and_fast_is_the_old_one() -> None:
    assert CompressParams(png_effort="fast").fingerprint() == CompressParams().fingerprint()
    assert CompressParams(png_effort="max").fingerprint() != CompressParams().fingerprint()
    assert CompressParams(png_effort="HIGH").png_effort is PngEffort.HIGH


def test_bad_effort_names_the_argument() -> None:
    with pytest.raises(ParameterError, match="png_effort"):
        CompressParams(png_effort="zopfli")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ICSD_* from the developer's shell, and no stray .env: run in an empty folder."""
    for key in [k for k in os.environ if k.upper().startswith("ICSD_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("clean_env")
def test_setting_reaches_the_params(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICSD_PNG_EFFORT", "high")
    assert load_settings().params().png_effort is PngEffort.HIGH
    assert load_settings(png_effort="max").params().png_effort is PngEffort.MAX


@pytest.mark.usefixtures("clean_env")
def test_bad_setting_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICSD_PNG_EFFORT", "zopfli")
    with pytest.raises(SettingsError) as caught:
        load_settings().params()
    assert caught.value.message == "ICSD_PNG_EFFORT: unknown png_effort 'zopfli': use one of fast, high, max"


@pytest.mark.usefixtures("clean_env", "without_oxipng")
def test_max_without_the_extra_stops_at_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICSD_PNG_EFFORT", "max")
    with pytest.raises(SettingsError) as caught:
        load_settings().params()
    assert "ICSD_PNG_EFFORT=max needs oxipng: pip install 'icsd[png]'" in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.usefixtures("without_oxipng")
def test_max_without_the_extra_names_it_in_the_core() -> None:
    palette = np.zeros((2, 3), dtype=np.uint8)
    with pytest.raises(ModuleNotFoundError, match=r"icsd\[png\]"):
        encode_indexed_png(palette, np.zeros((2, 2), dtype=np.uint8), effort="max")
