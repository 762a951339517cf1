"""Names through the real `icsd batch` and `icsd run`: colliding outputs, reused names in the failed and archive
folders, names that are not UTF-8 or at the file-system limit. Nothing may be overwritten or lost, and one odd
name may not stop the others. How the intake picks a fallback name (a folder in the way, an input folder that
needs the name, the warning said once) is tested in-process in test_intake.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from icsd.daemon.journal import Journal
from tests.harness import clean_env, sample_image, write_image


def batch(source: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "icsd", "batch", str(source), "--output-dir", str(out), "--workers", "2", *args],
        cwd=source.parent, env=clean_env(), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_chained_names_each_get_their_own_output(tmp_path: Path) -> None:
    """a.bmp takes a.png, so a.png falls back to a.png.png, which is input a.png.png's own output: a.png
    must go on to a third name instead of overwriting it (it did)."""
    source = tmp_path / "in"
    write_image(source / "a.bmp", sample_image())  # the largest, so it is started first
    write_image(source / "a.png.png", sample_image("flower.jpg", crop=200), fmt="PNG")
    write_image(source / "a.png", sample_image(crop=50))
    done = batch(source, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir() if p.is_file()} == {"a.png", "a.png.png", "a.png.2.png"}
    assert (size_of(out / "a.png"), size_of(out / "a.png.png"), size_of(out / "a.png.2.png")) == (
        (128, 86), (40, 40), (10, 10))
    with Journal(out / ".icsd" / "journal.sqlite3") as journal:
        assert {rel: journal.get(rel).output for rel in ("a.bmp", "a.png.png", "a.png")} == {
            "a.bmp": "a.png", "a.png.png": "a.png.png", "a.png": "a.png.2.png"}
    assert "a.png: a.png already belongs to a.bmp; writing a.png.2.png" in done.stderr


def test_reused_names_never_replace_earlier_failed_or_archived_originals(tmp_path: Path) -> None:
    """Cameras reuse names (IMG_0001.JPG): a second bad or archived file of one name is kept beside the first."""
    source, out, archive = tmp_path / "in", tmp_path / "out", tmp_path / "archive"
    versions = [b"not an image, first version\n", b"not an image either, second\n"]
    photos = [write_image(tmp_path / "p1.jpg", sample_image(crop=64)), write_image(tmp_path / "p2.jpg")]
    for bad, photo in zip(versions, photos, strict=True):
        source.mkdir(exist_ok=True)
        (source / "cam").mkdir(exist_ok=True)
        (source / "cam" / "bad.jpg").write_bytes(bad)
        (source / "cam" / "IMG_0001.JPG").write_bytes(photo)
        done = batch(source, out, "--on-success", "archive", "--archive-dir", str(archive))
        assert done.returncode == 1, done.stderr  # one failed
    failed = out / ".failed" / "cam"
    assert (failed / "bad.jpg").read_bytes() == versions[0] and (failed / "bad.2.jpg").read_bytes() == versions[1]
    reports = [json.loads((failed / name).read_text()) for name in ("bad.jpg.error.json", "bad.2.jpg.error.json")]
    assert [report["file"] for report in reports] == ["cam/bad.jpg", "cam/bad.jpg"]
    assert "not an image" in reports[1]["error"]
    assert (archive / "cam" / "IMG_0001.JPG").read_bytes() == photos[0]
    assert (archive / "cam" / "IMG_0001.2.JPG").read_bytes() == photos[1]
    assert "moved to " + str(failed / "bad.2.jpg") in done.stderr


def test_a_name_that_is_not_utf8_is_skipped_and_the_rest_are_done(tmp_path: Path) -> None:
    """Such a name crashed the daemon on every start (the journal stores names as UTF-8 text)."""
    source = tmp_path / "in"
    write_image(source / "good.jpg", sample_image(crop=50))
    odd = os.fsencode(source) + b"/bad\xffname.jpg"
    with open(odd, "wb") as handle:
        handle.write(write_image(tmp_path / "spare.jpg", sample_image(crop=50)))
    os.mkdir(os.fsencode(source) + b"/caf\xe9")  # a Latin-1 folder name
    with open(os.fsencode(source) + b"/caf\xe9/inside.jpg", "wb") as handle:
        handle.write((tmp_path / "spare.jpg").read_bytes())
    done = batch(source, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file()) == ["good.png"]
    assert f"{source}/bad\\xffname.jpg: name is not valid UTF-8 — skipped: rename it to process it" in done.stderr
    assert f"{source}/caf\\xe9/inside.jpg: name is not valid UTF-8" in done.stderr
    assert os.path.exists(odd)  # left as it was


def test_the_daemon_skips_a_name_that_is_not_utf8_and_stays_up(start_daemon) -> None:
    daemon = start_daemon()
    daemon.wait_ready()
    odd = os.fsencode(daemon.input) + b"/bad\xffname.jpg"
    with open(odd, "wb") as handle:
        handle.write(write_image(daemon.root / "spare.jpg", sample_image(crop=50)))
    daemon.wait_for_log("bad\\xffname.jpg: name is not valid UTF-8")
    write_image(daemon.input / "after.jpg", sample_image(crop=50))
    daemon.wait_for_outputs(["after.png"])
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_names_at_the_length_limit_get_outputs_and_reports_that_fit(tmp_path: Path) -> None:
    """x{251}.jpg is a valid name, but its fallback x{251}.jpg.png (and the failure report) would not be."""
    source = tmp_path / "in"
    stem = "x" * 251
    write_image(source / f"{stem}.bmp", sample_image(crop=80))
    write_image(source / f"{stem}.jpg", sample_image(crop=40))
    (source / f"{'y' * 251}.jpg").write_bytes(b"not an image\n")
    done = batch(source, tmp_path / "out", "--workers", "1")
    assert done.returncode == 1, done.stderr  # only the y file failed, at once: no retries for a name
    natural, fallback = f"{stem}.png", f"{stem[:-4]}.jpg.png"  # shortened to fit 255 bytes, the suffix kept
    assert {p.name for p in (tmp_path / "out").iterdir() if p.is_file()} == {natural, fallback}
    assert (size_of(tmp_path / "out" / natural), size_of(tmp_path / "out" / fallback)) == ((16, 16), (8, 8))
    report = tmp_path / "out" / ".failed" / f"{'y' * 240}.jpg.error.json"
    assert json.loads(report.read_text())["file"] == f"{'y' * 251}.jpg"
    assert "retrying" not in done.stderr
