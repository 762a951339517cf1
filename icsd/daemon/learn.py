"""Learn one palette from a dataset: `icsd palette learn` and `icsd.learn_palette`.

Images are read here (the shell) and handed to workers as bytes + CompressParams; each worker decodes and
downsamples as the pipeline does and returns the image's binned histogram (`icsd.core.histogram_job`). The
parent merges them as they finish, with at most a bounded window of images in flight, so memory stays
bounded whatever the dataset's size; integer sums make the merged histogram, and so the palette, the same
for any worker count and completion order. One fit at the end gives the palette.
"""

from __future__ import annotations

import itertools
import logging
import random
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from icsd.core import (
    BinnedHistogram,
    CompressParams,
    HistogramOutcome,
    Palette,
    ParameterError,
    fit_dataset_palette,
    histogram_job,
    pixels_histogram,
)
from icsd.daemon.fork_server import worker_pool
from icsd.daemon.inputs import printable, read_error, read_regular, scan_tree
from icsd.daemon.palettes import write_palette_file
from icsd.daemon.progress import ProgressBar
from icsd.errors import DataError, InputError, UsageError

if TYPE_CHECKING:
    from icsd.settings import Settings

__all__ = ["LearnReport", "dataset_images", "learn_command", "learn_palette", "spread_sample"]

log = logging.getLogger("icsd")

Image = np.ndarray | str | Path | bytes


@dataclass
class LearnReport:
    """What a learning run saw: images used, images skipped with their reasons, pixels counted."""

    used: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    pixels: int = 0
    histogram_bytes: int = 0


def learn_palette(
    images: Iterable[Image],
    colors: int = 16,
    *,
    strategy: str = "kmeans",
    seed: int = 0,
    params: CompressParams | None = None,
    sample: int | None = None,
    workers: int = 1,
    on_image: Callable[[str, str | None], None] | None = None,
    report: LearnReport | None = None,
) -> Palette:
    """One palette of at most `colors` entries for all of `images`.

    `images`: arrays ((H, W, 3) RGB or (H, W) grey uint8, taken as they are), or files (paths; a folder stands
    for the images in it, as `icsd batch` finds them) and encoded bytes, which are decoded and downsampled by
    `params`' rules (size rule, grayscale, pixel cap; default `CompressParams()`) as `icsd batch` would.
    `sample`: use only that many, spread over the list (seeded).
    `workers` > 1 computes the histograms in that many processes. `on_image(name, error)` is called as each
    image is done. Images that cannot be read or decoded are skipped (listed in `report`); none usable is an
    error. Deterministic for a seed whatever `workers`.
    """
    params = params or CompressParams()
    report = report if report is not None else LearnReport()
    items = [found for item in images for found in _expand(item)]
    if sample is not None:
        items = spread_sample(items, sample, seed)
    merged: BinnedHistogram | None = None
    for name, outcome in _histograms(items, params, workers):
        if outcome.histogram is None:
            report.skipped.append((name, outcome.error or "unknown error"))
        else:
            report.used += 1
            merged = outcome.histogram if merged is None else BinnedHistogram.merge([merged, outcome.histogram])
        if on_image is not None:
            on_image(name, outcome.error)
    if merged is None:
        reason = f" ({report.skipped[0][0]}: {report.skipped[0][1]})" if report.skipped else ""
        raise ParameterError("images", f"no usable image to learn a palette from{reason}")
    report.pixels, report.histogram_bytes = merged.total, merged.nbytes
    return fit_dataset_palette(merged, colors, strategy, seed)


def dataset_images(folder: Path) -> list[Path]:
    """The image files below `folder` as `icsd batch` would take them, sorted by relative path."""
    return sorted((path for path, _size in scan_tree(folder)), key=lambda p: p.as_posix())  # all below one root


