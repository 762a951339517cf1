"""A dataset's colour histogram in bounded memory: 6-bit bins with exact integer counts and colour sums.

One image's exact histogram can hold millions of distinct colours, and a dataset's union grows with every
image; this one cannot. RGB colours are grouped into cubes of 4 levels per channel (2**18 possible bins),
each keeping its pixel count and the exact sum of its pixels' colours, so merging is exact integer
addition (in any order, over any number of images: the same result) and the bin means are the exact means
of the pixels they hold. Only occupied bins are stored, 36 bytes each: at most 9.4 MB, typically a few
hundred KB for a photo dataset. Grey images keep all 256 levels exactly.

Our k-means fits these bins as it fits one image's own 6-bit bins (below K = 64 it fits nothing finer for
a single image either): `histogram()` gives a `Histogram` whose bins carry the exact sums and whose
"colours" are the rounded bin means, so every registered strategy can fit it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from icsd.core.quantization import compiled
from icsd.core.quantization.bins import Bins, _unpack
from icsd.core.quantization.histogram import BIN_BITS, Histogram

__all__ = ["BinnedHistogram"]


@dataclass(frozen=True, slots=True, eq=False)
class BinnedHistogram:
    """Occupied bins, keys ascending: `counts[i]` pixels with colour sum `sums[i]` fell in bin `keys[i]`.

    RGB: key = (r >> 2) << 12 | (g >> 2) << 6 | (b >> 2); grey (channels 1): key = the level itself.
    Picklable (plain arrays): workers compute one per image, the parent merges them.
    """

    channels: int
    keys: np.ndarray  # (M,) int32
    counts: np.ndarray  # (M,) int64
    sums: np.ndarray  # (M, channels) int64

    @classmethod
    def of_pixels(cls, pixels: np.ndarray) -> BinnedHistogram:
        """The binned histogram of a valid (H, W) grey or (H, W, 3) RGB uint8 image."""
        if pixels.ndim == 2:
            counts = np.bincount(pixels.ravel(), minlength=256)
            levels = np.flatnonzero(counts)
            return cls(1, levels.astype(np.int32), counts[levels].astype(np.int64), (levels * counts[levels])[:, None])
        moments = compiled.pixel_bin_moments(pixels, BIN_BITS) if compiled.AVAILABLE else None
        if moments is None:
            moments = _numpy_bin_moments(pixels)
        keys, counts, sums = moments
        return cls(3, keys.astype(np.int32), counts.astype(np.int64), sums.astype(np.int64))

    @classmethod
    def merge(cls, histograms: Sequence[BinnedHistogram]) -> BinnedHistogram:
        """One histogram counting every pixel of `histograms` (all grey or all RGB): exact integer sums."""
        if not histograms:
            raise ValueError("merge needs at least one histogram")
        channels = {h.channels for h in histograms}
        if len(channels) != 1:
            raise ValueError("cannot merge grey and RGB histograms: learn the palette in one colour mode")
        if len(histograms) == 1:
            return histograms[0]
        keys = np.concatenate([h.keys for h in histograms])
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        counts = np.add.reduceat(np.concatenate([h.counts for h in histograms])[order], starts)
        sums = np.add.reduceat(np.concatenate([h.sums for h in histograms])[order], starts, axis=0)
        return cls(channels.pop(), keys[starts], counts, sums)

    @property
    def total(self) -> int:
        """Pixels counted."""
        return int(self.counts.sum())

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.counts.nbytes + self.sums.nbytes

    def equals(self, other: BinnedHistogram) -> bool:
        return (self.channels == other.channels and np.array_equal(self.keys, other.keys)
                and np.array_equal(self.counts, other.counts) and np.array_equal(self.sums, other.sums))

    def histogram(self) -> Histogram:
        """A pixel-less `Histogram` to fit: grey levels exactly; RGB bins as their rounded means ("colours",
        sorted) carrying the exact counts and sums as their 6-bit bins."""
        if self.channels == 1:
            return Histogram.from_counts(self.keys.astype(np.uint8)[:, None], self.counts)
        means = self.sums / self.counts[:, None]
        colors = np.clip(np.rint(means), 0, 255).astype(np.uint8)  # inside their bin: still distinct
        order = np.lexsort(colors.T[::-1])
        colors, counts, sums = colors[order], self.counts[order], self.sums[order].astype(np.float64)
        weights = counts.astype(np.float64)
        coords = _unpack(self.keys[order].astype(np.intp), BIN_BITS, 3)
        bins = Bins(sums / weights[:, None], weights, sums, coords, np.arange(colors.shape[0]))
        return Histogram.from_bins(colors, counts, bins)


def _numpy_bin_moments(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the compiled bin_pixels gives, in NumPy: a dense bincount over the 2**18 bin keys."""
    flat = pixels.reshape(-1, 3)
    shift = 8 - BIN_BITS
    key = (flat[:, 0].astype(np.intp) >> shift) << (2 * BIN_BITS)
    key |= (flat[:, 1].astype(np.intp) >> shift) << BIN_BITS
    key |= flat[:, 2].astype(np.intp) >> shift
    size = 1 << (3 * BIN_BITS)
    counts = np.bincount(key, minlength=size)
    keys = np.flatnonzero(counts)
    sums = np.empty((keys.size, 3), dtype=np.int64)
    for channel in range(3):  # float64 weights: exact, an image's channel sum is far below 2**53
        sums[:, channel] = np.rint(np.bincount(key, weights=flat[:, channel], minlength=size)[keys])
    return keys, counts[keys].astype(np.int64), sums
