"""Whole-pipeline throughput: `icsd batch` against merely decoding the same JPEGs at full size.

Target (issue 5): `icsd batch` over camera-size JPEGs with 2 workers, K=16, factor 5 finishes in
<= 1.0x the time one process needs just to decode those images at full size with Pillow.

Both are measured in this run, interleaved (decode, batch, decode, batch, ...) so machine noise
hits both alike; medians and the ratio are printed. The batch time is reported twice: the whole
`icsd batch` command (interpreter start, imports, worker start-up, until its process exits) and the engine's own
runtime from its summary line (from the service start to the last image written, 0.1 s resolution).
The decode-only side is also timed as a command of its own (a fresh `python -c` that imports Pillow
and decodes the files), the like-for-like reference for the whole `icsd batch` command.

    python bench/throughput.py [FOLDER] [--workers 2] [--colors 16] [--scale 5] [--repeat 3]

Without FOLDER, 15 camera-like JPEGs of 4-15 MP are generated once into bench/out/camera/
(scikit-learn's sample photos upscaled, with sensor-like noise so they compress like real photos).
"""

from __future__ import annotations

import argparse
import compileall
import io
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.images import CAMERA_SIZES, sample_images

HERE = Path(__file__).resolve().parent
def camera_set_arguments(description: str | None) -> argparse.ArgumentParser:
    """The flags every benchmark over the camera set shares: its folder, workers, K, scale and repeats."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, help="folder of JPEGs [default: generated camera set]")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--colors", type=int, default=16)
    parser.add_argument("--scale", type=float, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="measurements of each side (median taken)")
    return parser


def main() -> int:
    parser = camera_set_arguments(__doc__)
    parser.add_argument("--strategy", default="kmeans")
    args = parser.parse_args()

    # Installed code runs from compiled bytecode (pip compiles it; `make` does for the editable install):
    # measure that, not a first start that compiles icsd's sources (PYTHONDONTWRITEBYTECODE keeps it so).
    compileall.compile_dir(installed_package(), quiet=1)
    folder = args.folder or generate_camera_set(HERE / "out" / "camera")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        sys.exit(f"no JPEGs in {folder}")
    megapixels = sum(_pixels(p) for p in files) / 1e6
    print(
        f"{len(files)} JPEGs, {megapixels:.0f} MP, {sum(p.stat().st_size for p in files) / 2**20:.0f} MiB "
        f"in {folder}; icsd batch: {args.workers} workers, K={args.colors}, scale {args.scale:g}, "
        f"{args.strategy}"
    )

    decode_times, decode_command_times, command_times, engine_times = [], [], [], []
    for round_ in range(args.repeat):
        decode_times.append(decode_all(files))
        command, engine = run_batch(folder, args)
        decode_command_times.append(decode_command(files))
        command_times.append(command)
        engine_times.append(engine)
        print(
            f"  round {round_ + 1}: decode-only {decode_times[-1]:.2f} s (as a command "
            f"{decode_command_times[-1]:.2f} s) | icsd batch {command:.2f} s (engine {engine:.2f} s)"
        )

    decode, decode_cmd, command, engine = (
        statistics.median(t) for t in (decode_times, decode_command_times, command_times, engine_times)
    )
    print()
    print(f"{'':42} {'median s':>9} {'x decode-only':>14} {'x decode command':>17}")
    rows = [
        ("decode-only, in one process, full size", decode),
        ("decode-only as a command (python -c)", decode_cmd),
        ("icsd batch, whole command", command),
        ("icsd batch, engine runtime", engine),
    ]
    for label, seconds in rows:
        print(f"{label:42} {seconds:9.2f} {seconds / decode:14.2f} {seconds / decode_cmd:17.2f}")
    print(
        f"target: icsd batch <= 1.00x decode-only -> engine {'met' if engine <= decode else 'NOT met'}; "
        f"whole command vs in-process decode {'met' if command <= decode else 'NOT met'}, "
        f"vs decode command {'met' if command <= decode_cmd else 'NOT met'}"
    )
    return 0


def decode_all(files: list[Path]) -> float:
    """Seconds for one process to decode every file at full size (the floor a naive pipeline pays)."""
    started = time.perf_counter()
    for path in files:
        with Image.open(path) as image:
            image.load()
    return time.perf_counter() - started


DECODE_SCRIPT = """\
import sys
from PIL import Image
for path in sys.argv[1:]:
    with Image.open(path) as image:
        image.load()
"""


def decode_command(files: list[Path]) -> float:
    """Seconds for a fresh interpreter to import Pillow and decode every file at full size."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", DECODE_SCRIPT, *map(str, files)], check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def icsd_command() -> list[str]:
    """The installed `icsd` command beside this interpreter (what users type), else `python -m icsd`."""
    script = Path(sys.executable).with_name("icsd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "icsd"]


def installed_package() -> Path:
    """The icsd package folder the command imports (run from /, so not a checkout in the current folder)."""
    where = subprocess.run([sys.executable, "-c", "import icsd; print(icsd.__file__)"], cwd="/", check=True,
                           capture_output=True, text=True)
    return Path(where.stdout.strip()).parent


def run_batch(folder: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(whole command seconds, engine runtime seconds) for one `icsd batch` into a fresh output folder."""
    with tempfile.TemporaryDirectory(prefix="icsd-bench-") as out:
        command = [
            *icsd_command(),
            "batch",
            str(folder.resolve()),
            "--output-dir",
            out,
            "--workers",
            str(args.workers),
            "--colors",
            str(args.colors),
            "--scale",
            str(args.scale),
            "--strategy",
            args.strategy,
            "--log-level",
            "INFO",
        ]
        # The log goes to a file, as under `time icsd batch ... 2>log`: the command is done when its process
        # exits (the idle fork server then tears itself down in the background, ~30 ms more on a pipe).
        with tempfile.TemporaryFile("w+") as log:
            started = time.perf_counter()
            done = subprocess.run(command, stderr=log, stdin=subprocess.DEVNULL, cwd="/", check=False)
            elapsed = time.perf_counter() - started
            log.seek(0)
            stderr = log.read()
    if done.returncode != 0:
        sys.exit(f"icsd batch failed ({done.returncode}):\n{stderr}")
    match = re.search(r"runtime (\d+):(\d\d):(\d\d\.\d)\s*$", stderr.strip().splitlines()[-1])
    engine = int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3)) if match else elapsed
    return elapsed, engine


def generate_camera_set(folder: Path) -> Path:
    """15 camera-like JPEGs (4-15 MP, quality 92) made from scikit-learn's sample photos; cached."""
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == len(CAMERA_SIZES):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for index, (name, pixels) in enumerate(sample_images(CAMERA_SIZES)):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=92)
        (folder / f"camera_{index:02d}_{name}.jpg").write_bytes(buffer.getvalue())
    return folder


def _pixels(path: Path) -> int:
    with Image.open(path) as image:
        return image.width * image.height


if __name__ == "__main__":
    sys.exit(main())
