"""Shared palettes: the cost of learning one, the cost of applying one, and the price of consistency.

1. learn vs batch: `icsd palette learn` over the camera JPEGs against `icsd batch` over the same files (both
   whole commands, same workers, K and scale), interleaved, medians; target learn <= 1.2x batch.
2. apply vs fit: per image (the pipeline's downsampled pixels), mapping to a given K-colour palette
   (`quantize(pixels, palette=p)`) against fitting that image's own K colours (`quantize(pixels, K)`), medians
   of several runs summed over the images; target apply <= 0.5x kmeans at the same K.
3. the price of consistency: MSE of every image of a mixed set (the camera frames, a grey photo, a gradient,
   a flat-colour chart, a hue wheel) with one palette learned from the whole set against its own palette.

    python bench/palettes.py [FOLDER] [--workers 2] [--colors 16] [--scale 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import compileall
import dataclasses
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import icsd
from bench.throughput import HERE, camera_set_arguments, generate_camera_set, icsd_command, installed_package, run_batch
from icsd.core import CompressParams
from icsd.core.pipeline import decode_downsampled, palette_pixels


def main() -> int:
    args = camera_set_arguments(__doc__).parse_args()
    args.strategy = "kmeans"
    compileall.compile_dir(installed_package(), quiet=1)
    folder = args.folder or generate_camera_set(HERE / "out" / "camera")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    print(f"{len(files)} JPEGs in {folder}; {args.workers} workers, K={args.colors}, scale {args.scale:g}\n")
    learn_vs_batch(folder, args)
    params = CompressParams(colors=args.colors, scale=args.scale)
    images = [(p.name, palette_pixels(decode_downsampled(p.read_bytes(), params)[1], params)) for p in files]
    for k in sorted({args.colors, 64, 256}):
        apply_vs_fit(images, k, args.repeat)
    whole_image(files, params, args.repeat)
    price_of_consistency(images, args.colors)
    return 0


def learn_vs_batch(folder: Path, args: argparse.Namespace) -> None:
    learn_times, batch_times = [], []
    for _ in range(args.repeat):
        learn_times.append(run_learn(folder, args))
        batch_times.append(run_batch(folder, args)[0])
    learn, batch = statistics.median(learn_times), statistics.median(batch_times)
    print(f"{'1. whole commands':40} {'median s':>9} {'x batch':>8}")
    print(f"{'icsd batch':40} {batch:9.2f} {1.0:8.2f}")
    print(f"{'icsd palette learn':40} {learn:9.2f} {learn / batch:8.2f}")
    print(f"target: learn <= 1.2x batch -> {'met' if learn <= 1.2 * batch else 'NOT met'}\n")


def run_learn(folder: Path, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory(prefix="icsd-bench-") as out:
        command = [*icsd_command(), "palette", "learn", str(folder.resolve()), "-o", f"{out}/p.gpl",
                   "--workers", str(args.workers), "--colors", str(args.colors), "--scale", str(args.scale)]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd="/")
        return time.perf_counter() - started


def apply_vs_fit(images: list[tuple[str, np.ndarray]], k: int, repeat: int) -> None:
    palette = icsd.learn_palette([pixels for _, pixels in images], k).array()
    fit = apply = 0.0
    for _, pixels in images:
        fit += _median_seconds(lambda px=pixels: icsd.quantize(px, k), repeat)
        apply += _median_seconds(lambda px=pixels: icsd.quantize(px, palette=palette), repeat)
    n, verdict = len(images), "met" if apply <= 0.5 * fit else "NOT met"
    print(f"2. K={k:<3} per image: kmeans fit+map {1e3 * fit / n:7.2f} ms, map to a given palette "
          f"{1e3 * apply / n:7.2f} ms = {apply / fit:.2f}x (target <= 0.5x: {verdict})")


def whole_image(files: list[Path], params: CompressParams, repeat: int) -> None:
    """Time per image through the whole pipeline (decode, downsample, quantize, encode), one process."""
    blobs = [p.read_bytes() for p in files]
    palette = icsd.learn_palette(blobs, params.colors, params=params)
    shared = dataclasses.replace(params, palette=palette.entries)
    own = sum(_median_seconds(lambda b=blob: icsd.compress(b, params), repeat) for blob in blobs)
    common = sum(_median_seconds(lambda b=blob: icsd.compress(b, shared), repeat) for blob in blobs)
    n = len(blobs)
    print(f"   whole compress() per image, K={params.colors}: own palette {1e3 * own / n:7.1f} ms, shared palette "
          f"{1e3 * common / n:7.1f} ms = {common / own:.2f}x")


def price_of_consistency(images: list[tuple[str, np.ndarray]], k: int) -> None:
    """Per image: MSE with its own palette, with one learned from the whole mixed set, and (camera frames only)
    with one learned from the camera frames alone, a dataset of one kind."""
    mixed = [*images, *_mixed_extras(images[0][1])]
    started = time.perf_counter()
    shared = icsd.learn_palette([pixels for _, pixels in mixed], k).array()
    learn_ms = 1e3 * (time.perf_counter() - started)
    photos = icsd.learn_palette([pixels for _, pixels in images], k).array()
    print(f"\n3. price of consistency, K={k}: one palette learned from all {len(mixed)} images ({learn_ms:.0f} ms "
          f"from arrays), or from the {len(images)} camera frames only, vs each image's own")
    print(f"{'image':32} {'own MSE':>9} {'mixed-set':>10} {'x own':>6} {'photos-only':>12} {'x own':>6}")
    mixed_ratios, photo_ratios = [], []
    for number, (name, pixels) in enumerate(mixed):
        own = _mse(pixels, icsd.quantize(pixels, k).to_array())
        common = _mse(pixels, icsd.quantize(pixels, palette=shared).to_array())
        mixed_ratios.append(common / own if own else math.inf)
        line = f"{name:32} {own:9.1f} {common:10.1f} {mixed_ratios[-1]:6.2f}"
        if number < len(images):
            kind = _mse(pixels, icsd.quantize(pixels, palette=photos).to_array())
            photo_ratios.append(kind / own)
            line += f" {kind:12.1f} {photo_ratios[-1]:6.2f}"
        print(line)
    print(f"{'geometric mean ratio (finite)':32} {'':9} {'':10} {_geomean(mixed_ratios):6.2f} {'':12} "
          f"{_geomean(photo_ratios):6.2f}")


def _geomean(ratios: list[float]) -> float:
    finite = [r for r in ratios if math.isfinite(r) and r > 0]
    return math.exp(statistics.mean(map(math.log, finite)))


def _mixed_extras(photo: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Images unlike the camera frames: a grey photo (as RGB), a gradient, a flat chart, a hue wheel."""
    h, w = 300, 400
    grey = np.repeat(photo.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    y, x = np.mgrid[0:h, 0:w]
    gradient = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 128)], axis=2).astype(np.uint8)
    chart_colours = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                              [255, 255, 255]], dtype=np.uint8)
    chart = chart_colours[(x // 70 + y // 60) % len(chart_colours)]
    hue = np.arctan2(y - h / 2, x - w / 2) / (2 * np.pi) + 0.5
    wheel = np.stack([np.abs(hue * 6 - 3) - 1, 2 - np.abs(hue * 6 - 2), 2 - np.abs(hue * 6 - 4)], axis=2)
    wheel = (np.clip(wheel, 0, 1) * 255).astype(np.uint8)
    return [("grey photo", grey), ("gradient", gradient), ("flat chart (6 colours)", chart), ("hue wheel", wheel)]


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def _median_seconds(fn: object, repeat: int) -> float:
    times = []
    for _ in range(max(repeat, 3)):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
