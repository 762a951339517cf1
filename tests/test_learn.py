"""Learning one palette from a dataset: the binned histogram (exact merges), determinism, sampling, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import icsd
from icsd.core import BinnedHistogram, CompressParams, ParameterError, fit_dataset_palette
from icsd.core.quantization import compiled
from icsd.core.quantization.dataset import _numpy_bin_moments
from icsd.daemon.learn import LearnReport, learn_palette, spread_sample
from icsd.daemon.palettes import read_palette_file
from tests.harness import clean_env
from tests.images import gradient, sample_array, sample_bytes, write


def _photos() -> tuple[np.ndarray, np.ndarray]:
    return sample_array("china.jpg"), sample_array("flower.jpg")


def test_merged_binned_histogram_equals_the_histogram_of_the_concatenation() -> None:
    a, b = _photos()
    merged = BinnedHistogram.merge([BinnedHistogram.of_pixels(a), BinnedHistogram.of_pixels(b)])
    whole = BinnedHistogram.of_pixels(np.concatenate([a, b]))
    assert merged.equals(whole)
    assert merged.total == a.shape[0] * a.shape[1] + b.shape[0] * b.shape[1]
    # exact bin sums: every bin's sum is the sum of the pixels that fall in it
    flat = np.concatenate([a, b]).reshape(-1, 3).astype(np.int64)
    key = (flat[:, 0] >> 2) << 12 | (flat[:, 1] >> 2) << 6 | flat[:, 2] >> 2
    busiest = merged.keys[np.argmax(merged.counts)]
    assert merged.sums[np.argmax(merged.counts)].tolist() == flat[key == busiest].sum(axis=0).tolist()


def test_merging_grey_histograms_is_exact_over_256_levels() -> None:
    a, b = (image[..., 1] for image in _photos())
    merged = BinnedHistogram.merge([BinnedHistogram.of_pixels(b), BinnedHistogram.of_pixels(a)])
    assert merged.equals(BinnedHistogram.of_pixels(np.concatenate([a, b])))
    assert merged.sums[:, 0].tolist() == (merged.keys.astype(np.int64) * merged.counts).tolist()


def test_merge_order_does_not_matter() -> None:
    parts = [BinnedHistogram.of_pixels(p) for p in (*_photos(), gradient(64, 48))]
    assert BinnedHistogram.merge(parts).equals(BinnedHistogram.merge(parts[::-1]))


@pytest.mark.skipif(not compiled.AVAILABLE, reason="compares the compiled kernel with NumPy")
def test_compiled_and_numpy_binning_agree() -> None:
    a, _ = _photos()
    keys, counts, sums = _numpy_bin_moments(a)
    ours = BinnedHistogram.of_pixels(a)
    assert np.array_equal(ours.keys, keys) and np.array_equal(ours.counts, counts) and np.array_equal(ours.sums, sums)


def test_memory_is_bounded_by_the_bins_not_the_pixels() -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(1024, 1024, 3), dtype=np.uint8)
    merged = BinnedHistogram.merge([BinnedHistogram.of_pixels(noise)] * 3)
    assert merged.keys.size <= 1 << 18
    assert merged.nbytes <= 36 << 18  # 9.4 MB whatever the number of images


def test_learning_is_deterministic_across_one_and_two_workers(tmp_path: Path) -> None:
    files = [write(tmp_path / f"{n}.jpg", sample_bytes(name)) for n, name in enumerate(["china.jpg", "flower.jpg"] * 2)]
    one = learn_palette(files, 16, workers=1)
    two = learn_palette(files, 16, workers=2)
    assert one.entries == two.entries and len(one) == 16


def test_a_folder_stands_for_its_images(tmp_path: Path) -> None:
    write(tmp_path / "a" / "1.jpg", sample_bytes("china.jpg"))
    write(tmp_path / "a" / "b" / "2.jpg", sample_bytes("flower.jpg"))
    report = LearnReport()
    by_folder = learn_palette([tmp_path / "a"], 8, report=report)
    assert report.used == 2
    assert by_folder.entries == learn_palette([tmp_path / "a" / "1.jpg", tmp_path / "a" / "b" / "2.jpg"], 8).entries


def test_learning_from_arrays_fits_the_merged_histogram() -> None:
    a, b = _photos()
    merged = BinnedHistogram.merge([BinnedHistogram.of_pixels(a), BinnedHistogram.of_pixels(b)])
    assert icsd.learn_palette([a, b], 8).entries == fit_dataset_palette(merged, 8).entries


def test_a_palette_fits_the_dataset_better_than_one_image_alone() -> None:
    a, b = _photos()
    shared = icsd.learn_palette([a, b], 16)
    alone = icsd.learn_palette([a], 16)

    def error(palette: icsd.Palette) -> float:
        return float(np.mean((icsd.quantize(b, palette=palette.array()).to_array() - b.astype(float)) ** 2))

    assert error(shared) < error(alone)


def test_files_are_decoded_and_downsampled_like_the_pipeline(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jpg", sample_bytes())
    report = LearnReport()
    learn_palette([path], 4, params=CompressParams(scale=10), report=report)
    assert report.pixels == 64 * 43  # 640x427 at factor 10, as icsd batch makes it


def test_grey_learning_gives_grey_entries(tmp_path: Path) -> None:
    palette = learn_palette([write(tmp_path / "a.jpg", sample_bytes())], 6, params=CompressParams(grayscale=True))
    assert palette.grey and len(palette) == 6


def test_unreadable_images_are_skipped_and_none_usable_is_an_error(tmp_path: Path) -> None:
    good, bad = write(tmp_path / "a.jpg", sample_bytes()), write(tmp_path / "b.jpg", b"not an image")
    report = LearnReport()
    assert len(learn_palette([good, bad], 4, report=report)) == 4
    assert report.used == 1 and report.skipped[0][0] == str(bad)
    with pytest.raises(ParameterError, match="no usable image"):
        learn_palette([bad], 4)


def test_sample_spreads_over_the_whole_list_and_follows_the_seed() -> None:
    items = list(range(1000))
    picked = spread_sample(items, 10, seed=1)
    assert [p // 100 for p in picked] == list(range(10))  # one from each tenth
    assert picked == spread_sample(items, 10, seed=1) and picked != spread_sample(items, 10, seed=2)
    assert spread_sample(items[:3], 10, seed=0) == items[:3]


def _learn(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "icsd", "palette", "learn", *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_cli_learns_writes_each_format_and_skips_bad_files(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for n in range(4):
        write(photos / f"d{n}" / f"{n}.jpg", sample_bytes(["china.jpg", "flower.jpg"][n % 2]))
    write(photos / "broken.jpg", b"junk")
    for suffix in (".gpl", ".png", ".json"):
        out = tmp_path / f"palette{suffix}"
        done = _learn(str(photos), "-o", str(out), "--colors", "8", "--sample", "3", "--workers", "2", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert len(read_palette_file(out)) == 8
        assert f"-> {out}" in done.stdout.splitlines()[-1]
    assert read_palette_file(tmp_path / "palette.gpl").entries == read_palette_file(tmp_path / "palette.png").entries
    everything = _learn(str(photos), "-o", "all.gpl", "--colors", "8", cwd=tmp_path)
    assert "skipped" in everything.stderr and "broken.jpg" in everything.stderr
    assert "from 4 images, 1 skipped" in everything.stdout


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = _learn("empty", "-o", "p.gpl", cwd=tmp_path)
    assert done.returncode == 66
    assert done.stderr.strip() == "icsd: error: no images in empty: nothing to learn a palette from"
    write(tmp_path / "one" / "a.jpg", sample_bytes())
    done = _learn("one", "-o", "p.txt", cwd=tmp_path)
    assert done.returncode == 64 and "give a .gpl, .png or .json file name" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = _learn("one", "-o", "p.gpl", "--strategy", "SO", cwd=tmp_path)
    assert done.returncode == 64 and "size-only does no colour clustering" in done.stderr
    done = _learn("one", "-o", "p.gpl", "--colours", "8", cwd=tmp_path)
    assert done.returncode == 64 and "did you mean --colors?" in done.stderr
