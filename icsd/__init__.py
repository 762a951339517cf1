"""icsd — Image Compression System daemon, and the library behind it.

    import icsd
    result = icsd.compress(open("photo.jpg", "rb").read(), icsd.CompressParams(colors=16))
    quantized = icsd.quantize(pixels, 16)                 # (H, W, 3) uint8 -> palette + indices
    palette = icsd.fit_palette(icsd.merge_histograms([icsd.color_histogram(p) for p in images]), 16)
    shared = icsd.apply_palette(pixels, palette)          # the same palette, entry for entry, for every image
    learned = icsd.learn_palette(paths_or_arrays, 16)     # one Palette for a dataset (decode + downsample each)
    learned.encode(".gpl"); icsd.quantize(pixels, palette=learned.array())

The names here are the pure core's (`icsd.core`), but `learn_palette` (it reads files and runs a process pool:
`icsd.daemon.learn`). Importing them never pulls in watchdog, pydantic-settings or SQLite, and no module at
the root shares a name with one of them, so they stay functions whatever was imported first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "CompressParams",
    "Palette",
    "Quantized",
    "Result",
    "Strategy",
    "apply_palette",
    "color_histogram",
    "compress",
    "fit_palette",
    "learn_palette",
    "merge_histograms",
    "quantize",
]

if TYPE_CHECKING:
    from icsd.core import (
        CompressParams,
        Palette,
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
    from icsd.daemon.learn import learn_palette


def __getattr__(name: str) -> Any:
    """Lazily, so `icsd --help` and the daemon's coordinator do not load NumPy and Pillow."""
    if name not in __all__:
        raise AttributeError(f"module 'icsd' has no attribute {name!r}")
    if name == "learn_palette":  # reads files and runs a process pool: the shell's, loaded on first use
        from icsd.daemon.learn import learn_palette as value
    else:
        import icsd.core

        value = getattr(icsd.core, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
