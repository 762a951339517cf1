"""Real photographs for the benchmarks, beside the synthetic camera set of bench/images.py.

- scikit-image's `data` photos (astronaut, coffee, chelsea, rocket, hubble, retina, IHC; 0.3-1 MP, used at
  their size: already the size of a downsampled camera frame) and scikit-learn's china.jpg and flower.jpg;
- Debian's gnome-backgrounds wallpapers (/usr/share/backgrounds/gnome, `apt-get install gnome-backgrounds`;
  renders and illustrations with large smooth gradients, 4096 px), downsampled 5x as the pipeline does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["WALLPAPERS", "photographs"]

WALLPAPERS = Path("/usr/share/backgrounds/gnome")
_SKIMAGE = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "immunohistochemistry")


def photographs(*, wallpapers: int = 0) -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8 pixels): the photos, then up to `wallpapers` wallpapers (skipped when not installed)."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    images = [(name, np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])) for name in _SKIMAGE]
    images += [(name, load_sample_image(name)) for name in ("china.jpg", "flower.jpg")]
    if wallpapers and WALLPAPERS.is_dir():
        for path in sorted(WALLPAPERS.glob("*.webp"))[: wallpapers * 2 : 2]:  # one of each light/dark pair
            with Image.open(path) as im:
                if min(im.size) >= 500:
                    images.append((path.name, np.asarray(im.convert("RGB").reduce(5))))
    return images