def spread_sample(items: Sequence[object], n: int, seed: int) -> list:
    """`n` of `items` spread over the whole list: one drawn (seeded) from each of `n` equal strata, in order."""
    if n < 1:
        raise ParameterError("sample", f"sample must be at least 1, got {n}")
    if n >= len(items):
        return list(items)
    rng = random.Random(seed)
    bounds = [len(items) * i // n for i in range(n + 1)]
    return [items[rng.randrange(lo, hi)] for lo, hi in itertools.pairwise(bounds)]


def learn_command(settings: Settings, *, output: Path, sample: int | None) -> int:
    """`icsd palette learn`: learn from the images in ICSD_INPUT_DIR, write `output`, print what was done."""
    if output.suffix.lower() not in (".gpl", ".png", ".json"):
        raise UsageError(f"-o {output}: give a .gpl, .png or .json file name (the suffix picks the format)")
    params = settings.params()
    if params.strategy == "size-only":
        raise UsageError("ICSD_STRATEGY=size-only does no colour clustering: learn with kmeans or an sklearn strategy")
    folder = settings.input_dir
    files = dataset_images(folder)
    if sample is not None:
        if sample < 1:
            raise UsageError(f"--sample must be at least 1, got {sample}")
        files = spread_sample(files, sample, settings.seed)
    if not files:
        raise InputError(f"no images in {folder}: nothing to learn a palette from")
    started = time.monotonic()
    bar = ProgressBar(total=len(files))

    def progress(name: str, error: str | None) -> None:
        if error is not None:
            bar.clear()
            print(f"icsd: warning: skipped {printable(name)}: {error}", file=sys.stderr)
        bar.advance()

    report = LearnReport()
    try:
        palette = learn_palette(files, params.colors, strategy=params.strategy, seed=params.seed, params=params,
                                workers=min(settings.worker_count, len(files)), on_image=progress, report=report)
    except ParameterError as exc:
        raise DataError(f"{folder}: {exc.message}") from None
    finally:
        bar.clear()
    write_palette_file(output, Palette(palette.entries, output.stem))
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    print(f"learned {len(palette)} colours ({params.strategy}{', grey' if params.grayscale else ''}) from "
          f"{report.used} images{skipped}, {report.pixels / 1e6:.2f} MP downsampled, in "
          f"{time.monotonic() - started:.1f} s -> {output}")
    return 0


# -- private -------------------------------------------------------------------------------------------------


def _histograms(items: list[Image], params: CompressParams, workers: int) -> Iterator[tuple[str, HistogramOutcome]]:
    """(name, outcome) per item: in this process for one worker or arrays, else in a process pool."""
    if workers <= 1 or not any(isinstance(item, str | Path | bytes) for item in items):
        for number, item in enumerate(items):
            name, data = _load(item, number)
            yield name, (data if isinstance(data, HistogramOutcome) else _local(data, params))
        return
    yield from _pooled(items, params, workers)


def _pooled(items: list[Image], params: CompressParams, workers: int) -> Iterator[tuple[str, HistogramOutcome]]:
    window = 2 * workers  # images read and in flight at once: bounds memory like the daemon's window
    pool = worker_pool(workers)
    pending: dict[Future[HistogramOutcome], str] = {}
    todo = iter(enumerate(items))
    try:
        while True:
            for number, item in todo:
                name, data = _load(item, number)
                if isinstance(data, HistogramOutcome):
                    yield name, data
                elif isinstance(data, np.ndarray):
                    yield name, _local(data, params)
                else:
                    pending[pool.submit(histogram_job, data, params)] = name
                if len(pending) >= window:
                    break
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: pending[f]):
                yield pending.pop(future), future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _expand(item: Image) -> list[Image]:
    return dataset_images(Path(item)) if isinstance(item, str | Path) and Path(item).is_dir() else [item]


def _load(item: Image, number: int) -> tuple[str, bytes | np.ndarray | HistogramOutcome]:
    """(name, bytes or array to bin) for an item, or (name, failed outcome) for a file that cannot be read."""
    if isinstance(item, np.ndarray):
        return f"image {number}", item
    if isinstance(item, bytes):
        return f"image {number}", item
    path = Path(item)
    try:
        data, _info = read_regular(path)
    except (OSError, InputError) as exc:
        return str(path), HistogramOutcome(None, read_error(exc))
    return str(path), data


def _local(data: bytes | np.ndarray, params: CompressParams) -> HistogramOutcome:
    if isinstance(data, np.ndarray):
        return HistogramOutcome(pixels_histogram(data), None)  # ParameterError for a bad array: the caller's bug
    return histogram_job(data, params)


def _quiet_worker() -> None:
    """Ctrl-C goes to the whole process group: the parent stops the pool, workers need not print tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
