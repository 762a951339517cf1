"""Daemon settings: environment variables (prefix `ICSD_`), a `.env` file, and CLI overrides.

Longer than ~400 lines on purpose: one field per setting with its help text, the only place they are declared.

Precedence, highest first: command-line flag > process environment > `.env` in the working
directory > default. Alternative settings (COLORS | BITS; SCALE | MAX_SIZE | SIZE) are one choice
each: the highest source that sets any of them decides it alone, and two of them in one source
contradict each other. Everything is validated once, here, and turned into the frozen
`CompressParams` the core needs; errors name the setting and the allowed values.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from icsd.core import (
    DEFAULT_MAX_PIXELS,
    Alpha,
    ColorSpace,
    CompressParams,
    Dither,
    Palette,
    ParameterError,
    PngEffort,
    Resample,
    Strategy,
    colors_from_bits,
    parse_color,
    parse_size,
)
from icsd.daemon.logs import LEVELS
from icsd.errors import SettingsError

__all__ = ["ALTERNATIVES", "ENV_PREFIX", "Settings", "as_typed", "load_settings", "unknown_env_warnings"]

ENV_PREFIX = "ICSD_"
DEFAULT_COLORS = 16
# Settings that are one choice between alternatives: one colour count, one size rule.
ALTERNATIVES: tuple[tuple[str, ...], ...] = (("colors", "bits"), ("scale", "max_size", "size"))


class Settings(BaseSettings):
    """Every setting of `icsd run` / `icsd batch`; each is also a CLI flag with the same words."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        validate_default=False,
    )

    # folders
    input_dir: Path = Field(Path("Uncompressed"), description="drop folder watched for images (recursive)")
    output_dir: Path = Field(Path("Compressed"), description="where compressed PNGs are written (paths mirrored)")
    failed_dir: Path | None = Field(None, description="where failed originals go [default: OUTPUT_DIR/.failed]")
    state_dir: Path | None = Field(None, description="journal folder [default: OUTPUT_DIR/.icsd]")
    on_success: Literal["keep", "delete", "archive"] = Field(
        "keep", description="what happens to an original once its output is durable: keep, delete or archive"
    )
    archive_dir: Path | None = Field(None, description="where originals go with ON_SUCCESS=archive")
    # compression
    strategy: str = Field(
        "kmeans", description="size-only (SO), kmeans (MKM), sklearn-kmeans (FKM) or sklearn-minibatch (MBKM)"
    )
    colors: int | None = Field(None, description=f"colours per image, 2-256 [default: {DEFAULT_COLORS}]")
    bits: int | None = Field(None, description="colours as bits, 1-8 (colours = 2^bits); instead of COLORS")
    grayscale: bool = Field(False, description="quantize luminance and write grayscale images")
    scale: float = Field(5.0, description="downsampling factor per side (>= 1)")
    max_size: str | None = Field(None, description="fit within WIDTHxHEIGHT instead of SCALE (never upsamples)")
    size: str | None = Field(
        None, description="exact WIDTHxHEIGHT output instead of SCALE: scale to cover, centre-crop (<= MAX_PIXELS)"
    )
    resample: str = Field("box", description="downsampling filter: box (area average), lanczos, stride (skip)")
    dither: str = Field(
        "none", description="map pixels to the palette exactly (none), by edge-aware error diffusion (diffuse) "
        "or by an edge-aware Bayer pattern (ordered)"
    )
    dither_strength: float = Field(1.0, description="how much to dither, 0-1 (with DITHER diffuse or ordered)")
    alpha: str = Field(
        "keep", description="transparency: keep (palette with alpha, PLTE + tRNS) or flatten onto BACKGROUND"
    )
    background: str = Field("#ffffff", description="colour #rrggbb that ALPHA=flatten composites onto")
    color_space: str = Field(
        "rgb", description="where colours are clustered: rgb, or oklab (perceptual: fewer visible errors, slower)"
    )
    png_effort: str = Field(
        "fast", description="PNG encoder effort, same pixels: fast; high (libdeflate 12: bytes x0.92-0.95, 10-25x "
        "the encode time); max (oxipng, the png extra: bytes x0.90-0.94, 25-60x, 0.2-0.6 s per image)"
    )
    seed: int = Field(
        0, description="random seed of the sklearn strategies (same seed, same output); kmeans is deterministic"
    )
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, description="refuse images with more pixels (decompression bombs)")
    palette: Path | None = Field(
        None, description="map every image to this shared palette (.gpl, .png or .json; e.g. from icsd palette "
        "learn) instead of fitting its own: identical PLTE in every output"
    )
    # daemon
    workers: int = Field(0, description="worker processes [default 0: one per CPU]")
    executor: Literal["process", "dask"] = Field("process", description="process (local pool) or dask (cluster)")
    dask_scheduler: str = Field("local", description="dask scheduler address tcp://host:8786, or local")
    stable_seconds: float = Field(1.0, description="quiet period before a new file counts as completely written")
    rescan_seconds: float = Field(
        300.0, description="periodic rescan of the input folder (> 0), catches missed events"
    )
    polling: bool | None = Field(None, description="force polling (true) or inotify (false) [default: auto]")
    max_attempts: int = Field(3, description="tries for an image whose failure may be transient")
    drain_seconds: float = Field(30.0, description="on SIGTERM, how long in-flight images may take to finish")
    stall_seconds: float = Field(
        600.0, description="no image finishing for this long while some are in progress = unhealthy (watchdog)"
    )
    # observability
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: Literal["text", "json"] = Field("text", description="text, or json (one object per line)")
    metrics_port: int | None = Field(None, description="serve Prometheus metrics on this port [default: off]")
    metrics_host: str = Field("127.0.0.1", description="address the metrics server binds to")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources and order, merged by one source that keeps each group of ALTERNATIVES whole.

        pydantic-settings merges sources key by key, so `--scale 2` over `ICSD_SIZE=64x64` would keep
        both and the size rule would silently win; merging here lets a higher source's choice replace
        the whole group.
        """
        layers = (
            ("the command line", init_settings),
            ("the environment", env_settings),
            (".env", dotenv_settings),
            ("the secrets folder", file_secret_settings),
        )
        return (_OneChoicePerGroup(settings_cls, layers),)

    # -- derived values -------------------------------------------------------------------

    @property
    def failed_path(self) -> Path:
        return self.failed_dir or self.output_dir / ".failed"

    @property
    def state_path(self) -> Path:
        return self.state_dir or self.output_dir / ".icsd"

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    def folders(self) -> dict[str, Path]:
        """The folders icsd writes to, by setting name (the archive only when one is configured)."""
        ours = {"ICSD_OUTPUT_DIR": self.output_dir, "ICSD_FAILED_DIR": self.failed_path,
                "ICSD_STATE_DIR": self.state_path}
        if self.archive_dir is not None:
            ours["ICSD_ARCHIVE_DIR"] = self.archive_dir
        return ours

    def params(self) -> CompressParams:
        """The frozen job parameters; raises SettingsError naming the offending setting.

        Checked here rather than left to CompressParams, whose messages cannot name ICSD_ variables;
        `icsd compress` needs only this, the daemon commands call it through validate_all.
        """
        try:
            return self._params()
        except ParameterError as exc:  # the core's parsers were given the setting's name to use
            raise SettingsError(exc.message) from None

    def _params(self) -> CompressParams:
        _check_range("SCALE", self.scale, low=1, finite=True)
        if self.resample.lower() == "stride" and self.scale != int(self.scale):
            raise SettingsError(f"ICSD_RESAMPLE=stride needs a whole-number ICSD_SCALE, got {self.scale}")
        # Pillow refuses anything above twice its own limit, whatever we allow.
        _check_range("MAX_PIXELS", self.max_pixels, low=1, high=2 * DEFAULT_MAX_PIXELS)
        _check_range("DITHER_STRENGTH", self.dither_strength, low=0, high=1, finite=True)
        size = parse_size(self.size, setting="ICSD_SIZE") if self.size else None
        if size is not None and size[0] * size[1] > self.max_pixels:
            # The only rule that can upsample: without this cap a typo allocates tens of GB per image.
            raise SettingsError(
                f"ICSD_SIZE {size[0]}x{size[1]} is {size[0] * size[1]} pixels, more than ICSD_MAX_PIXELS "
                f"({self.max_pixels}): choose a smaller size"
            )
        return CompressParams(
            strategy=_setting("STRATEGY", Strategy.parse, self.strategy),
            colors=self.color_count(),
            grayscale=self.grayscale,
            scale=self.scale,
            max_size=parse_size(self.max_size, setting="ICSD_MAX_SIZE") if self.max_size else None,
            size=size,
            resample=_setting("RESAMPLE", Resample.parse, self.resample),
            seed=self.seed,
            max_pixels=self.max_pixels,
            palette=self.shared_palette().entries if self.palette is not None else None,
            dither=_setting("DITHER", Dither.parse, self.dither),
            dither_strength=self.dither_strength,
            alpha=_setting("ALPHA", Alpha.parse, self.alpha),
            background=parse_color(self.background, setting="ICSD_BACKGROUND"),
            color_space=_setting("COLOR_SPACE", ColorSpace.parse, self.color_space),
            png_effort=_png_effort(self.png_effort),
        )

    def shared_palette(self) -> Palette:
        """The palette ICSD_PALETTE names, read and checked; SettingsError naming the setting and the file."""
        from icsd.daemon.palettes import read_palette_file

        assert self.palette is not None
        palette = read_palette_file(self.palette)
        if self.grayscale and not palette.grey:
            raise SettingsError(
                f"ICSD_PALETTE file {self.palette}: ICSD_GRAYSCALE=true needs a palette of greys (R = G = B in every "
                "entry); learn one with --grayscale or turn ICSD_GRAYSCALE off"
            )
        if self.strategy.strip().lower() in ("size-only", "so"):
            raise SettingsError(
                f"ICSD_PALETTE file {self.palette}: ICSD_STRATEGY=size-only keeps every colour and cannot use a palette"
            )
        return palette

    def color_count(self) -> int:
        """K from ICSD_BITS or ICSD_COLORS (at most one is set: see _OneChoicePerGroup)."""
        if self.bits is not None:
            return colors_from_bits(self.bits, setting="ICSD_BITS")
        colors = DEFAULT_COLORS if self.colors is None else self.colors
        if not 2 <= colors <= 256:
            raise SettingsError(f"ICSD_COLORS must be between 2 and 256, got {colors}")
        return colors

    def validate_all(self) -> CompressParams:
        """Check everything a daemon start needs; returns the job parameters."""
        params = self.params()
        _check_range("WORKERS", self.workers, low=0)
        _check_range("STABLE_SECONDS", self.stable_seconds, low=0, finite=True)  # inf: no file would ever be taken
        # No "off": the rescan is what catches events the watcher missed (inotify overflow, NFS).
        _check_range("RESCAN_SECONDS", self.rescan_seconds, low=0, exclusive=True)
        _check_range("MAX_ATTEMPTS", self.max_attempts, low=1)
        _check_range("DRAIN_SECONDS", self.drain_seconds, low=0)
        _check_range("STALL_SECONDS", self.stall_seconds, low=0.1)
        if self.metrics_port is not None:
            _check_range("METRICS_PORT", self.metrics_port, low=0, high=65535)
        if self.log_level.upper() not in LEVELS:
            raise SettingsError(f"ICSD_LOG_LEVEL must be one of {', '.join(LEVELS)}, got {self.log_level!r}")
        if self.on_success == "archive" and self.archive_dir is None:
            raise SettingsError("ICSD_ON_SUCCESS=archive needs ICSD_ARCHIVE_DIR (where originals are moved)")
        self._check_folders()
        return params

    def _check_folders(self) -> None:
        """Our folders may not be the input folder or inside it: we would watch our own output."""
        source = self.input_dir.resolve()
        for name, folder in self.folders().items():
            resolved = folder.resolve()
            if resolved == source or resolved.is_relative_to(source):
                raise SettingsError(
                    f"{name} ({folder}) is inside ICSD_INPUT_DIR ({self.input_dir}): "
                    "choose a folder outside the input folder"
                )
        # Outputs mirror input paths anywhere in the output folder but in hidden folders (inputs in hidden
        # folders are never taken): originals kept among them could be overwritten by an output.
        output = self.output_dir.resolve()
        for name, folder in (("ICSD_FAILED_DIR", self.failed_path), ("ICSD_ARCHIVE_DIR", self.archive_dir)):
            resolved = folder.resolve() if folder is not None else None
            if resolved is not None and resolved.is_relative_to(output) and not any(
                part.startswith(".") for part in resolved.relative_to(output).parts
            ):
                raise SettingsError(
                    f"{name} ({folder}) is ICSD_OUTPUT_DIR ({self.output_dir}) or a folder in it, where outputs "
                    "could overwrite originals: choose a folder outside it, or a hidden one like the default .failed"
                )


def load_settings(**overrides: Any) -> Settings:
    """Settings from env/.env with `overrides` (CLI flags; None = not given) on top."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


