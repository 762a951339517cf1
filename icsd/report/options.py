"""What `icsd compare` runs: the variants (strategy x K x dithering) parsed from its list flags.

Each parser raises `argparse.ArgumentTypeError` with a one-line message, so a bad value fails like every
other flag (usage line, exit 64). Dithering options are a table: when the core's CompressParams learns a new
apply option, adding its name and its CompressParams fields to `DITHERS` is the whole change.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from icsd.core import CompressParams, ParameterError, Strategy

__all__ = ["DEFAULT_COLORS", "DITHERS", "SIZE_FLAGS", "Variant", "add_arguments", "parse_colors", "parse_dithers",
           "parse_strategies", "plan", "supported_dithers"]

DEFAULT_COLORS = [8, 16, 32, 64]
# The settings `icsd compare` shares with `batch` (as flags, ICSD_ variables and .env lines).
SIZE_FLAGS = ("grayscale", "scale", "resample", "max_size", "size", "seed", "max_pixels", "workers")
# name -> the CompressParams fields it sets: exact nearest colour, or the core's two dithering methods.
DITHERS: dict[str, dict[str, Any]] = {
    "none": {},
    "diffuse": {"dither": "diffuse"},
    "ordered": {"dither": "ordered"},
}
_T = TypeVar("_T")
_ABBREVIATIONS = {Strategy.SIZE_ONLY: "SO", Strategy.KMEANS: "MKM", Strategy.SKLEARN_KMEANS: "FKM",
                  Strategy.SKLEARN_MINIBATCH: "MBKM"}


@dataclass(frozen=True, slots=True)
class Variant:
    """One column of the page: a strategy, with K and a dithering option unless it is size-only."""

    strategy: Strategy
    colors: int | None = None  # None for size-only, which keeps every colour
    dither: str = "none"

    @property
    def label(self) -> str:
        """'MKM K16' (and the dithering when it is not none); 'SO' for size-only."""
        if self.colors is None:
            return _ABBREVIATIONS[self.strategy]
        return f"{_ABBREVIATIONS[self.strategy]} K{self.colors}{self._dither_suffix}"

    @property
    def series(self) -> str:
        """The plot line this variant belongs to: strategy and dithering, across K."""
        return f"{_ABBREVIATIONS[self.strategy]}{self._dither_suffix}"

    @property
    def _dither_suffix(self) -> str:
        return "" if self.dither == "none" or self.colors is None else f" {self.dither}"

    def params(self, base: CompressParams) -> CompressParams:
        """`base` (size rule, resample, grey, seed) with this variant's strategy, K and dithering."""
        return dataclasses.replace(base, strategy=self.strategy, colors=self.colors or base.colors,
                                   **DITHERS[self.dither])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `icsd compare` that are its own (the size settings come from Settings, as for batch)."""
    parser.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR", help="images, or folders of images")
    parser.add_argument("--colors", dest="color_list", type=parse_colors, default=DEFAULT_COLORS,
                        metavar="K,K,...", help="colour counts to try, 2-256 [default: 8,16,32,64]")
    parser.add_argument("--strategies", dest="strategy_list", type=parse_strategies, default=list(Strategy),
                        metavar="all|S,S,...", help="strategies to try: all, or names/aliases such as "
                        "SO,MKM,FKM,MBKM [default: all]")
    parser.add_argument("--dither", dest="dither_list", type=parse_dithers, default=["none"],
                        metavar="D,...", help=f"dithering options to try: {', '.join(supported_dithers())} "
                        "[default: none]")
    parser.add_argument("--sample", type=_positive, metavar="N",
                        help="use N of the images, spread evenly over them in name order [default: all]")
    parser.add_argument("-o", "--output", default="compare.html", help="the HTML page [default: compare.html]")
    parser.add_argument("--sheet", help="also write a contact-sheet PNG of the crops here")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing page or sheet even if icsd compare did not write it")


def plan(strategies: list[Strategy], colors: list[int], dithers: list[str]) -> list[Variant]:
    """Every combination, size-only once (K and dithering do not change it), in the order given."""
    variants: list[Variant] = []
    for strategy in strategies:
        if strategy is Strategy.SIZE_ONLY:
            variants.append(Variant(strategy))
            continue
        variants += [Variant(strategy, k, dither) for dither in dithers for k in colors]
    return variants


def parse_colors(text: str) -> list[int]:
    """'8,16,32' -> [8, 16, 32]; each 2-256."""
    values = []
    for item in _items(text, "colors"):
        if not item.isdigit() or not 2 <= int(item) <= 256:
            raise argparse.ArgumentTypeError(f"colors must be whole numbers between 2 and 256, got {item!r}")
        values.append(int(item))
    return _unique(values)


def parse_strategies(text: str) -> list[Strategy]:
    """'all' or a list of names or aliases ('SO,MKM,FKM,MBKM', 'kmeans,sklearn-minibatch')."""
    if text.strip().lower() == "all":
        return list(Strategy)
    try:
        return _unique([Strategy.parse(item) for item in _items(text, "strategies")])
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def parse_dithers(text: str) -> list[str]:
    """A list of the dithering options in DITHERS that this icsd's CompressParams can express."""
    available = supported_dithers()
    items = [item.lower() for item in _items(text, "dither")]
    for item in items:
        if item not in available:
            raise argparse.ArgumentTypeError(f"unknown dither {item!r}: use {', '.join(available)}")
    return _unique(items)


def supported_dithers() -> list[str]:
    """DITHERS' names whose CompressParams fields exist (an entry ahead of the core is not offered)."""
    known = {f.name for f in dataclasses.fields(CompressParams)}
    return [name for name, fields in DITHERS.items() if set(fields) <= known]


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def _items(text: str, flag: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"--{flag} needs a comma-separated list, got {text!r}")
    return items


def _unique(values: list[_T]) -> list[_T]:
    return list(dict.fromkeys(values))
