"""Benchmark the colour quantizers against scikit-learn on raw pixels and libimagequant.

    .venv/bin/python bench/quantizers.py [FOLDER] [--sets synthetic,photos] [--repeat 3] [--colors 16,64,256]
                                         [--only kmeans,liq] [--threads 1] [--quick]

Two image sets, each reported on its own: `synthetic`, camera-size frames made from scikit-learn's two photos
with sensor-like noise (bench/images.py; or the images of FOLDER), downsampled 5x (box filter) as the
pipeline does by default; and `photos`, real photographs (bench/photos.py: scikit-image's data photos,
scikit-learn's china/flower, two gnome-backgrounds wallpapers downsampled 5x). A photo above 1 MP
(scikit-image's retina, 2 MP) is box-reduced 2x more, for every method alike, to bound raw-pixel KMeans'
time at K = 256. The raw-pixel scikit-learn references (deterministic, seconds per image) run once per
image; every other method --repeat times, interleaved. For every K and set the table shows, per method:
the median time over images (each image's time is the median of --repeat runs),
the geometric-mean MSE, and both as ratios to raw-pixel scikit-learn KMeans and to libimagequant
measured in the same run (time ratios are the median of per-image ratios; MSE ratios the geometric
mean of per-image ratios). MSE is that of the uint8 palette image each method produces; for the
scikit-learn references the rounded centres are assigned exactly, as icsd does. libimagequant runs
without dithering (no other method dithers) and its C call alone is timed.

Threads are capped at 1 by default (--threads 0: library defaults), as in the daemon, whose executor
runs one single-threaded worker per core; on a shared 2-core machine OpenMP spin-waiting also makes
multi-threaded timings erratic.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.images import BenchImage, downsample, load_images
from bench.photos import photographs
from icsd.core.quantization import quantize
from icsd.core.quantization.nearest import nearest
from icsd.core.quantization.sklearn_backend import N_INIT

# A method maps (image, K) to a zero-argument callable doing the timed work, plus a function turning
# what that callable returned into the quantized image (untimed).
Prepared = tuple[Callable[[], object], Callable[[object], np.ndarray]]
Method = Callable[[np.ndarray, int], Prepared]

REF_KMEANS = "sklearn KMeans (pixels)"
REF_LIQ = "libimagequant"
REF_MINIBATCH = "sklearn MiniBatch (pixels)"
_RUN_ONCE = {REF_KMEANS, REF_MINIBATCH}  # slow and deterministic: their time is that of one run
MAX_PIXELS = 1_000_000  # a photo above this is box-reduced 2x (for every method) before the benchmark


def _icsd(strategy: str) -> Method:
    def prepare(img: np.ndarray, k: int) -> Prepared:
        return (lambda: quantize(img, k, strategy, seed=0)), (lambda q: q.to_array())  # type: ignore[attr-defined]

    return prepare


def _sklearn_raw(minibatch: bool) -> Method:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    def prepare(img: np.ndarray, k: int) -> Prepared:
        x = img.reshape(-1, 3).astype(np.float64)
        cls = MiniBatchKMeans if minibatch else KMeans
        return (lambda: cls(n_clusters=k, n_init=N_INIT, random_state=0).fit(x)), (
            lambda model: _palette_image(img, model.cluster_centers_)  # type: ignore[attr-defined]
        )

    return prepare


def _liq(img: np.ndarray, k: int) -> Prepared:
    import imagequant

    h, w, _ = img.shape
    rgba = np.dstack([img, np.full((h, w), 255, np.uint8)]).tobytes()

    def run() -> object:
        return imagequant.quantize_raw_rgba_bytes(rgba, w, h, dithering_level=0.0, max_colors=k)

    def to_array(out: object) -> np.ndarray:
        data, pal = out  # type: ignore[misc]
        palette = np.asarray(pal, dtype=np.uint8).reshape(-1, 4)[:, :3]
        return palette[np.frombuffer(data, dtype=np.uint8).reshape(h, w)]

    return run, to_array


def _pillow(method: Image.Quantize) -> Method:
    def prepare(img: np.ndarray, k: int) -> Prepared:
        im = Image.fromarray(img)
        return (lambda: im.quantize(k, method=method, dither=Image.Dither.NONE)), (
            lambda out: np.asarray(out.convert("RGB"))  # type: ignore[attr-defined]
        )

    return prepare


def _palette_image(img: np.ndarray, centres: np.ndarray) -> np.ndarray:
    palette = np.clip(np.rint(centres), 0, 255)
    labels, _ = nearest(img.reshape(-1, 3).astype(np.float64), palette)
    return palette.astype(np.uint8)[labels].reshape(img.shape)


METHODS: dict[str, Method] = {
    "icsd kmeans": _icsd("kmeans"),
    "icsd sklearn-kmeans": _icsd("sklearn-kmeans"),
    "icsd sklearn-minibatch": _icsd("sklearn-minibatch"),
    REF_KMEANS: _sklearn_raw(minibatch=False),
    REF_MINIBATCH: _sklearn_raw(minibatch=True),
    REF_LIQ: _liq,
    "Pillow median cut": _pillow(Image.Quantize.MEDIANCUT),
    "Pillow fast octree": _pillow(Image.Quantize.FASTOCTREE),
}


def measure(
    images: list[BenchImage], k: int, repeat: int, methods: dict[str, Method]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """method -> (per-image median seconds, per-image MSE); repeats interleave methods to share noise."""
    times = {m: np.zeros((len(images), repeat)) for m in methods}
    mses = {m: np.zeros(len(images)) for m in methods}
    for i, (_, img, _) in enumerate(images):
        prepared = {m: prep(img, k) for m, prep in methods.items()}
        for r in range(repeat):
            for m, (run, to_array) in prepared.items():
                if r and m in _RUN_ONCE:
                    times[m][i, r] = times[m][i, 0]
                    continue
                t0 = time.perf_counter()
                out = run()
                times[m][i, r] = time.perf_counter() - t0
                if r == 0:
                    diff = to_array(out).astype(np.float64) - img
                    mses[m][i] = max(float(np.mean(diff * diff)), 1e-9)
    return {m: (np.median(times[m], axis=1), mses[m]) for m in methods}


def _gmean(x: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(x))))


def report(k: int, results: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    ref_t, ref_e = results[REF_KMEANS]
    liq_t, liq_e = results[REF_LIQ]
    print(f"\nK = {k}")
    header = f"{'method':<28}{'time ms':>9}{'t/KMeans':>10}{'t/liq':>8}{'MSE':>9}{'MSE/KMeans':>12}{'MSE/liq':>9}"
    print(header)
    print("-" * len(header))
    for m, (t, e) in results.items():
        print(
            f"{m:<28}{1e3 * np.median(t):>9.1f}{np.median(t / ref_t):>10.3f}{np.median(t / liq_t):>8.2f}"
            f"{_gmean(e):>9.2f}{_gmean(e / ref_e):>12.3f}{_gmean(e / liq_e):>9.3f}"
        )


def per_image(k: int, names: list[str], results: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Per-image time ratios of the icsd methods, so the medians above can be read in context."""
    print(f"  per image (t/KMeans | t/liq): {', '.join(names)}")
    for m, (t, _) in results.items():
        if m.startswith("icsd"):
            ref = "  ".join(
                f"{a:.3f}|{b:.2f}" for a, b in zip(t / results[REF_KMEANS][0], t / results[REF_LIQ][0], strict=True)
            )
            print(f"  {m:<26}{ref}")


