"""ICSD_PALETTE: every image of a batch mapped to exactly one palette, every output carrying its PLTE as given."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icsd.core import CompressParams, Palette, ParameterError, compress
from tests.harness import clean_env
from tests.images import MODE_SAMPLES, encode, mode_sample, png_bit_depth, png_chunks, sample_bytes, write

# 8 colours, in no sorted order; pure magenta is used by none of the test images and must stay all the same.
ENTRIES = ((250, 250, 250), (20, 20, 20), (255, 0, 255), (200, 60, 30), (40, 90, 160), (90, 140, 60),
           (150, 150, 150), (230, 200, 120))


def _icsd(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "icsd", *args], cwd=cwd, env=clean_env(**env), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def _mixed_inputs(folder: Path) -> None:
    write(folder / "china.jpg", sample_bytes("china.jpg"))
    write(folder / "deep" / "flower.jpg", sample_bytes("flower.jpg"))
    for mode in ("L", "RGBA", "P", "1", "CMYK"):
        write(folder / f"{mode}.{MODE_SAMPLES[mode].lower()}", encode(mode_sample(mode, (60, 40)), MODE_SAMPLES[mode]))


def test_every_output_of_a_batch_has_the_identical_plte(tmp_path: Path) -> None:
    _mixed_inputs(tmp_path / "in")
    (tmp_path / "shared.gpl").write_bytes(Palette(ENTRIES).encode(".gpl"))
    done = _icsd("batch", "in", "--output-dir", "out", "--scale", "2", cwd=tmp_path, ICSD_PALETTE="shared.gpl")
    assert done.returncode == 0, done.stderr
    outputs = sorted((tmp_path / "out").rglob("*.png"))
    assert len(outputs) == 7
    plte = Palette(ENTRIES).rgb_bytes()
    for path in outputs:
        data = path.read_bytes()
        assert dict(png_chunks(data))[b"PLTE"] == plte, path.name  # byte-identical, same order, unused kept
        with Image.open(path) as image:
            assert image.mode == "P"
            used = {tuple(rgb) for _, rgb in image.convert("RGB").getcolors()}
        assert used <= set(ENTRIES) and (255, 0, 255) not in used


def test_a_palette_with_fewer_colours_than_k_is_used_as_given(tmp_path: Path) -> None:
    write(tmp_path / "china.jpg", sample_bytes())
    three = ((10, 10, 10), (240, 240, 240), (128, 90, 60))
    (tmp_path / "three.json").write_bytes(Palette(three).encode(".json"))
    done = _icsd("compress", "china.jpg", "-o", "out.png", "--colors", "64", "--palette", "three.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 colours" in done.stdout
    data = (tmp_path / "out.png").read_bytes()
    assert dict(png_chunks(data))[b"PLTE"] == Palette(three).rgb_bytes() and png_bit_depth(data) == 2


def test_mapping_is_the_exact_nearest_entry() -> None:
    result = compress(sample_bytes("flower.jpg"), CompressParams(palette=ENTRIES, scale=4))
    with Image.open(io.BytesIO(result.data)) as image:
        indices = np.asarray(image)
    pixels = _small("flower.jpg", 4).astype(np.int64)
    distances = ((pixels[:, :, None, :] - np.array(ENTRIES, dtype=np.int64)[None, None]) ** 2).sum(axis=3)
    assert np.array_equal(indices, distances.argmin(axis=2))


def _small(name: str, scale: int) -> np.ndarray:
    from icsd.core.pipeline import decode_downsampled

    return np.asarray(decode_downsampled(sample_bytes(name), CompressParams(scale=scale))[1])


def test_grayscale_uses_a_grey_palette_and_refuses_colours(tmp_path: Path) -> None:
    greys = tuple((v, v, v) for v in (0, 60, 120, 180, 240))
    result = compress(sample_bytes(), CompressParams(grayscale=True, palette=greys))
    assert dict(png_chunks(result.data))[b"PLTE"] == Palette(greys).rgb_bytes()
    with pytest.raises(ParameterError, match="palette of greys"):
        CompressParams(grayscale=True, palette=ENTRIES)
    with pytest.raises(ParameterError, match="size-only"):
        CompressParams(strategy="size-only", palette=ENTRIES)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "cannot read the palette file"), (b"GIMP Palette\n", "the palette has no colours"),
     (("GIMP Palette\n" + "0 0 0\n" * 300).encode(), "more than 256")],
)
def test_a_bad_palette_file_stops_startup_with_one_line(tmp_path: Path, content: bytes | None, reason: str) -> None:
    write(tmp_path / "in" / "a.jpg", sample_bytes())
    if content is not None:
        (tmp_path / "p.gpl").write_bytes(content)
    done = _icsd("batch", "in", "--output-dir", "out", cwd=tmp_path, ICSD_PALETTE="p.gpl")
    assert done.returncode == 78
    assert done.stderr.startswith("icsd: error: ICSD_PALETTE file p.gpl: ") and reason in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "a.png").exists()


def test_learned_palette_round_trip_through_batch(tmp_path: Path) -> None:
    """The workflow of docs/palettes.md: learn from a folder, then batch it with the palette."""
    _mixed_inputs(tmp_path / "in")
    learned = _icsd("palette", "learn", "in", "-o", "learned.png", "--colors", "12", cwd=tmp_path)
    assert learned.returncode == 0, learned.stderr
    done = _icsd("batch", "in", "--output-dir", "out", cwd=tmp_path, ICSD_PALETTE="learned.png")
    assert done.returncode == 0, done.stderr
    plte = {dict(png_chunks(p.read_bytes()))[b"PLTE"] for p in (tmp_path / "out").rglob("*.png")}
    assert plte == {dict(png_chunks((tmp_path / "learned.png").read_bytes()))[b"PLTE"]}
