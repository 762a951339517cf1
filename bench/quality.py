"""What a user sees and stores: icsd (each dither option) against pngquant and Pillow on real photographs.

    .venv/bin/python bench/quality.py [--colors 16,64,256] [--repeat 1] [--wallpapers 4] [--sheet docs/dither-sheet.png]

Every tool quantizes the same downsampled pixels (bench/photos.py) and writes a palette PNG. Per K and tool:
total bytes (and as a ratio to pngquant --speed 4 --nofs), PSNR from the geometric-mean MSE, mean SSIM
(scikit-image), low-pass PSNR (both images blurred by a Gaussian of sigma 1.5 first: what an eye at a normal
distance sees, the figure dithering improves), mean Oklab distance x 100 (dE-ok: perceptual error) and the
median time per image (icsd: quantize + encode in
process; pngquant: the whole command, from a PNG file; Pillow: quantize + save). Needs the bench extra and
`pngquant` on PATH. Also writes a sheet of crops (original, none, diffuse, ordered, pngquant) to look at,
and compares transparency (alpha kept) on RGBA versions of the photos (`--alpha-only`: only that): bytes,
PSNR and low-pass PSNR composited on white and on black, and time.
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

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.photos import photographs
from icsd.core.codec import encode_palette_png
from icsd.core.quantization import quantize
from icsd.core.quantization.oklab import srgb_to_oklab

Tool = Callable[[np.ndarray, int], bytes]
REFERENCE = "pngquant s4 nofs"


def icsd_tool(dither: str, color_space: str = "rgb") -> Tool:
    def run(pixels: np.ndarray, k: int) -> bytes:
        q = quantize(pixels, k, dither=dither, color_space=color_space)
        return encode_palette_png(q.palette, q.indices)

    return run


def pngquant_tool(speed: int, dither: bool) -> Tool:
    def run(pixels: np.ndarray, k: int) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            source, target = Path(tmp) / "in.png", Path(tmp) / "out.png"
            Image.fromarray(pixels).save(source, compress_level=1)
            flags = [] if dither else ["--nofs"]
            subprocess.run(["pngquant", "--speed", str(speed), *flags, "-f", "-o", str(target), str(k), str(source)],
                           check=True)
            return target.read_bytes()

    return run


def pillow_tool(pixels: np.ndarray, k: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).quantize(k, dither=Image.Dither.NONE).save(buf, format="PNG")
    return buf.getvalue()


TOOLS: dict[str, Tool] = {
    "icsd none": icsd_tool("none"),
    "icsd diffuse": icsd_tool("diffuse"),
    "icsd ordered": icsd_tool("ordered"),
    "icsd oklab": icsd_tool("none", "oklab"),
    "icsd oklab diffuse": icsd_tool("diffuse", "oklab"),
    "pngquant s1 nofs": pngquant_tool(1, False),
    REFERENCE: pngquant_tool(4, False),
    "pngquant s10 nofs": pngquant_tool(10, False),
    "pngquant s4 dither": pngquant_tool(4, True),
    "Pillow median cut": pillow_tool,
}


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def measures(original: np.ndarray, output: np.ndarray) -> tuple[float, float, float, float]:
    """(MSE, SSIM, low-pass MSE, mean Oklab distance x 100) of output against original."""
    a, b = original.astype(np.float64), output.astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    ssim = float(structural_similarity(original, output, channel_axis=2, data_range=255))
    low = float(np.mean((lowpass(a) - lowpass(b)) ** 2))
    delta = float(np.linalg.norm(srgb_to_oklab(a) - srgb_to_oklab(b), axis=2).mean()) * 100
    return mse, ssim, low, delta


def lowpass(image: np.ndarray) -> np.ndarray:
    """What an eye at a normal distance sees: a Gaussian blur of sigma 1.5 over each channel."""
    return gaussian_filter(image, sigma=(1.5, 1.5, 0))


def db(mses: list[float]) -> float:
    return float(10 * np.log10(255**2 / np.exp(np.mean(np.log(np.maximum(mses, 1e-12))))))


def timed(run: Callable[..., bytes], args: tuple, repeat: int) -> tuple[bytes, float]:
    """(output, median seconds) of `repeat` runs of run(*args)."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        data = run(*args)
        runs.append(time.perf_counter() - start)
    return data, float(np.median(runs))


def table(images: list[tuple[str, np.ndarray]], k: int, repeat: int) -> None:
    rows = {}
    for name, tool in TOOLS.items():
        total, mses, ssims, lows, deltas, times = 0, [], [], [], [], []
        for _, pixels in images:
            data, secs = timed(tool, (pixels, k), repeat)
            times.append(secs)
            total += len(data)
            mse, ssim, low, delta = measures(pixels, decoded(data))
            deltas.append(delta)
            mses.append(mse)
            ssims.append(ssim)
            lows.append(low)
        rows[name] = (total, db(mses), float(np.mean(ssims)), db(lows), float(np.mean(deltas)),
                      float(np.median(times)))
    ref = rows[REFERENCE]
    lines = [[name, f"{total:d}", f"{total / ref[0]:.3f}", f"{psnr:.2f}", f"{ssim:.4f}", f"{low:.2f}",
              f"{delta:.2f}", f"{secs * 1000:.1f}", f"{secs / ref[5]:.2f}"]
             for name, (total, psnr, ssim, low, delta, secs) in rows.items()]
    print_table(f"K={k}  ({len(images)} images)", ("tool", "bytes", "x ref", "PSNR", "SSIM", "LP-PSNR", "dE-ok",
                "ms", "x ref"), (20, 10, 6, 6, 6, 8, 6, 7, 6), lines)


