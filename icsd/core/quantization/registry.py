"""Strategy name -> function that turns an image's colour histogram into a palette and an index image.

A strategy sees the image's lazy `Histogram` (already validated, more than `k` distinct colours): the
binned histogram, and the exact distinct colours with their counts when it asks for them. It returns a
uint8 palette and, for every pixel, the index of its exact nearest palette entry: `Histogram.index` does
that for any palette; `Histogram.expand` maps per-colour labels (from `nearest.round_and_assign`) back to
the pixels. A new strategy is one function and one `register` call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from icsd.core.errors import ParameterError
from icsd.core.params import Strategy
from icsd.core.quantization.histogram import Histogram
from icsd.core.quantization.kmeans import weighted_kmeans

__all__ = ["StrategyFn", "register", "lookup"]

# (histogram, k, seed) -> (palette (k', D) uint8 with k' <= k, indices (H, W) uint8 into the palette).
StrategyFn = Callable[[Histogram, int, int], tuple[np.ndarray, np.ndarray]]

_REGISTRY: dict[Strategy, StrategyFn] = {}


def register(strategy: Strategy, fn: StrategyFn) -> None:
    """Make `fn` the implementation of `strategy`."""
    _REGISTRY[strategy] = fn


def lookup(name: str | Strategy) -> StrategyFn:
    """The function for a strategy name or alias; ParameterError for size-only or unknown names."""
    strategy = Strategy.parse(name)
    fn = _REGISTRY.get(strategy)
    if fn is None:
        if strategy is Strategy.SIZE_ONLY:
            raise ParameterError(
                "strategy",
                "strategy 'size-only' does no colour clustering: it only resizes, so there is nothing to quantize"
            )
        raise ParameterError("strategy", f"strategy {strategy.value!r} has no quantizer")
    return fn


def _sklearn(name: str) -> StrategyFn:
    """Import scikit-learn on first use: it costs ~1 s of start-up in every worker that never needs it."""

    def run(hist: Histogram, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        from icsd.core.quantization import sklearn_backend

        return getattr(sklearn_backend, name)(hist, k, seed)

    return run


register(Strategy.KMEANS, weighted_kmeans)
register(Strategy.SKLEARN_KMEANS, _sklearn("sklearn_kmeans"))
register(Strategy.SKLEARN_MINIBATCH, _sklearn("sklearn_minibatch"))
