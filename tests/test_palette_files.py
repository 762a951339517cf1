"""Palette files: GIMP .gpl (as people write them by hand), swatch PNGs, JSON; and the errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icsd.core import Palette, ParameterError, compress
from icsd.core.params import CompressParams
from icsd.daemon.palettes import read_palette_file, write_palette_file
from icsd.errors import SettingsError
from tests.images import png_chunks, sample_bytes

ENTRIES = ((0, 0, 0), (255, 128, 7), (12, 200, 99))

HAND_WRITTEN_GPL = (
    "GIMP Palette\r\n"
    "Name: My  site colours\r\n"
    "Columns: 3\r\n"
    "# a comment, then a blank line\r\n"
    "\r\n"
    "  0   0   0\tBlack\r\n"
    "255 128 7     orange: warm\r\n"
    "#  12 200 99 commented out\r\n"
    "\t12\t200  99\r\n"
)


@pytest.mark.parametrize("suffix", [".gpl", ".png", ".json"])
def test_every_format_round_trips_entry_for_entry(suffix: str) -> None:
    palette = Palette(ENTRIES, "three")
    assert Palette.decode(palette.encode(suffix), suffix).entries == ENTRIES


def test_a_hand_written_gimp_palette_loads(tmp_path: Path) -> None:
    path = tmp_path / "site.gpl"
    path.write_bytes(HAND_WRITTEN_GPL.encode())
    palette = read_palette_file(path)
    assert palette.entries == ENTRIES
    assert palette.name == "My  site colours"


def test_gimp_writes_what_gimp_reads() -> None:
    lines = Palette(ENTRIES, "x").encode(".gpl").decode().splitlines()
    assert lines[0] == "GIMP Palette" and lines[1] == "Name: x"
    assert [line.split()[:3] for line in lines[4:]] == [[str(v) for v in entry] for entry in ENTRIES]


def test_swatch_png_is_one_pixel_per_colour(tmp_path: Path) -> None:
    path = tmp_path / "swatch.png"
    write_palette_file(path, Palette(ENTRIES))
    with Image.open(path) as image:
        assert image.mode == "P" and image.size == (3, 1)
        assert [image.convert("RGB").getpixel((x, 0)) for x in range(3)] == list(ENTRIES)


def test_any_palette_png_gives_its_plte_in_order() -> None:
    png = compress(sample_bytes(), CompressParams(colors=8)).data
    plte = dict(png_chunks(png))[b"PLTE"]
    assert Palette.decode(png, ".png").rgb_bytes() == plte


def test_a_truecolour_swatch_gives_its_colours_in_reading_order(tmp_path: Path) -> None:
    pixels = np.array([[[9, 9, 9], [1, 2, 3], [9, 9, 9], [200, 0, 0]]], dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(pixels).save(path)
    assert read_palette_file(path).entries == ((9, 9, 9), (1, 2, 3), (200, 0, 0))


def test_json_accepts_hex_and_triples() -> None:
    assert Palette.decode(b'["#000000", "FF8007", [12, 200, 99]]', ".json").entries == ENTRIES
    assert Palette.decode(b'{"colours": ["#000000"]}', ".json").entries == ((0, 0, 0),)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.gpl", None, "cannot read the palette file: No such file or directory"),
        ("empty.gpl", b"GIMP Palette\nName: nothing\n# no colours\n", "the palette has no colours"),
        ("empty.json", b"[]", "the palette has no colours"),
        ("big.gpl", ("GIMP Palette\n" + "1 2 3\n" * 257).encode(), "the palette has 257 colours, more than 256"),
        ("bad.gpl", b"GIMP Palette\n1 2 300\n", "line 2: expected three values 0-255, got '1 2 300'"),
        ("words.gpl", b"GIMP Palette\nred green blue\n", "line 2: expected 'R G B [name]'"),
        ("notgimp.gpl", b"1 2 3\n", "not a GIMP palette: the first line must be 'GIMP Palette'"),
        ("broken.json", b"{", "not valid JSON"),
        ("text.png", b"hello", "not a PNG file"),
        ("palette.txt", b"GIMP Palette\n1 2 3\n", "unknown palette format '.txt'"),
    ],
)
def test_bad_palette_files_give_one_line_naming_setting_and_file(
    tmp_path: Path, name: str, content: bytes | None, reason: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SettingsError) as caught:
        read_palette_file(path)
    message = caught.value.message
    assert message.startswith(f"ICSD_PALETTE file {path}: ") and reason in message
    assert "\n" not in message and caught.value.exit_code == 78


def test_palette_entries_are_checked() -> None:
    with pytest.raises(ParameterError, match="1 to 256 colours"):
        Palette(())
    with pytest.raises(ParameterError, match="three values 0-255"):
        Palette(((1, 2, 256),))


def test_digest_depends_on_entries_and_order_only() -> None:
    assert Palette(ENTRIES, "a").digest() == Palette(ENTRIES, "b").digest()
    assert Palette(ENTRIES).digest() != Palette(ENTRIES[::-1]).digest()
