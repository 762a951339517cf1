"""Drive `icsd compare`: find the images, run every variant of each on a process pool, collect the rows.

Each image runs size-only first (its reference, see `measure`); as soon as that is back, its variants are
queued with the reference PNG, so both workers stay busy from the first image to the last. Workers come from
icsd's fork server (the image stack already imported, one BLAS thread each) and ignore Ctrl-C: the parent
cancels what has not started and the command stops with the usual 130.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from icsd.core import CompressParams, Strategy
from icsd.daemon.fork_server import worker_pool
from icsd.daemon.inputs import printable, read_error, read_regular, walk_candidates
from icsd.errors import InputError
from icsd.report.measure import Measured, measure
from icsd.report.options import Variant

__all__ = ["WORKER_DIED", "ImageRow", "display_name", "find_images", "run_variants", "sample"]

WORKER_DIED = "a worker process died (out of memory or killed); try fewer --workers or a smaller --max-pixels"


@dataclass
class ImageRow:
    """One input image: its reference (the downsampled original) and each variant, or why it failed."""

    name: str
    error: str | None = None
    reference: Measured | None = None
    cells: dict[Variant, Measured] = field(default_factory=dict)


def display_name(path: Path, roots: Sequence[Path]) -> str:
    """How the page names an image: below the folder it was found in, or as given on the command line."""
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return printable(path.relative_to(root))
    return printable(path)


def find_images(paths: list[Path], *, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """Files as given, and the image files under each folder (recursively, hidden ones skipped), sorted.

    `exclude`: files found in a folder but not to be compared (the command's own sheet from a previous run).
    """
    found: list[Path] = []
    skip = {p.resolve() for p in exclude}
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in _walk(path) if p.resolve() not in skip)
        elif path.exists() or path.is_symlink():
            found.append(path)
        else:
            raise InputError(f"{printable(path)} does not exist: give image files or folders of images")
    if not found:
        raise InputError(f"no images in {', '.join(printable(p) for p in paths)}: icsd compare needs image files")
    return list(dict.fromkeys(found))


def sample(files: list[Path], count: int | None) -> list[Path]:
    """`count` files spread evenly over the sorted list (reproducible, unlike a random draw); all when None."""
    if count is None or count >= len(files):
        return files
    step = len(files) / count
    return [files[int(i * step)] for i in range(count)]


def run_variants(
    files: list[Path],
    variants: list[Variant],
    base: CompressParams,
    *,
    workers: int,
    roots: Sequence[Path] = (),
    on_done: Callable[[], None] = lambda: None,
) -> list[ImageRow]:
    """Every variant of every file, measured in a pool of `workers` processes; `on_done` after each job.

    `roots`: the folders given on the command line, which the rows' names are relative to.
    """
    rows = [ImageRow(name=display_name(path, roots)) for path in files]
    reference_params = dataclasses.replace(base, strategy=Strategy.SIZE_ONLY)
    pool = worker_pool(workers)
    pending: dict[Future[Measured], tuple[ImageRow, Variant | None, bytes]] = {}
    try:
        for row, path in zip(rows, files, strict=True):
            try:
                data = read_regular(path)[0]
            except (OSError, InputError) as exc:
                row.error = read_error(exc)
                for _ in range(1 + len(variants)):  # the bar counts the jobs this image will not need
                    on_done()
                continue
            pending[pool.submit(measure, data, reference_params, None)] = (row, None, data)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                row, variant, data = pending.pop(future)
                measured = _outcome(future)
                on_done()
                if variant is not None:
                    row.cells[variant] = measured
                    continue
                if measured.error is not None:
                    row.error = measured.error
                    for _ in variants:
                        on_done()
                    continue
                row.reference = dataclasses.replace(measured, reference=b"")
                for each in variants:
                    try:
                        job = pool.submit(measure, data, each.params(base), measured.reference)
                    except BrokenProcessPool:
                        row.cells[each] = Measured(error=WORKER_DIED)
                        on_done()
                        continue
                    pending[job] = (row, each, data)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return rows


def _outcome(future: Future[Measured]) -> Measured:
    """The job's Measured; a worker that died (out of memory, killed) or a bug is that cell's one-line error."""
    try:
        return future.result()
    except BrokenProcessPool:
        return Measured(error=WORKER_DIED)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
        return Measured(error=f"internal error: {type(exc).__name__}: {detail}")


def _walk(folder: Path) -> Iterator[Path]:
    """Every candidate below `folder`, as the daemon finds them (links and FIFOs included: they become rows
    with their one-line error)."""
    top = os.path.abspath(folder)
    return (Path(path) for path, _st in walk_candidates(top, root=top, excluded=()))




