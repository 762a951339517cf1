"""icsd — Image Compression System daemon, and the library behind it.

    import icsd
    result = icsd.compress(open("photo.jpg", "rb").read(), icsd.CompressParams(colors=16))
    quantized = icsd.quantize(pixels, 16)                 # (H, W, 3) uint8 -> palette + indices
    palette = icsd.fit_palette(icsd.merge_histograms([icsd.color_histogram(p) for p in images]), 16)
    shared = icsd.apply_palette(pixels, palette)          # the same palette, entry for entry, for every image

The names here are the pure core's (`icsd.core`): importing them never pulls in watchdog, pydantic-settings
or SQLite, and no module at the root shares a name with one of them, so they stay functions whatever was
imported first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "CompressParams",
    "Quantized",
    "Result",
    "Strategy",
    "apply_palette",
    "color_histogram",
    "compress",
    "fit_palette",
    "merge_histograms",
    "quantize",
]

if TYPE_CHECKING:
    from icsd.core import (
        CompressParams,
        Quantized,
        Result,
        Strategy,
        apply_palette,
        color_histogram,
        compress,
        fit_palette,
        merge_histograms,
        quantize,
    )


def __getattr__(name: str) -> Any:
    """Lazily, so `icsd --help` and the daemon's coordinator do not load NumPy and Pillow."""
    if name not in __all__:
        raise AttributeError(f"module 'icsd' has no attribute {name!r}")
    import icsd.core

    value = getattr(icsd.core, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
