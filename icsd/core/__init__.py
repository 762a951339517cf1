"""The pure core: pixels or encoded bytes in, pixels or PNG bytes and stats out. No files, clock or settings.

Nothing here imports the shell (`icsd.daemon`, `icsd.settings`, `icsd.cli`), watchdog, pydantic, sqlite3 or
Dask; `tests/test_layers.py` proves it. The shell uses the core only through the names below, which load
lazily: the daemon's coordinator takes `CompressParams`, `Result` and `compress_job` without paying for
NumPy, Pillow or the quantizers, which only its workers import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Alpha",
    "BinnedHistogram",
    "ColorSpace",
    "CompressParams",
    "CoreError",
    "DecodeError",
    "Dither",
    "ImageError",
    "ImageTooLargeError",
    "HistogramOutcome",
    "JobOutcome",
    "Palette",
    "ParameterError",
    "PngEffort",
    "Quantized",
    "Resample",
    "Result",
    "Strategy",
    "TruncatedImageError",
    "apply_palette",
    "color_histogram",
    "colors_from_bits",
    "compress",
    "compress_job",
    "fit_dataset_palette",
    "fit_palette",
    "histogram_job",
    "merge_histograms",
    "parse_color",
    "parse_size",
    "pixels_histogram",
    "png_palette",
    "preload_strategy",
    "quantize",
]

if TYPE_CHECKING:
    from icsd.core.errors import (
        CoreError,
        DecodeError,
        ImageError,
        ImageTooLargeError,
        ParameterError,
        TruncatedImageError,
    )
    from icsd.core.jobs import JobOutcome, Result, compress_job, png_palette
    from icsd.core.learning import (
        BinnedHistogram,
        HistogramOutcome,
        fit_dataset_palette,
        histogram_job,
        pixels_histogram,
    )
    from icsd.core.palette import Palette
    from icsd.core.params import (
        DEFAULT_MAX_PIXELS,
        Alpha,
        ColorSpace,
        CompressParams,
        Dither,
        PngEffort,
        Resample,
        Strategy,
        colors_from_bits,
        parse_color,
        parse_size,
    )
    from icsd.core.pipeline import compress
    from icsd.core.quantization import (
        Quantized,
        apply_palette,
        color_histogram,
        fit_palette,
        merge_histograms,
        quantize,
    )
    from icsd.core.quantization.registry import preload_strategy

_HOME = {
    **dict.fromkeys(
        ["CoreError", "DecodeError", "ImageError", "ImageTooLargeError", "ParameterError", "TruncatedImageError"],
        "icsd.core.errors",
    ),
    **dict.fromkeys(["JobOutcome", "Result", "compress_job", "png_palette"], "icsd.core.jobs"),
    **dict.fromkeys(
        ["DEFAULT_MAX_PIXELS", "Alpha", "ColorSpace", "CompressParams", "Dither", "PngEffort", "Resample", "Strategy",
         "colors_from_bits", "parse_color", "parse_size"],
        "icsd.core.params",
    ),
    "compress": "icsd.core.pipeline",
    "preload_strategy": "icsd.core.quantization.registry",
    **dict.fromkeys(
        ["BinnedHistogram", "HistogramOutcome", "fit_dataset_palette", "histogram_job", "pixels_histogram"],
        "icsd.core.learning",
    ),
    "Palette": "icsd.core.palette",
    **dict.fromkeys(
        ["Quantized", "apply_palette", "color_histogram", "fit_palette", "merge_histograms", "quantize"],
        "icsd.core.quantization",
    ),
}

def __getattr__(name: str) -> Any:
    """Load a public name's module on first use, and keep the name (not the module) bound here."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'icsd.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
