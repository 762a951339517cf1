"""`icsd manifest`: each format read back with its standard reader, the rows checked against the files on disk."""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from icsd.core import CompressParams, Palette, compress
from icsd.daemon.journal import SCHEMA_VERSION, Journal
from icsd.daemon.manifest import COLUMNS, done_stats, manifest_rows
from tests.harness import clean_env
from tests.images import MODE_SAMPLES, encode, mode_sample, png_chunks, sample_bytes, write

SHARED = ((0, 0, 0), (255, 255, 255), (200, 40, 40), (40, 40, 200))


def _icsd(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "icsd", *args], cwd=cwd, env=clean_env(**env), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def _read(path: Path) -> list[dict[str, Any]]:
    """The manifest through each format's standard reader, values as the format gives them."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    return pq.read_table(path).to_pylist()


def _check_against_disk(row: dict[str, Any], root: Path) -> None:
    source, output = root / "in" / row["source"], root / "out" / row["output"]
    data = output.read_bytes()
    assert int(row["output_bytes"]) == len(data)
    assert row["source_sha1"] == hashlib.sha1(source.read_bytes()).hexdigest()
    assert int(row["source_bytes"]) == source.stat().st_size
    with Image.open(source) as image:
        assert (int(row["source_width"]), int(row["source_height"])) == image.size
    with Image.open(output) as image:
        assert (int(row["output_width"]), int(row["output_height"])) == image.size
    plte = Palette.decode(data, ".png")
    assert int(row["colors"]) == len(plte)
    if row["strategy"] == "palette":
        assert row["palette"] == Palette(SHARED).digest() == plte.digest()
    else:
        assert row["palette"] == " ".join(plte.hex()) and row["strategy"] == "kmeans"
    assert row["settings_fingerprint"].startswith("sha1:") and row["done_at"].endswith("+00:00")


@pytest.fixture(scope="module")
def batch_done(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two batches into one output folder: per-image palettes, then a shared palette (which remakes them all)."""
    root = tmp_path_factory.mktemp("manifest")
    write(root / "in" / "china.jpg", sample_bytes("china.jpg"))
    write(root / "in" / "sub dir" / "flower.jpg", sample_bytes("flower.jpg"))
    write(root / "in" / "rgba.png", encode(mode_sample("RGBA", (40, 30)), MODE_SAMPLES["RGBA"]))
    done = _icsd("batch", "in", "--output-dir", "out", "--colors", "8", cwd=root)
    assert done.returncode == 0, done.stderr
    (root / "shared.json").write_bytes(Palette(SHARED).encode(".json"))
    write(root / "in" / "later" / "gradient.png", encode(mode_sample("RGB", (50, 20)), "PNG"))
    done = _icsd("batch", "in", "--output-dir", "out", "--colors", "8", cwd=root, ICSD_PALETTE="shared.json")
    assert done.returncode == 0, done.stderr
    return root