# Read by the core, not settings: ICSD_PURE_NUMPY=1 ignores the compiled k-means kernels
# (icsd.core.quantization.compiled).
_ENGINE_ENV = {"ICSD_PURE_NUMPY"}


def unknown_env_warnings(environ: dict[str, str] | None = None, env_file: Path = Path(".env")) -> list[str]:
    """One warning per unknown `ICSD_*` variable, naming the closest valid one."""
    names = {f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields} | _ENGINE_ENV
    seen = {key.upper() for key in (os.environ if environ is None else environ) if key.upper().startswith(ENV_PREFIX)}
    if env_file.is_file():
        from dotenv import dotenv_values  # installed with pydantic-settings

        seen |= {key.upper() for key in dotenv_values(env_file) if key.upper().startswith(ENV_PREFIX)}
    warnings = []
    for key in sorted(seen - names):
        # Compared without the shared ICSD_ prefix, which made every name look alike (ICSD_FOO: "ICSD_COLORS?")
        bare = {name.removeprefix(ENV_PREFIX): name for name in names}
        close = difflib.get_close_matches(key.removeprefix(ENV_PREFIX), sorted(bare), n=1)
        hint = f"; did you mean {bare[close[0]]}?" if close else ""
        warnings.append(f"unknown setting {key} is ignored{hint}")
    return warnings


