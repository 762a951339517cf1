"""Benchmark images: a folder of user images, or camera-like frames made from scikit-learn's photos.

The shipped photos (china.jpg, flower.jpg, 427x640) are the only real photographs available
offline, so camera frames are made from them: enlarged crops with sensor-like noise. Every image
is then downsampled 5x with a box filter, as the pipeline does by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

__all__ = ["BenchImage", "CAMERA_SIZES", "QUANTIZER_SIZES", "load_images", "sample_images", "downsample"]

_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class BenchImage(NamedTuple):
    name: str
    pixels: np.ndarray  # RGB uint8, downsampled: what the quantizer sees
    decoded_bytes: int  # size of the decoded full-resolution image the pipeline started from


def load_images(folder: Path | None = None, *, factor: int = 5) -> list[BenchImage]:
    """Images from `folder` or the shipped samples, each downsampled `factor`x."""
    if folder is None:
        originals = sample_images()
    else:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in _SUFFIXES)
        if not paths:
            raise SystemExit(f"no images ({', '.join(sorted(_SUFFIXES))}) in {folder}")
        originals = []
        for p in paths:
            with Image.open(p) as im:
                originals.append((p.name, np.asarray(im.convert("RGB"))))
    return [BenchImage(name, downsample(arr, factor), arr.nbytes) for name, arr in originals]


def downsample(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter downsampling (Pillow `reduce`), the pipeline's default resampling."""
    if factor <= 1:
        return rgb
    return np.asarray(Image.fromarray(rgb).reduce(factor))


# Camera frame sizes (width, height), 4 to 15 MP, landscape and portrait: what drop folders receive.
CAMERA_SIZES = [
    (2448, 1632), (2592, 1944), (3000, 2000), (2000, 3000), (3264, 2448), (3456, 2304), (3648, 2736),
    (4000, 3000), (3000, 4000), (4032, 3024), (4096, 2730), (4240, 2832), (4320, 3240), (4608, 3072),
    (4752, 3168),
]
# The quantizer benchmark's default set: 8-15 MP frames, i.e. 0.32-0.6 MP after the 5x downsampling,
# the image sizes issue 5's targets are stated for.
QUANTIZER_SIZES = [(3264, 2448), (4000, 3000), (3000, 4000), (4608, 3072), (4752, 3168)]


def sample_images(sizes: list[tuple[int, int]] | None = None) -> list[tuple[str, np.ndarray]]:
    """Camera-like frames made from scikit-learn's two photos (the only real photos available offline).

    Each is the photo (alternating china / flower, a different crop each time) enlarged to a camera
    frame size with sensor-like noise, so it has as many distinct colours as a real photo does.
    """
    from sklearn.datasets import load_sample_image

    photos = {"china": load_sample_image("china.jpg"), "flower": load_sample_image("flower.jpg")}
    frames = []
    for index, (width, height) in enumerate(sizes or QUANTIZER_SIZES):
        name = ("china", "flower")[index % 2]
        photo = photos[name]
        top, left = (index * 17) % 60, (index * 29) % 90  # vary the crop so frames differ
        crop = photo[top : top + photo.shape[0] - 60, left : left + photo.shape[1] - 90]
        if height > width:  # portrait: a centred tall crop
            crop = crop[:, crop.shape[1] // 2 - crop.shape[0] // 3 : crop.shape[1] // 2 + crop.shape[0] // 3]
        source = Image.fromarray(np.ascontiguousarray(crop))
        enlarged = np.asarray(source.resize((width, height), Image.Resampling.BICUBIC))
        frames.append((f"{name}-{width}x{height}", _add_noise(enlarged, seed=index)))
    return frames


def _add_noise(rgb: np.ndarray, *, seed: int, amplitude: int = 6) -> np.ndarray:
    """Uniform integer noise in [-amplitude, amplitude], clipped; int16 keeps memory modest for 8 MP."""
    noise = np.random.default_rng(seed).integers(-amplitude, amplitude + 1, size=rgb.shape, dtype=np.int16)
    return np.clip(rgb.astype(np.int16) + noise, 0, 255).astype(np.uint8)
