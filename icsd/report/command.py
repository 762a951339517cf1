"""`icsd compare`: check the outputs, run the variants on the pool, write the page (and the sheet).

The outputs are checked before any work: a page or sheet that exists and was not written by `icsd compare`
is kept unless --force (pngquant's rule), and a path that names a folder or a link is refused (exit 73).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import time
from pathlib import Path
from typing import Any

from icsd import __version__
from icsd.daemon.output import write_atomic
from icsd.daemon.progress import ProgressBar, human_bytes
from icsd.errors import OutputError, UsageError
from icsd.report.options import Variant, plan
from icsd.report.run import find_images, run_variants, sample

__all__ = ["compare"]


def compare(args: argparse.Namespace, settings: Any) -> int:
    """Run the comparison the parsed flags ask for; 0 when the page was written (even with unreadable images)."""
    page_path = _target(args.output, "-o/--output", ".html", force=args.force)
    sheet_path = _target(args.sheet, "--sheet", ".png", force=args.force) if args.sheet is not None else None
    base = settings.params()
    files = sample(find_images(args.paths, exclude=(page_path, *([sheet_path] if sheet_path else []))), args.sample)
    variants = plan(args.strategy_list, args.color_list, args.dither_list)
    started = time.monotonic()
    bar = ProgressBar(total=len(files) * (1 + len(variants)))
    try:
        rows = run_variants(files, variants, base, workers=settings.worker_count, roots=args.paths,
                            on_done=bar.advance)
    finally:
        bar.clear()
    seconds = time.monotonic() - started

    from icsd.report.page import PageInputs, render_page
    from icsd.report.plot import bytes_psnr_svg
    from icsd.report.summary import plot_series, totals

    table = totals(rows, variants)
    html = render_page(PageInputs(
        rows=rows, variants=variants, totals=table, plot_svg=bytes_psnr_svg(plot_series(table)),
        settings=_shown_settings(args, settings, variants, len(files)), command=_command(args, settings),
        seconds=seconds,
    )).encode()
    _write(page_path, html)
    written = [f"{page_path} ({human_bytes(len(html))})"]
    if sheet_path is not None:
        from icsd.report.sheet import render_sheet

        png = render_sheet(rows, variants)
        _write(sheet_path, png)
        written.append(f"{sheet_path} ({human_bytes(len(png))})")
    unreadable = sum(row.error is not None for row in rows)
    note = f", {unreadable} unreadable" if unreadable else ""
    print(f"compared {len(files)} images{note} x {len(variants)} variants in {seconds:.1f} s -> {', '.join(written)}")
    return 0


def _target(text: str, flag: str, suffix: str, *, force: bool) -> Path:
    """The output path, refused now (before the work) if writing it would be wrong."""
    if not text.strip():
        raise UsageError(f"{flag} is empty: give a file name (e.g. compare{suffix})")
    path = Path(text)
    if path.is_dir() or text.endswith("/"):
        raise OutputError(f"cannot write {path}/: it names a folder; give a file name (e.g. {path / 'compare'}"
                          f"{suffix})")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise OutputError(f"cannot write {path}: it is not a regular file; choose another path with {flag}")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist; create it or choose another "
                          f"path with {flag}")
    if path.exists() and not force and not _ours(path):
        raise OutputError(f"{path} exists and was not written by icsd compare: choose another path with {flag}, "
                          "or add --force to replace it")
    return path


def _ours(path: Path) -> bool:
    """True for a page or sheet an earlier `icsd compare` wrote (its generator mark in the first 4 KiB)."""
    from icsd.report.page import GENERATOR
    from icsd.report.sheet import SOFTWARE

    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return f'name="generator" content="{GENERATOR} '.encode() in head or (
        head.startswith(b"\x89PNG") and b"Software\x00" + SOFTWARE.encode() in head)


def _write(path: Path, data: bytes) -> None:
    try:
        write_atomic(path.parent.resolve(), path.name, data)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose another path") from None


def _shown_settings(args: argparse.Namespace, settings: Any, variants: list[Variant], images: int) -> dict[str, str]:
    """What the page lists so a reader can reproduce it: the variants, the size rule and the software."""
    base = settings.params()
    if base.size is not None:
        size_rule = f"size {base.size[0]}x{base.size[1]} (cover, centre-crop)"
    elif base.max_size is not None:
        size_rule = f"max-size {base.max_size[0]}x{base.max_size[1]}"
    else:
        size_rule = f"scale {base.scale:g}"
    import numpy
    import PIL
    import sklearn

    return {
        "images": f"{images}" + (f" (a sample of --sample {args.sample})" if args.sample else ""),
        "strategies": ", ".join(dict.fromkeys(v.strategy.value for v in variants)),
        "colours (K)": ", ".join(map(str, args.color_list)),
        "dithering": ", ".join(args.dither_list),
        "size rule": size_rule,
        "resample": base.resample.value,
        "grayscale": "yes" if base.grayscale else "no",
        "seed": str(base.seed),
        "max pixels": str(base.max_pixels),
        "workers": str(settings.worker_count),
        "software": f"icsd {__version__}, Python {platform.python_version()}, NumPy {numpy.__version__}, "
                    f"Pillow {PIL.__version__}, scikit-learn {sklearn.__version__}",
    }


def _command(args: argparse.Namespace, settings: Any) -> str:
    """The command line that repeats this comparison, with every effective value spelt out."""
    base = settings.params()
    words = ["icsd", "compare", *map(str, args.paths),
             "--colors", ",".join(map(str, args.color_list)),
             "--strategies", ",".join(dict.fromkeys(s.value for s in args.strategy_list)),
             "--dither", ",".join(args.dither_list)]
    if base.size is not None:
        words += ["--size", "x".join(map(str, base.size))]
    elif base.max_size is not None:
        words += ["--max-size", "x".join(map(str, base.max_size))]
    else:
        words += ["--scale", f"{base.scale:g}"]
    words += ["--resample", base.resample.value, "--seed", str(base.seed)]
    if base.grayscale:
        words.append("--grayscale")
    if args.sample:
        words += ["--sample", str(args.sample)]
    return shlex.join(words)
