"""Strategy name -> function that turns a weighted colour histogram into a palette and labels.

A strategy sees only the distinct colours and their counts (already validated, more than `k` of them)
and returns a uint8 palette plus, for every distinct colour, the index of its exact nearest palette
entry (`nearest.round_and_assign` does both for float centres). Mapping back to pixels is shared, so a
new strategy is one function and one `register` call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from icsd.errors import SettingsError
from icsd.params import Strategy
from icsd.quantize.kmeans import weighted_kmeans

__all__ = ["StrategyFn", "register", "lookup"]

# (colors (U, D) uint8, counts (U,) int64, k, seed) -> (palette (k', D) uint8 with k' <= k, labels (U,) int).
StrategyFn = Callable[[np.ndarray, np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]

_REGISTRY: dict[Strategy, StrategyFn] = {}


def register(strategy: Strategy, fn: StrategyFn) -> None:
    """Make `fn` the implementation of `strategy`."""
    _REGISTRY[strategy] = fn


def lookup(name: str | Strategy) -> StrategyFn:
    """The function for a strategy name or alias; SettingsError for size-only or unknown names."""
    strategy = Strategy.parse(name)
    fn = _REGISTRY.get(strategy)
    if fn is None:
        if strategy is Strategy.SIZE_ONLY:
            raise SettingsError(
                "strategy 'size-only' does no colour clustering: it only resizes, so there is nothing to quantize"
            )
        raise SettingsError(f"strategy {strategy.value!r} has no quantizer")
    return fn


def _sklearn(name: str) -> StrategyFn:
    """Import scikit-learn on first use: it costs ~1 s of start-up in every worker that never needs it."""

    def run(colors: np.ndarray, counts: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        from icsd.quantize import sklearn_backend

        return getattr(sklearn_backend, name)(colors, counts, k, seed)

    return run


register(Strategy.KMEANS, weighted_kmeans)
register(Strategy.SKLEARN_KMEANS, _sklearn("sklearn_kmeans"))
register(Strategy.SKLEARN_MINIBATCH, _sklearn("sklearn_minibatch"))
