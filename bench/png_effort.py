"""What a higher PNG effort buys: bytes and encode time of icsd's palette PNG writer at each ICSD_PNG_EFFORT.

    .venv/bin/python bench/png_effort.py [--colors 16,64,256] [--repeat 3] [--wallpapers 4] [--zopfli]

Every encoder writes the same quantized image (icsd `kmeans`, no dithering, on bench/photos.py's real
photographs): icsd's writer at each effort (fast, the default: libdeflate 6 for packed rows, 7 for 8-bit
rows, filter None; high: libdeflate 12; max: oxipng level 2 over the fast file, palette reordered; max with
the palette kept, as for a shared palette), and for the choice of level oxipng 1, 3 and 4 with max's options,
and with --zopfli oxipng 2 with zopfli (slow). oxipng runs on one thread (RAYON_NUM_THREADS=1), as in a worker.

Per K and encoder: total bytes; bytes as a ratio to fast and to pngquant `--speed 4 --nofs` quantizing the
same pixels (its own palette and encoder: the issue's reference; skipped without pngquant on PATH); the median
per-image encode time and the median per-image ratio to fast (encoders interleaved in each repeat, so they
share the machine's noise). Every output is decoded and checked to give exactly icsd's pixels.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before oxipng builds its thread pool: one worker, one core

from bench.photos import photographs
from icsd.core.png import encode_indexed_png
from icsd.core.quantization import quantize

Encoder = Callable[[np.ndarray, np.ndarray], bytes]
DEFAULT = "fast (default)"


def _effort(effort: str, *, keep_palette: bool = False) -> Encoder:
    return lambda palette, indices: encode_indexed_png(palette, indices, effort=effort, keep_palette=keep_palette)


def _oxipng(level: int, *, zopfli: bool = False) -> Encoder:
    """oxipng over icsd's fast file with effort max's options (palette reordered, colour type kept)."""
    import oxipng

    options: dict[str, object] = {"level": level, "color_type_reduction": False}
    if zopfli:
        options["deflate"] = oxipng.Deflaters.zopfli(15)

    def run(palette: np.ndarray, indices: np.ndarray) -> bytes:
        return oxipng.optimize_from_memory(encode_indexed_png(palette, indices), **options)

    return run


def encoders(zopfli: bool) -> dict[str, Encoder]:
    table: dict[str, Encoder] = {
        DEFAULT: _effort("fast"),
        "high (libdeflate 12)": _effort("high"),
        "max (oxipng 2)": _effort("max"),
        "max, palette kept": _effort("max", keep_palette=True),
        "oxipng 1": _oxipng(1),
        "oxipng 3": _oxipng(3),
        "oxipng 4": _oxipng(4),
    }
    if zopfli:
        table["oxipng 2 + zopfli 15"] = _oxipng(2, zopfli=True)
    return table


def pngquant_bytes(pixels: np.ndarray, k: int) -> int:
    """Size of pngquant --speed 4 --nofs's PNG of the same pixels (its own quantization and encoder)."""
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.png", Path(tmp) / "out.png"
        Image.fromarray(pixels).save(source, compress_level=1)
        command = ["pngquant", "--speed", "4", "--nofs", "-f", "-o", str(target), str(k), str(source)]
        subprocess.run(command, check=True)
        return target.stat().st_size


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def measure(images: list[tuple[str, np.ndarray]], k: int, repeat: int, table: dict[str, Encoder]) -> None:
    sizes = {name: np.zeros(len(images)) for name in table}
    times = {name: np.zeros((len(images), repeat)) for name in table}
    reference = np.zeros(len(images))
    have_pngquant = shutil.which("pngquant") is not None
    for i, (_, pixels) in enumerate(images):
        q = quantize(pixels, k, "kmeans")
        palette, indices = q.palette, np.ascontiguousarray(q.indices, dtype=np.uint8)
        expected = palette[indices]
        if have_pngquant:
            reference[i] = pngquant_bytes(pixels, k)
        for r in range(repeat):
            for name, encode in table.items():
                t0 = time.perf_counter()
                data = encode(palette, indices)
                times[name][i, r] = time.perf_counter() - t0
                if r == 0:
                    sizes[name][i] = len(data)
                    if not np.array_equal(decoded(data), expected):
                        raise SystemExit(f"{name}: pixels differ from icsd's at K={k}")
    base_bytes, base_time = sizes[DEFAULT].sum(), np.median(times[DEFAULT], axis=1)
    print(f"\nK = {k}" + (f"   (pngquant --speed 4 --nofs: {reference.sum() / 1e3:.0f} kB)" if have_pngquant else ""))
    header = f"{'encoder':<26}{'kB':>9}{'x default':>11}{'x pngquant':>12}{'median ms':>11}{'time x default':>16}"
    print(header)
    print("-" * len(header))
    for name in table:
        total = sizes[name].sum()
        per_image = np.median(times[name], axis=1)
        vs_pngquant = f"{total / reference.sum():>12.3f}" if have_pngquant else f"{'-':>12}"
        print(
            f"{name:<26}{total / 1e3:>9.0f}{total / base_bytes:>11.3f}{vs_pngquant}"
            f"{1e3 * np.median(per_image):>11.1f}{np.median(per_image / base_time):>16.1f}"
        )
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--colors", default="16,64,256", help="comma-separated palette sizes K")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per image and encoder (median kept)")
    parser.add_argument("--wallpapers", type=int, default=4, help="how many Debian wallpapers (0: none)")
    parser.add_argument("--zopfli", action="store_true", help="also oxipng 2 with zopfli (15 iterations): slow")
    args = parser.parse_args(argv)
    images = photographs(wallpapers=args.wallpapers)
    print(f"{len(images)} images, {args.repeat} timed run(s) each, encoders interleaved")
    table = encoders(args.zopfli)
    for k in (int(c) for c in args.colors.split(",")):
        measure(images, k, args.repeat, table)


if __name__ == "__main__":
    main()