def as_typed(message: str, flags: Mapping[str, str], environ: Mapping[str, str] | None = None,
             env_file: Path = Path(".env")) -> str:
    """`message` with each ICSD_<NAME> it mentions named as the user gave that setting.

    Messages are written with variable names; a user who typed `--colors 300` should read `--colors`, one who
    set it in .env the line to fix. `flags`: setting name -> what the command line called it (`--colors`).
    Names set nowhere (a default mentioned as a bound) stay variables.
    """
    environ = os.environ if environ is None else environ
    in_env = {key.upper() for key, value in environ.items() if value}  # empty values are ignored

    def typed(match: re.Match[str]) -> str:
        variable = match.group(0)
        name = variable.removeprefix(ENV_PREFIX).lower()
        if name not in Settings.model_fields:
            return variable
        if name in flags:
            return flags[name]
        if variable in in_env:
            return variable
        line = _dotenv_line(env_file, variable)
        return f"{variable} ({env_file} line {line})" if line else variable

    return re.sub(rf"\b{ENV_PREFIX}[A-Z0-9_]*[A-Z0-9]", typed, message)


def _dotenv_line(env_file: Path, variable: str) -> int | None:
    """The number of the line of `env_file` that sets `variable` (the last one wins, as in python-dotenv)."""
    try:
        lines = env_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    found = None
    for number, line in enumerate(lines, start=1):
        key = line.strip().removeprefix("export ").partition("=")[0].strip()
        if key.upper() == variable:
            found = number
    return found