def test_per_image_palettes_are_listed_though_workers_write_the_outputs(tmp_path: Path) -> None:
    """The pool's workers write each output themselves and send back no bytes: the PLTE still reaches the
    journal and the manifest (it was null for every such output once)."""
    write(tmp_path / "in" / "china.jpg", sample_bytes("china.jpg"))
    write(tmp_path / "in" / "cam" / "flower.jpg", sample_bytes("flower.jpg"))
    write(tmp_path / "in" / "rgba.png", encode(mode_sample("RGBA", (40, 30)), MODE_SAMPLES["RGBA"]))
    done = _icsd("batch", "in", "--output-dir", "out", "--colors", "8", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = _icsd("manifest", "--output-dir", "out", "-o", "-", cwd=tmp_path)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["source"] for row in rows] == ["cam/flower.jpg", "china.jpg", "rgba.png"]
    for row in rows:
        assert row["palette"] and row["palette"].count("#") == int(row["colors"]) <= 8
        _check_against_disk(row, tmp_path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_each_format_reads_back_and_matches_the_outputs(batch_done: Path, suffix: str) -> None:
    target = batch_done / f"manifest{suffix}"
    done = _icsd("manifest", "--output-dir", "out", "-o", target.name, cwd=batch_done)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"4 outputs -> {target.name}"
    rows = _read(target)
    assert [list(row) for row in rows] == [[name for name, _ in COLUMNS]] * 4
    assert [row["source"] for row in rows] == ["china.jpg", "later/gradient.png", "rgba.png", "sub dir/flower.jpg"]
    for row in rows:
        _check_against_disk(row, batch_done)
    # The second batch's settings (a shared palette) differ: it remade the first batch's outputs with them.
    assert [row["strategy"] for row in rows].count("palette") == 4


def test_default_is_jsonl_in_the_output_folder_and_dash_is_stdout(batch_done: Path) -> None:
    done = _icsd("manifest", "--output-dir", "out", "-o", "-", cwd=batch_done)
    outputs = [json.loads(line)["output"] for line in done.stdout.splitlines()]
    assert outputs == ["china.png", "later/gradient.png", "rgba.png", "sub dir/flower.png"]
    done = _icsd("manifest", "--output-dir", "out", cwd=batch_done)
    assert done.returncode == 0 and len(_read(batch_done / "out" / "manifest.jsonl")) == 4


def test_errors_are_one_line(tmp_path: Path, batch_done: Path) -> None:
    done = _icsd("manifest", "--output-dir", "nowhere", cwd=tmp_path)
    assert done.returncode == 78 and "no journal at" in done.stderr
    done = _icsd("manifest", "--output-dir", "out", "-o", "m.xlsx", cwd=batch_done)
    assert done.returncode == 64 and "give a .jsonl, .csv or .parquet file name" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_manifest_while_the_daemon_runs(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon()
    write(daemon.input / "a.jpg", sample_bytes())
    daemon.wait_for_outputs(["a.png"])
    done = _icsd("manifest", "--output-dir", str(daemon.output), "-o", str(tmp_path / "m.csv"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [row["output"] for row in _read(tmp_path / "m.csv")] == ["a.png"]
    assert daemon.stop() == 0


_SCHEMA_1 = """
CREATE TABLE files (rel TEXT PRIMARY KEY NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, output TEXT, error TEXT,
    updated REAL NOT NULL) WITHOUT ROWID;
INSERT INTO files VALUES ('old.jpg', 10, 1, 'abc', 'done', 1, 'old.png', NULL, 1700000000.0);
PRAGMA user_version = 1;
"""


def test_a_journal_of_the_first_schema_still_works(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_1)
    png = encode(mode_sample("P", (9, 7)), "PNG")
    write(tmp_path / "out" / "old.png", png)
    with Journal.open_readonly(path) as journal:  # read as it is: rows without stats, from the PNG on disk
        (row,) = manifest_rows(journal.done_rows(), tmp_path / "out")
    assert (row["output_width"], row["output_height"], row["output_bytes"]) == (9, 7, len(png))
    assert row["palette"] == " ".join(Palette(_plte(png)).hex()) and row["source_width"] is None
    with Journal(path) as journal:  # opened by the daemon: upgraded in place, its rows kept
        assert journal.get("old.jpg").output == "old.png"
        assert journal.mark_done("old.jpg", "old.png", stats={"colors": 3})
        assert journal.done_rows()[0].stats == {"colors": 3}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def _plte(png: bytes) -> tuple[tuple[int, int, int], ...]:
    plte = dict(png_chunks(png))[b"PLTE"]
    return tuple(tuple(plte[i : i + 3]) for i in range(0, len(plte), 3))  # type: ignore[misc]


def test_stats_of_size_only_and_fingerprints_of_settings() -> None:
    params = CompressParams(strategy="size-only", scale=8)
    stats = done_stats(compress(sample_bytes(), params), params)
    assert stats["palette"] is None and stats["strategy"] == "size-only" and stats["output_size"] == [80, 54]
    fingerprints = {p.fingerprint() for p in (CompressParams(), CompressParams(colors=8),
                                                     CompressParams(palette=SHARED), CompressParams(scale=4))}
    assert len(fingerprints) == 4 and CompressParams().fingerprint() == CompressParams().fingerprint()
