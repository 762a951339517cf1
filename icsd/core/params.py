"""Frozen, picklable parameters of one compression job: everything the pure core needs.

Validated once here (at construction), so the core's private kernels can assume valid input.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import TypeVar

from icsd.core.errors import ParameterError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "CompressParams",
    "Alpha",
    "ColorSpace",
    "Dither",
    "PngEffort",
    "Resample",
    "Strategy",
    "colors_from_bits",
    "parse_color",
    "parse_size",
]

_Choice = TypeVar("_Choice", bound=enum.StrEnum)

# Pillow's own decompression-bomb limit (Image.MAX_IMAGE_PIXELS), without importing Pillow here.
DEFAULT_MAX_PIXELS = 89_478_485


class Strategy(enum.StrEnum):
    """Colour-reduction strategies; the original system's abbreviations are accepted as aliases."""

    SIZE_ONLY = "size-only"
    KMEANS = "kmeans"
    SKLEARN_KMEANS = "sklearn-kmeans"
    SKLEARN_MINIBATCH = "sklearn-minibatch"

    @classmethod
    def parse(cls, name: str | Strategy) -> Strategy:
        """Accept a canonical name or an alias (SO, MKM, FKM, MBKM), case-insensitively."""
        if isinstance(name, Strategy):
            return name
        key = str(name).strip().lower()
        found = _STRATEGY_ALIASES.get(key)
        if found is None:
            allowed = ", ".join(f"{s.value} ({a})" for a, s in _ABBREVIATIONS.items())
            raise ParameterError("strategy", f"unknown strategy {name!r}: use one of {allowed}")
        return found


_ABBREVIATIONS = {
    "SO": Strategy.SIZE_ONLY,
    "MKM": Strategy.KMEANS,
    "FKM": Strategy.SKLEARN_KMEANS,
    "MBKM": Strategy.SKLEARN_MINIBATCH,
}
_STRATEGY_ALIASES = {s.value: s for s in Strategy} | {a.lower(): s for a, s in _ABBREVIATIONS.items()}


class Resample(enum.StrEnum):
    """How pixels are combined when downsampling."""

    BOX = "box"  # area average: the best quality per cost for integer-ish factors
    LANCZOS = "lanczos"  # sharper, slower
    STRIDE = "stride"  # the original system's pixel skipping (keeps the last row and column)

    @classmethod
    def parse(cls, name: str | Resample) -> Resample:
        """Accept a filter name case-insensitively."""
        return _choice(cls, name, "resample")


class Dither(enum.StrEnum):
    """How pixels are mapped to the palette: exactly, or dithered where an eye would see bands."""

    NONE = "none"  # nearest entry: the original system's output, and what ML features want
    DIFFUSE = "diffuse"  # edge-aware serpentine error diffusion: smoothest gradients
    ORDERED = "ordered"  # edge-aware Bayer mix: deterministic per pixel, compresses better

    @classmethod
    def parse(cls, name: str | Dither) -> Dither:
        """Accept a method name case-insensitively."""
        return _choice(cls, name, "dither")


class Alpha(enum.StrEnum):
    """What happens to transparency: kept in the palette (PLTE + tRNS), or composited onto a background."""

    KEEP = "keep"
    FLATTEN = "flatten"

    @classmethod
    def parse(cls, name: str | Alpha) -> Alpha:
        return _choice(cls, name, "alpha")


class ColorSpace(enum.StrEnum):
    """Where colours are clustered: sRGB values, or Oklab (perceptual; palette written back in sRGB)."""

    RGB = "rgb"
    OKLAB = "oklab"

    @classmethod
    def parse(cls, name: str | ColorSpace) -> ColorSpace:
        return _choice(cls, name, "color_space")


class PngEffort(enum.StrEnum):
    """How hard the palette PNG's deflate stream is searched: the same pixels, fewer bytes, more time."""

    FAST = "fast"  # libdeflate 6/7 (icsd.core.png): the default
    HIGH = "high"  # libdeflate 12: no extra dependency
    MAX = "max"  # oxipng level 2 over the fast file (the `png` extra: pyoxipng)

    @classmethod
    def parse(cls, name: str | PngEffort) -> PngEffort:
        return _choice(cls, name, "png_effort")


