"""Learning one palette from a dataset: what a worker does per image, and the fit the parent does once.

A worker takes an image's bytes and the job parameters, runs the pipeline's own decode and downsample (so
the palette is learned from the pixels that will be quantized) and returns the image's binned histogram
(`BinnedHistogram`: small, picklable, exactly mergeable). The parent merges them as they come and fits K
colours to the merged histogram with the configured strategy; integer sums make the result the same
whatever the number of workers or the order images finish in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from icsd.core.errors import CoreError, ImageError, ParameterError
from icsd.core.palette import Palette
from icsd.core.params import CompressParams, Strategy
from icsd.core.quantization import fit_palette
from icsd.core.quantization.dataset import BinnedHistogram

__all__ = ["BinnedHistogram", "HistogramOutcome", "fit_dataset_palette", "histogram_job", "pixels_histogram"]


@dataclass(frozen=True, slots=True)
class HistogramOutcome:
    """What a worker hands back for one image: its histogram, or a one-line reason it has none."""

    histogram: BinnedHistogram | None
    error: str | None


def histogram_job(data: bytes, params: CompressParams) -> HistogramOutcome:
    """Decode and downsample `data` as `compress` would, and bin its colours; never raises for a bad image."""
    from icsd.core.pipeline import decode_downsampled, palette_pixels  # the image stack: loaded where jobs run

    try:
        _decoded, small = decode_downsampled(data, params)
        return HistogramOutcome(pixels_histogram(palette_pixels(small, params)), None)
    except (ImageError, CoreError) as exc:
        return HistogramOutcome(None, exc.message)
    except MemoryError:
        return HistogramOutcome(None, "out of memory while decoding")


def pixels_histogram(pixels: np.ndarray) -> BinnedHistogram:
    """The binned histogram of (H, W) grey or (H, W, 3) RGB uint8 pixels, taken as they are."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or not (
        pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)
    ) or pixels.size == 0:
        shape = getattr(pixels, "shape", type(pixels).__name__)
        raise ParameterError("images", f"an image array must be non-empty (H, W) or (H, W, 3) uint8, got {shape}")
    return BinnedHistogram.of_pixels(pixels)


def fit_dataset_palette(
    histogram: BinnedHistogram, colors: int, strategy: str | Strategy = "kmeans", seed: int = 0, *, name: str = ""
) -> Palette:
    """K <= `colors` entries (sorted) fitted to a dataset's merged histogram; grey entries for a grey one."""
    if Strategy.parse(strategy) is Strategy.SIZE_ONLY:
        raise ParameterError("strategy", "strategy 'size-only' does no colour clustering: it cannot learn a palette")
    fitted = fit_palette(histogram.histogram(), colors, strategy, seed)
    rows = fitted[:, None].repeat(3, axis=1) if fitted.ndim == 1 else fitted
    return Palette(tuple(tuple(int(v) for v in row) for row in rows), name)  # type: ignore[misc]