class _OneChoicePerGroup(PydanticBaseSettingsSource):
    """The sources merged in precedence order, each group of ALTERNATIVES taken from one source only.

    The highest source that sets any member of a group decides the whole group, so a lower source
    can neither add a second rule (`ICSD_SIZE` under `--scale`) nor make a conflict with it; two
    members set in the same source are a SettingsError naming the source. "Set" means given:
    defaults are not in any source, and empty values are dropped (env_ignore_empty) or None (flags).
    """

    def __init__(self, settings_cls: type[BaseSettings],
                 layers: tuple[tuple[str, PydanticBaseSettingsSource], ...]) -> None:
        super().__init__(settings_cls)
        self.layers = layers

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused (abstract in the base class): __call__ reads whole sources."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        decided: set[tuple[str, ...]] = set()
        for where, source in self.layers:
            values = {key: value for key, value in source().items() if value is not None}
            for group in ALTERNATIVES:
                given = [name for name in group if name in values]
                if group in decided:
                    for name in given:
                        del values[name]
                elif len(given) > 1:
                    raise SettingsError(_conflict(given, where))
                elif given:
                    decided.add(group)
            merged = values | merged
        return merged


def _conflict(names: list[str], where: str) -> str:
    """`set ICSD_COLORS or ICSD_BITS, not both: the environment sets both`."""
    env = [f"{ENV_PREFIX}{name.upper()}" for name in names]
    hint = " (colours = 2^bits)" if "bits" in names else ""
    if len(env) == 2:
        return f"set {env[0]} or {env[1]}, not both{hint}: {where} sets both"
    return f"set one of {', '.join(env[:-1])} or {env[-1]}, not several: {where} sets all of them"


