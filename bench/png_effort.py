"""What a higher PNG effort buys: bytes and encode time of icsd's palette PNG writer against harder encoders.

    .venv/bin/python bench/png_effort.py [--colors 16,64,256] [--repeat 3] [--wallpapers 4] [--zopfli]

Every encoder writes the same quantized image (icsd `kmeans`, no dithering, on bench/photos.py's real
photographs): icsd's default writer (libdeflate 6 for packed rows, 7 for 8-bit rows, filter None), the
same rows at libdeflate levels 10-12, and oxipng (the `png` extra: pyoxipng) at levels 1-4 over icsd's
file, optionally with zopfli (--zopfli: slow). Per K and encoder: total bytes, bytes as a ratio to icsd's
default and to pngquant `--speed 4 --nofs` quantizing the same pixels (its own palette: the issue's
reference; skipped when pngquant is not installed), and the median per-image encode time as a ratio to icsd's
default (encoders interleaved per repeat, so they share the machine's noise). Every candidate is decoded and
checked to give exactly icsd's pixels.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import deflate
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.photos import photographs
from icsd.core.png import encode_indexed_png
from icsd.core.quantization import quantize

Encoder = Callable[[np.ndarray, np.ndarray], bytes]
DEFAULT = "icsd default"


def _libdeflate(level: int) -> Encoder:
    def run(palette: np.ndarray, indices: np.ndarray) -> bytes:
        original = deflate.zlib_compress
        deflate.zlib_compress = lambda data, _level: original(data, level)  # type: ignore[assignment]
        try:
            return encode_indexed_png(palette, indices)
        finally:
            deflate.zlib_compress = original  # type: ignore[assignment]

    return run


def _oxipng(level: int, zopfli: bool = False, **options: object) -> Encoder:
    import oxipng

    def run(palette: np.ndarray, indices: np.ndarray) -> bytes:
        data = encode_indexed_png(palette, indices)
        extra = {"deflate": oxipng.Deflaters.zopfli(15)} if zopfli else {}
        return oxipng.optimize_from_memory(data, level=level, **extra, **options)

    return run


def encoders(zopfli: bool) -> dict[str, Encoder]:
    table: dict[str, Encoder] = {DEFAULT: encode_indexed_png}
    table |= {f"libdeflate {level}": _libdeflate(level) for level in (10, 11, 12)}
    table |= {f"oxipng {level}": _oxipng(level) for level in (1, 2, 3, 4)}
    table["oxipng 2, palette kept"] = _oxipng(2, palette_reduction=False, color_type_reduction=False)
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