def print_table(title: str, header: tuple[str, ...], widths: tuple[int, ...], lines: list[list[str]]) -> None:
    """The title, then the header and the lines: the first column left-aligned, the others right-aligned."""
    print(f"\n{title}")
    for cells in (list(header), *lines):
        rest = [f"{cell:>{width}s}" for cell, width in zip(cells[1:], widths[1:], strict=True)]
        print(" ".join([f"{cells[0]:{widths[0]}s}", *rest]))


def with_alpha(pixels: np.ndarray) -> np.ndarray:
    """RGBA: the photo under a soft-edged ellipse (alpha 255 inside, falling to 0 over 16 px, clear outside)."""
    h, w = pixels.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    radius = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2)) * min(h, w) / 2
    alpha = np.clip((min(h, w) / 2 - 8 - radius) * (255 / 16), 0, 255).astype(np.uint8)
    return np.dstack([pixels, alpha])


def composite(rgba: np.ndarray, background: int) -> np.ndarray:
    alpha = rgba[..., 3:].astype(np.float64) / 255
    return rgba[..., :3] * alpha + background * (1 - alpha)


def alpha_table(images: list[tuple[str, np.ndarray]], k: int, repeat: int) -> None:
    """icsd (alpha kept) against pngquant --speed 4, without and with dithering, on RGBA versions of the photos:
    bytes, PSNR and low-pass PSNR of the outputs composited on white and on black against the original
    composited alike, median time per image (icsd: quantize + encode; pngquant: the whole command)."""
    from icsd.core.quantization.alpha import quantize_alpha

    def icsd_rgba(dither: str) -> Callable[[np.ndarray], bytes]:
        def run(rgba: np.ndarray) -> bytes:
            q = quantize_alpha(rgba, k, dither=dither)
            return encode_palette_png(q.palette, q.indices, alpha=q.alpha)

        return run

    tools: dict[str, Callable[[np.ndarray], bytes]] = {
        "icsd none": icsd_rgba("none"),
        "icsd diffuse": icsd_rgba("diffuse"),
        "icsd ordered": icsd_rgba("ordered"),
        REFERENCE: lambda rgba: pngquant_tool(4, False)(rgba, k),
        "pngquant s4 dither": lambda rgba: pngquant_tool(4, True)(rgba, k),
    }
    rgbas = [with_alpha(pixels) for _, pixels in images]
    rows = {}
    for name, tool in tools.items():
        total, errors, times = 0, {key: [] for key in ("white", "black", "lp white", "lp black")}, []
        for rgba in rgbas:
            data, secs = timed(tool, (rgba,), repeat)
            times.append(secs)
            total += len(data)
            out = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))
            for background, key in ((255, "white"), (0, "black")):
                a, b = composite(rgba, background), composite(out, background)
                errors[key].append(float(np.mean((a - b) ** 2)))
                errors["lp " + key].append(float(np.mean((lowpass(a) - lowpass(b)) ** 2)))
        rows[name] = (total, *(db(series) for series in errors.values()), float(np.median(times)))
    ref = rows[REFERENCE]
    lines = [[name, f"{total:d}", f"{total / ref[0]:.3f}", f"{white:.2f}", f"{black:.2f}", f"{lp_white:.2f}",
              f"{lp_black:.2f}", f"{secs * 1000:.1f}", f"{secs / ref[5]:.2f}"]
             for name, (total, white, black, lp_white, lp_black, secs) in rows.items()]
    print_table(f"alpha, K={k}  ({len(images)} RGBA images; PSNR and low-pass PSNR composited on white / on black)",
                ("tool", "bytes", "x ref", "PSNR w", "PSNR b", "LP w", "LP b", "ms", "x ref"),
                (20, 10, 6, 7, 7, 6, 6, 7, 6), lines)


def sheet(images: list[tuple[str, np.ndarray]], path: Path, k: int = 16) -> None:
    """Crops of the first two images at K, 2x nearest-neighbour: original, none, diffuse, ordered, pngquant."""
    strips = []
    for _, pixels in images[:2]:
        h, w = pixels.shape[:2]
        crop = (slice(0, min(h, 160)), slice(max(0, w // 2 - 100), max(0, w // 2 - 100) + min(w, 200)))
        outputs = [pixels] + [decoded(TOOLS[t](pixels, k)) for t in
                              ("icsd none", "icsd diffuse", "icsd ordered", "pngquant s4 dither")]
        tiles = [np.asarray(Image.fromarray(np.ascontiguousarray(o[crop])).resize(
            (2 * (crop[1].stop - crop[1].start), 2 * (crop[0].stop - crop[0].start)), Image.Resampling.NEAREST))
            for o in outputs]
        gap = np.full((tiles[0].shape[0], 8, 3), 255, np.uint8)
        strips.append(np.concatenate([part for t in tiles for part in (t, gap)][:-1], axis=1))
    width = max(s.shape[1] for s in strips)
    strips = [np.pad(s, ((0, 8), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(strips, axis=0)).save(path, optimize=True)
    print(f"\nsheet: {path} (columns: original, icsd none, diffuse, ordered, pngquant dithered; K={k})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--colors", default="16,64,256")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--wallpapers", type=int, default=4, help="how many Debian wallpapers (0: none)")
    parser.add_argument("--sheet", type=Path, default=Path("docs/dither-sheet.png"))
    parser.add_argument("--alpha-only", action="store_true", help="only the transparency comparison")
    args = parser.parse_args()
    if shutil.which("pngquant") is None:
        raise SystemExit("pngquant is not installed (apt-get install pngquant)")
    images = photographs(wallpapers=args.wallpapers)
    ks = [int(c) for c in args.colors.split(",")]
    if not args.alpha_only:
        for k in ks:
            table(images, k, args.repeat)
        sheet(images, args.sheet)
    for k in ks:
        alpha_table(images, k, args.repeat)


if __name__ == "__main__":
    main()