def _setting(name: str, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except (SettingsError, ValueError) as exc:
        message = exc.message if isinstance(exc, SettingsError) else str(exc)
        raise SettingsError(f"ICSD_{name}: {message}") from None


def _png_effort(value: str) -> PngEffort:
    """ICSD_PNG_EFFORT, checked here rather than in every worker: `max` needs the `png` extra installed."""
    effort = _setting("PNG_EFFORT", PngEffort.parse, value)
    if effort is PngEffort.MAX and not _installed("oxipng"):
        raise SettingsError("ICSD_PNG_EFFORT=max needs oxipng: pip install 'icsd[png]', or use fast or high")
    return effort


def _installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (the daemon process never loads it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _check_range(
    name: str, value: float, *, low: float, high: float | None = None, exclusive: bool = False, finite: bool = False
) -> None:
    """Raise SettingsError unless low <= value <= high (low < value if `exclusive`; not inf if `finite`).

    NaN is always refused: it compares false with every bound and would pass a plain range check.
    """
    below = value <= low if exclusive else value < low
    if math.isnan(value) or below or (high is not None and value > high) or (finite and math.isinf(value)):
        bound = f"between {low} and {high}" if high is not None else f"{'>' if exclusive else '>='} {low}"
        kind = "a finite number " if finite and not math.isfinite(value) else ""
        raise SettingsError(f"ICSD_{name} must be {kind}{bound}, got {value}")


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "?"
    return f"ICSD_{field.upper()}: {error['msg'].lower()}, got {error.get('input')!r}"