@dataclass(frozen=True, slots=True)
class CompressParams:
    """One job's parameters. Exactly one size rule applies: `size` > `max_size` > `scale`.

    - `scale`: downsampling factor per side (>= 1), the original system's rule (default 5).
    - `max_size`: fit within (width, height), keeping aspect; never upsamples.
    - `size`: exact (width, height) for ML datasets: scale to cover, then centre-crop.
    """

    strategy: Strategy = Strategy.KMEANS
    colors: int = 16
    grayscale: bool = False
    scale: float = 5.0
    max_size: tuple[int, int] | None = None
    size: tuple[int, int] | None = None
    resample: Resample = Resample.BOX
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    # A shared palette, (R, G, B) entries in order: every image is mapped to exactly it (no fit; `colors` and
    # the strategy's clustering unused) and every output carries it as its PLTE, entry for entry.
    palette: tuple[tuple[int, int, int], ...] | None = None
    dither: Dither = Dither.NONE
    dither_strength: float = 1.0
    alpha: Alpha = Alpha.KEEP
    background: tuple[int, int, int] = (255, 255, 255)  # RGB that ALPHA=flatten composites onto
    color_space: ColorSpace = ColorSpace.RGB
    png_effort: PngEffort = PngEffort.FAST

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", Strategy.parse(self.strategy))
        object.__setattr__(self, "resample", Resample.parse(self.resample))
        object.__setattr__(self, "dither", Dither.parse(self.dither))
        object.__setattr__(self, "alpha", Alpha.parse(self.alpha))
        object.__setattr__(self, "color_space", ColorSpace.parse(self.color_space))
        object.__setattr__(self, "png_effort", PngEffort.parse(self.png_effort))
        if len(self.background) != 3 or not all(0 <= int(c) <= 255 for c in self.background):
            raise ParameterError("background", f"background must be three values 0-255, got {self.background}")
        if not 0.0 <= self.dither_strength <= 1.0:  # also refuses NaN
            raise ParameterError(
                "dither_strength", f"dither_strength must be between 0 and 1, got {self.dither_strength}"
            )
        if not 2 <= self.colors <= 256:
            raise ParameterError("colors", f"colors must be between 2 and 256, got {self.colors}")
        if not (self.scale >= 1 and math.isfinite(self.scale)):  # inf would make every image 1x1
            raise ParameterError("scale", f"scale must be a finite downsampling factor >= 1, got {self.scale}")
        if self.resample is Resample.STRIDE and self.scale != int(self.scale):
            raise ParameterError("resample", f"resample 'stride' needs a whole-number scale, got {self.scale}")
        for name in ("max_size", "size"):
            value = getattr(self, name)
            if value is not None and (len(value) != 2 or min(value) < 1):
                raise ParameterError(name, f"{name} must be two positive integers WIDTHxHEIGHT, got {value}")
        if self.palette is not None:
            self._check_palette()
        if self.max_pixels < 1:
            raise ParameterError("max_pixels", f"max_pixels must be positive, got {self.max_pixels}")
        if self.size is not None and self.size[0] * self.size[1] > self.max_pixels:
            # `size` is the only rule that can upsample: uncapped, one typo allocates tens of GB.
            raise ParameterError("size", f"size {self.size} has more pixels than max_pixels ({self.max_pixels})")


    def _check_palette(self) -> None:
        palette = tuple(tuple(int(v) for v in entry) for entry in self.palette or ())
        object.__setattr__(self, "palette", palette)
        if not 1 <= len(palette) <= 256:
            raise ParameterError("palette", f"a palette has 1 to 256 colours, this one has {len(palette)}")
        if any(len(entry) != 3 or not all(0 <= v <= 255 for v in entry) for entry in palette):
            raise ParameterError("palette", "palette entries are three values 0-255 (R, G, B)")
        if self.strategy is Strategy.SIZE_ONLY:
            raise ParameterError("palette", "strategy 'size-only' keeps every colour: it cannot use a palette")
        if self.grayscale and any(not r == g == b for r, g, b in palette):
            raise ParameterError("palette", "grayscale images need a palette of greys (R = G = B in every entry)")

    def fingerprint(self) -> str:
        """A short digest of the fields: outputs made with equal fingerprints used equal settings (the journal
        records it per output, so changed settings remake outputs). Fields at their default are left out, so a
        field added later (defaulting to the old behaviour) leaves every recorded fingerprint valid."""
        return _fingerprint(self)


@functools.lru_cache(maxsize=8)
def _fingerprint(params: CompressParams) -> str:
    """CompressParams.fingerprint, once per params (the daemon records it with every output)."""
    defaults = dataclasses.asdict(CompressParams())
    fields = {name: str(value) if not isinstance(value, int | float | tuple | type(None)) else value
              for name, value in dataclasses.asdict(params).items() if value != defaults[name]}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return "sha1:" + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def parse_size(text: str, *, setting: str) -> tuple[int, int]:
    """Parse 'WIDTHxHEIGHT' (e.g. '224x224'); the error names `setting`."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts):
        return int(parts[0]), int(parts[1])
    raise ParameterError(
        setting, f"{setting} must look like WIDTHxHEIGHT with positive integers (e.g. 224x224), got {text!r}"
    )


def colors_from_bits(bits: int, *, setting: str = "bits") -> int:
    """K = 2**bits for bits in 1..8."""
    if not 1 <= bits <= 8:
        raise ParameterError(setting, f"{setting} must be between 1 and 8, got {bits}")
    return 2**bits


def parse_color(text: str, *, setting: str) -> tuple[int, int, int]:
    """Parse '#rrggbb' (the '#' optional) into (r, g, b); the error names `setting`."""
    digits = text.strip().removeprefix("#")
    if len(digits) == 6 and all(c in "0123456789abcdefABCDEF" for c in digits):
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    raise ParameterError(setting, f"{setting} must be a colour like #rrggbb (e.g. #ffffff for white), got {text!r}")


def _choice(cls: type[_Choice], name: object, argument: str) -> _Choice:
    """The member of a string enum named `name` (case-insensitively), or a ParameterError listing them."""
    try:
        return cls(str(name).strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in cls)
        raise ParameterError(argument, f"unknown {argument} {name!r}: use one of {allowed}") from None