def peak_memory(images: list[BenchImage], ks: list[int]) -> None:
    """Peak memory traced during icsd kmeans (NumPy reports its buffers to tracemalloc), as a multiple of
    the quantizer's input and of the decoded full-size image the pipeline downsampled it from."""
    print("\nicsd kmeans peak added memory (tracemalloc), x input (downsampled) / x decoded original:")
    for name, img, decoded in images:
        cells = []
        for k in ks:
            tracemalloc.start()
            quantize(img, k, "kmeans")
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            cells.append(f"K={k}: {peak / img.nbytes:5.1f}x / {peak / decoded:4.2f}x")
        print(f"  {name:<20} {img.shape[1]}x{img.shape[0]} ({img.nbytes / 1e3:.0f} kB)  " + "  ".join(cells))


def photo_images() -> list[BenchImage]:
    """bench/photos.py's photographs and two wallpapers, any above MAX_PIXELS box-reduced 2x."""
    images = []
    for name, pixels in photographs(wallpapers=2):
        decoded = pixels.nbytes
        if pixels.shape[0] * pixels.shape[1] > MAX_PIXELS:
            pixels = downsample(pixels, 2)
        images.append(BenchImage(name, pixels, decoded))
    return images


def summary(rows: list[tuple[int, str, dict[str, tuple[np.ndarray, np.ndarray]]]]) -> None:
    """icsd kmeans on every set side by side: the issue's targets are per set (MSE <= 1.00x raw KMeans,
    time <= 0.2x libimagequant at K = 16 and <= 0.7x at K = 256)."""
    sets = list(dict.fromkeys(name for _, name, _ in rows))
    print("\nicsd kmeans, per set: median ms | time x libimagequant (median) | MSE x raw-pixel KMeans (geo-mean)")
    print(f"{'K':>5}" + "".join(f"{name:>32}" for name in sets))
    for k in dict.fromkeys(k for k, _, _ in rows):
        cells = []
        for name in sets:
            results = next(r for kk, nn, r in rows if kk == k and nn == name)
            t, e = results["icsd kmeans"]
            ratio_t = np.median(t / results[REF_LIQ][0])
            cells.append(f"{1e3 * np.median(t):>9.1f} ms {ratio_t:>6.2f}x  {_gmean(e / results[REF_KMEANS][1]):>8.4f}")
        print(f"{k:>5}" + "".join(f"{c:>32}" for c in cells))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, help="synthetic set's images (default: made)")
    parser.add_argument("--sets", default="synthetic,photos", help="comma-separated: synthetic, photos")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per image and method (median kept)")
    parser.add_argument("--colors", default="16,64,256", help="comma-separated palette sizes K")
    parser.add_argument("--only", default="", help="comma-separated substrings of method names (references always run)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (0: library default)")
    parser.add_argument("--quick", action="store_true", help="two images, one timed run: a smoke test")
    args = parser.parse_args(argv)
    ks = [int(c) for c in args.colors.split(",")]
    wanted = [w for w in args.only.split(",") if w]
    methods = {
        m: prep
        for m, prep in METHODS.items()
        if not wanted or m in (REF_KMEANS, REF_LIQ) or any(w in m for w in wanted)
    }
    repeat = 1 if args.quick else args.repeat
    sets: dict[str, list[BenchImage]] = {}
    for name in args.sets.split(","):
        if name not in ("synthetic", "photos"):
            raise SystemExit(f"--sets: unknown set {name!r} (synthetic, photos)")
        images = photo_images() if name == "photos" else load_images(args.folder)
        sets[name] = images[:2] if args.quick else images
    rows = []
    for name, images in sets.items():
        print(f"\n== {name}: {len(images)} images, {repeat} timed run(s) each:")
        for image, img, _ in images:
            n_colors = np.unique(img.reshape(-1, 3), axis=0).shape[0]
            print(f"  {image:<22} {img.shape[1]}x{img.shape[0]}  {n_colors} distinct colours")
        with threadpool_limits(limits=args.threads or None):
            for k in ks:
                results = measure(images, k, repeat, methods)
                print(f"\n[{name}]", end="")
                report(k, results)
                per_image(k, [image.name for image in images], results)
                rows.append((k, name, results))
                sys.stdout.flush()
    summary(rows)
    if not args.quick:
        for images in sets.values():
            peak_memory(images, ks)


if __name__ == "__main__":
    main()
