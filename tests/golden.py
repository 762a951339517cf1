"""A fixed corpus and the settings grid whose output digests must never change by accident.

`tests/data/golden_digests.json` holds the SHA-256 of every output, recorded once from the code before a
restructure; `test_golden.py` recompresses the corpus and compares. Regenerate it only for an intended
output change (`python -m tests.golden > tests/data/golden_digests.json`), and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from tests.images import encode, gradient, mode_sample, sample_array

__all__ = ["corpus", "digest", "digests", "grid"]


def corpus() -> dict[str, bytes]:
    """Encoded inputs: two real photos (cropped for speed), a gradient, and small images in several modes."""
    china = sample_array("china.jpg")[100:340, 200:520]
    flower = sample_array("flower.jpg")[50:290, 300:620]
    images = {
        "china.jpg": encode(china, "JPEG", quality=90),
        "flower.png": encode(flower, "PNG"),
        "gradient.png": encode(gradient(200, 150), "PNG"),
        "few-colours.png": encode(np.repeat(np.arange(6, dtype=np.uint8)[:, None] * 40, 60, axis=1), "PNG"),
    }
    for mode in ("L", "P", "RGBA", "LA", "CMYK"):
        fmt = "TIFF" if mode == "CMYK" else "PNG"
        images[f"mode-{mode}.{fmt.lower()}"] = encode(mode_sample(mode, (90, 70)), fmt)
    return images


def grid() -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, CompressParams keywords) for every strategy, colour and grey, and the other size rules."""
    for strategy in ("size-only", "kmeans", "sklearn-kmeans", "sklearn-minibatch"):
        for grayscale in (False, True):
            for colors in (2, 16, 256):
                yield f"{strategy}-{'grey' if grayscale else 'rgb'}-{colors}", {
                    "strategy": strategy, "grayscale": grayscale, "colors": colors, "scale": 2}
    yield "kmeans-lanczos", {"resample": "lanczos", "scale": 3}
    yield "kmeans-stride", {"resample": "stride", "scale": 3}
    yield "kmeans-max-size", {"max_size": (50, 50)}
    yield "kmeans-size", {"size": (64, 48), "colors": 8}


def digests(compress: Any, params_type: Any) -> dict[str, str]:
    """SHA-256 of each output, keyed 'settings/image', from the given compress function and params class."""
    images = corpus()
    out = {}
    for label, kwargs in grid():
        params = params_type(**kwargs)
        for name, data in images.items():
            out[f"{label}/{name}"] = digest(compress, data, params)
    return out


def digest(compress: Any, data: bytes, params: Any) -> str:
    """SHA-256 of one output."""
    return hashlib.sha256(compress(data, params).data).hexdigest()


if __name__ == "__main__":
    from icsd import CompressParams, compress

    print(json.dumps(digests(compress, CompressParams), indent=1, sort_keys=True))
