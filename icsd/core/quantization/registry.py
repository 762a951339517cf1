"""Strategy name -> fit function: a weighted colour histogram in, a palette of at most K colours out.

Quantization is fit, then apply (libimagequant's model: histogram -> quantize -> remap). A fit function sees
a `Histogram` (validated, more than `k` distinct colours): one image's, or one merged from a dataset. It
returns a `Fit`: the uint8 palette and, when the histogram has pixels, each pixel's exact nearest palette
entry, which its last assignment step computed anyway. `apply.apply_palette` reuses those indices for the
exact mapping of the same image (as libimagequant's remap starts from each colour's likely palette index)
and recomputes them otherwise: for a dithered mapping, or a palette fitted to other images. A new strategy
is one function and one `register` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from icsd.core.errors import ParameterError
from icsd.core.params import Strategy
from icsd.core.quantization.histogram import Histogram
from icsd.core.quantization.kmeans import weighted_kmeans

__all__ = ["Fit", "FitFn", "lookup", "preload_strategy", "register"]


@dataclass(frozen=True, slots=True)
class Fit:
    """A fitted palette: (K' <= K, D) uint8 in the strategy's order (rows may repeat after rounding), and the
    (H, W) uint8 index of every pixel's exact nearest row, or None for a histogram without pixels."""

    palette: np.ndarray
    nearest: np.ndarray | None


# (histogram, k, seed) -> (palette, nearest indices or None); wrapped into a Fit by `lookup`.
StrategyFn = Callable[[Histogram, int, int], tuple[np.ndarray, np.ndarray | None]]
FitFn = Callable[[Histogram, int, int], Fit]

_REGISTRY: dict[Strategy, StrategyFn] = {}


def register(strategy: Strategy, fn: StrategyFn) -> None:
    """Make `fn` the fit of `strategy`."""
    _REGISTRY[strategy] = fn


def lookup(name: str | Strategy) -> FitFn:
    """The fit function for a strategy name or alias; ParameterError for size-only or unknown names."""
    strategy = Strategy.parse(name)
    fn = _REGISTRY.get(strategy)
    if fn is None:
        if strategy is Strategy.SIZE_ONLY:
            raise ParameterError(
                "strategy",
                "strategy 'size-only' does no colour clustering: it only resizes, so there is nothing to quantize",
            )
        raise ParameterError("strategy", f"strategy {strategy.value!r} has no quantizer")

    def fit(hist: Histogram, k: int, seed: int) -> Fit:
        return Fit(*fn(hist, k, seed))

    return fit


def preload_strategy(name: str | Strategy) -> None:
    """Import now what a strategy's fit imports on first use, so that timing a compression measures the work,
    not the first import: scikit-learn (1-2 s: `icsd compress` reported 2.6 s for a 60 ms sklearn fit), and
    SciPy's k-d tree (~1 s) when the compiled kernels are not built."""
    strategy = Strategy.parse(name)
    if strategy is Strategy.SIZE_ONLY:
        return
    if strategy in (Strategy.SKLEARN_KMEANS, Strategy.SKLEARN_MINIBATCH):
        from icsd.core.quantization import sklearn_backend  # noqa: F401
    from icsd.core.quantization import compiled

    if not compiled.AVAILABLE:
        from scipy.spatial import cKDTree  # noqa: F401


def _sklearn(name: str) -> StrategyFn:
    """Import scikit-learn on first use: it costs ~1 s of start-up in every worker that never needs it."""

    def run(hist: Histogram, k: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        from icsd.core.quantization import sklearn_backend

        return getattr(sklearn_backend, name)(hist, k, seed)

    return run


register(Strategy.KMEANS, weighted_kmeans)
register(Strategy.SKLEARN_KMEANS, _sklearn("sklearn_kmeans"))
register(Strategy.SKLEARN_MINIBATCH, _sklearn("sklearn_minibatch"))
