"""`icsd compare` as a user runs it: the page, the sheet, bad input, bad flags and files it must not replace."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from icsd import __version__
from icsd.core import CompressParams, compress
from icsd.report.measure import CROP
from icsd.report.page import PageInputs, render_page
from icsd.report.plot import INSTALL_HINT, bytes_psnr_svg
from icsd.report.sheet import GAP, TILE, TITLE
from tests.compare_run import icsd
from tests.harness import write_image

LABELS = ["MKM K4", "MKM K16", "FKM K4", "FKM K16", "MBKM K4", "MBKM K16"]


def test_the_page_is_written_with_a_row_per_image_and_the_errors(compare_run: Any) -> None:
    done = compare_run.done
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"compared 5 images, 3 unreadable x 7 variants in [\d.]+ s -> \S+report\.html \([\d.]+ KiB\), "
                        r"\S+sheet\.png \([\d.]+ KiB\)\n", done.stdout)
    rows = {row["name"]: row for row in compare_run.results}  # named below the folder given
    assert sorted(rows) == ["china.jpg", "cut.jpg", "flower.jpg", "notes.jpg", "pipe.jpg"]
    assert "not a regular file" in rows["pipe.jpg"]["error"]
    assert "not an image" in rows["notes.jpg"]["error"]
    assert rows["cut.jpg"]["error"]
    html = compare_run.html
    for name in ("notes.jpg", "cut.jpg", "pipe.jpg"):  # each error is one line in its own row
        row = rf'<div class="image failed"><h3>{re.escape(name)}</h3><p class="error">[^<\n]+</p>'
        assert re.search(row, html)
    for name in ("china.jpg", "flower.jpg"):
        assert sorted(rows[name]["variants"]) == sorted(["SO", *LABELS])
        assert rows[name]["reference"]["psnr"] is None and rows[name]["reference"]["ssim"] == 1.0  # inf: not JSON


def test_the_numbers_are_the_cores(compare_run: Any) -> None:
    # What the page says is what `batch` writes: the same compress() with the same parameters.
    data = (compare_run.folder / "china.jpg").read_bytes()
    china = next(row for row in compare_run.results if row["name"] == "china.jpg")
    for label, strategy, colors in (("MKM K16", "kmeans", 16), ("MBKM K4", "sklearn-minibatch", 4)):
        result = compress(data, CompressParams(strategy=strategy, colors=colors, scale=4))
        shown = china["variants"][label]
        assert (shown["output_bytes"], shown["colors"], shown["output_size"]) == (
            result.output_bytes, result.colors, list(result.output_size))
        assert 20 < shown["psnr"] < 50 and 0.3 < shown["ssim"] < 1
    k4, k16 = china["variants"]["MKM K4"], china["variants"]["MKM K16"]
    assert k4["psnr"] < k16["psnr"] and k4["ssim"] < k16["ssim"]  # more colours, closer to the original


def test_the_page_is_self_contained_and_complete(compare_run: Any) -> None:
    html = compare_run.html
    sources = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert len(sources) == 2 * 2 * 7  # 2 images x 7 tiles x (preview + crop)
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert not re.search(r'(?:src|href)="(?!data:|#)', html)  # nothing to fetch, no link out
    assert "default-src 'none'" in html
    assert len(re.findall(r"<tr><td>", html)) == 7  # the table: one row per variant
    assert re.search(r'<figure id="plot-svg"><svg', html)
    assert f"icsd {__version__}" in html and "scale 4" in html
    assert "icsd compare " in html and "--colors 4,16" in html


def test_the_sheet_has_a_tile_per_variant(compare_run: Any) -> None:
    with Image.open(compare_run.sheet) as sheet:
        assert sheet.info["Software"] == f"icsd compare {__version__}"
        assert sheet.width == GAP + 7 * (TILE + GAP)
        pixels = sheet.convert("RGB")
        top = GAP + TITLE  # china.jpg's row comes first (names sorted); its first tile is the original's crop
        tile = pixels.crop((GAP, top, GAP + TILE, top + TILE))
        assert len(tile.getcolors(1 << 16) or []) > 50  # a photo's crop, not blank
    assert TILE == 3 * CROP


@pytest.mark.parametrize(("flag", "value", "code", "named"), [
    ("--colors", "8,300", 64, "--colors"), ("--strategies", "MKM,XKM", 64, "--strategies"),
    ("--dither", "sierra", 64, "--dither"), ("--sample", "0", 64, "--sample"), ("--scale", "0.5", 78, "--scale"),
])
def test_bad_flags_fail_in_one_line(tmp_path: Path, flag: str, value: str, code: int, named: str) -> None:
    write_image(tmp_path / "a.jpg")
    done = icsd("compare", "a.jpg", flag, value, cwd=tmp_path)
    assert done.returncode == code
    error = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and named in error[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "compare.html").exists()


def test_a_missing_input_is_exit_66(tmp_path: Path) -> None:
    done = icsd("compare", "nothing-here", cwd=tmp_path)
    assert done.returncode == 66 and "nothing-here does not exist" in done.stderr


def test_a_file_icsd_did_not_write_is_kept_unless_force(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg")
    mine = tmp_path / "notes.html"
    mine.write_text("my notes\n")
    fast = ("--strategies", "MKM", "--colors", "4", "--scale", "8", "--workers", "1")
    done = icsd("compare", "a.jpg", "-o", "notes.html", *fast, cwd=tmp_path)
    assert done.returncode == 73 and "not written by icsd compare" in done.stderr and "--force" in done.stderr
    assert mine.read_text() == "my notes\n"
    (tmp_path / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\nsomeone else's")
    done = icsd("compare", "a.jpg", "--sheet", "pic.png", *fast, cwd=tmp_path)
    assert done.returncode == 73 and not (tmp_path / "compare.html").exists()
    assert icsd("compare", "a.jpg", "-o", "notes.html", "--force", *fast, cwd=tmp_path).returncode == 0
    assert "icsd compare" in mine.read_text()
    again = icsd("compare", "a.jpg", "-o", "notes.html", *fast, cwd=tmp_path)  # its own page: replaced
    assert again.returncode == 0, again.stderr


def test_without_matplotlib_the_page_says_how_to_get_the_plot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: importing it fails
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    svg = bytes_psnr_svg({"MKM": [(4, 1000, 25.0), (16, 2000, 30.0)]})
    assert svg is None
    html = render_page(PageInputs(rows=[], variants=[], totals=[], plot_svg=svg, settings={"scale": "5"},
                                  command="icsd compare x", seconds=0.0))
    assert INSTALL_HINT in html.replace("&#x27;", "'") and 'id="plot-missing"' in html
    assert 'id="totals"' in html and 'id="settings"' in html


def test_arguments_are_listed_in_help(tmp_path: Path) -> None:
    done = icsd("compare", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for flag in ("--colors", "--strategies", "--dither", "--sample", "--sheet", "--force", "--max-size", "--size"):
        assert flag in done.stdout
    assert "--on-success" not in done.stdout  # the daemon's flags are not compare's


def test_files_sample_and_grayscale(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg")
    write_image(tmp_path / "b.jpg")
    done = icsd("compare", "a.jpg", "b.jpg", "--sample", "1", "--grayscale", "--strategies", "SO,MKM",
                "--colors", "4", "--scale", "8", "--workers", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "compare.html").read_text()
    results = json.loads(re.search(r'id="results">(.*?)</script>', page).group(1))  # type: ignore[union-attr]
    assert [row["name"] for row in results] == ["a.jpg"]  # named as given; 1 of 2, the first in name order
    grey = results[0]["variants"]["MKM K4"]
    assert grey["colors"] == 4 and 0 < grey["ssim"] < 1 and grey["psnr"] > 15
    assert "grayscale</dt><dd>yes" in page and "--grayscale" in page and "--sample 1" in page
