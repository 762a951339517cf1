"""Outputs follow the settings: real `icsd batch` / `icsd run` processes remake what other settings made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.harness import clean_env, sample_image, temp_files, wait_until, write_image

NAMES = [f"img{i}.jpg" for i in range(6)]


def _icsd(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "icsd", *args], cwd=root, env=clean_env(), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def _batch(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = _icsd(root, "batch", "in", "--output-dir", "out", "--workers", "1", *args)
    assert done.returncode == 0, done.stderr
    return done


def _photos(root: Path, crop: int = 300) -> None:
    for i, name in enumerate(NAMES):
        write_image(root / "in" / name, sample_image("flower.jpg" if i % 2 else "china.jpg", crop=crop + 20 * i))


def _palette_size(path: Path) -> int:
    """Colours in the PLTE of a complete, decodable PNG (load() fails on a truncated or torn file)."""
    with Image.open(path) as image:
        image.load()
        assert image.mode == "P"
        return len(image.getpalette()) // 3  # type: ignore[arg-type]


def _palettes(out: Path) -> dict[str, int]:
    return {name: _palette_size(out / name.replace(".jpg", ".png")) for name in NAMES}


def _mtimes(out: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in out.glob("*.png")}


def test_batch_remakes_with_a_new_k_and_redoes_nothing_when_unchanged(tmp_path: Path) -> None:
    _photos(tmp_path)
    _batch(tmp_path, "--colors", "8")
    assert set(_palettes(tmp_path / "out").values()) == {8}
    before = _mtimes(tmp_path / "out")
    again = _batch(tmp_path, "--colors", "8")
    assert _mtimes(tmp_path / "out") == before and "0 images done" in again.stderr
    status = _icsd(tmp_path, "status", "--input-dir", "in", "--output-dir", "out", "--colors", "4")
    assert status.stdout.splitlines()[1] == f"stale: {len(NAMES)} made with other settings"
    remade = _batch(tmp_path, "--colors", "4")
    assert f"{len(NAMES)} outputs made with other settings are remade from their originals" in remade.stderr
    assert set(_palettes(tmp_path / "out").values()) == {4} and sorted(_mtimes(tmp_path / "out")) == sorted(before)
    status = _icsd(tmp_path, "status", "--input-dir", "in", "--output-dir", "out", "--colors", "4")
    assert status.stdout.splitlines() == [f"pending: 0  in_progress: 0  done: {len(NAMES)}  failed: 0"]


def test_a_restarted_daemon_remakes_with_new_settings_and_then_redoes_nothing(
    tmp_path: Path, start_daemon: Any
) -> None:
    _photos(tmp_path, crop=120)
    _batch(tmp_path, "--colors", "8")
    daemon = start_daemon("--colors", "4")
    daemon.wait_ready()
    wait_until(lambda: set(_palettes(daemon.output).values()) == {4}, what="every output remade with 4 colours")
    assert daemon.stop() == 0
    before = _mtimes(daemon.output)
    daemon = start_daemon("--colors", "4")  # the same settings: a restart reprocesses nothing
    daemon.wait_ready()
    write_image(daemon.input / "new.jpg", sample_image(crop=50))
    daemon.wait_for_outputs([*sorted(before), "new.png"])
    assert daemon.stop() == 0  # drains: a remake, had one started, would have moved an mtime by now
    assert daemon.progress_names() == ["new.jpg"]
    assert {name: mtime for name, mtime in _mtimes(daemon.output).items() if name != "new.png"} == before


def test_kill_9_in_the_middle_of_a_remake_leaves_each_output_old_or_new(tmp_path: Path, start_daemon: Any) -> None:
    _photos(tmp_path, crop=200)
    noise = np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    write_image(tmp_path / "in" / "giant.png", Image.fromarray(noise))  # its remake takes a second or more
    _batch(tmp_path, "--colors", "8")
    remake = ("--colors", "4", "--scale", "1", "--dither", "diffuse")
    daemon = start_daemon(*remake, workers=2)
    daemon.wait_for_log("icsd: img")  # one photo remade; the giant still busy on the other worker
    daemon.kill()
    palettes = {**_palettes(daemon.output), "giant": _palette_size(daemon.output / "giant.png")}  # all decode
    assert set(palettes.values()) == {4, 8}, palettes  # killed with old and new outputs side by side
    daemon = start_daemon(*remake)  # the rest is remade on the next start, its leftovers removed
    daemon.wait_ready()
    wait_until(lambda: set(_palettes(daemon.output).values()) == {4} and _palette_size(daemon.output / "giant.png")
               == 4, what="every output remade with 4 colours")
    assert daemon.stop() == 0
    assert temp_files(daemon.output) == []


def test_deleted_originals_cannot_be_remade_said_once_and_in_status(tmp_path: Path) -> None:
    _photos(tmp_path, crop=60)
    _batch(tmp_path, "--colors", "8", "--on-success", "delete")
    write_image(tmp_path / "in" / "late.jpg", sample_image(crop=70))  # its original is kept: remade
    _batch(tmp_path, "--colors", "8")
    remade = _batch(tmp_path, "--colors", "4")
    warnings = [line for line in remade.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and warnings[0].endswith(
        f"icsd: {len(NAMES)} outputs made with other settings cannot be remade: the originals were deleted or "
        "archived (ICSD_ON_SUCCESS); they stay as they are")
    assert _palette_size(tmp_path / "out" / "late.png") == 4
    assert set(_palettes(tmp_path / "out").values()) == {8}
    status = _icsd(tmp_path, "status", "--input-dir", "in", "--output-dir", "out", "--colors", "4")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[1] == (
        f"stale: {len(NAMES)} made with other settings; {len(NAMES)} cannot be remade (original deleted or archived)")
    status = _icsd(tmp_path, "status", "--input-dir", "in", "--output-dir", "out", "--colors", "8")  # late.png: 4
    assert status.stdout.splitlines()[1] == "stale: 1 made with other settings"


def test_a_failed_image_dropped_again_is_tried_again_only_with_other_settings(tmp_path: Path) -> None:
    """An image refused for its size (ICSD_MAX_PIXELS) is set aside; dropped back unchanged it is skipped with the
    same settings (the same content failed), and done with settings that allow it."""
    write_image(tmp_path / "in" / "big.jpg", sample_image(crop=300))
    failed = _icsd(tmp_path, "batch", "in", "--output-dir", "out", "--workers", "1", "--max-pixels", "1000")
    assert failed.returncode == 1 and "FAILED big.jpg" in failed.stderr, failed.stderr
    aside = tmp_path / "out" / ".failed" / "big.jpg"
    aside.rename(tmp_path / "in" / "big.jpg")  # the operator drops it back, as it was
    again = _icsd(tmp_path, "batch", "in", "--output-dir", "out", "--workers", "1", "--max-pixels", "1000")
    assert again.returncode == 0 and "0 images done, 0 failed" in again.stderr, again.stderr
    assert not (tmp_path / "out" / "big.png").exists()
    _batch(tmp_path)  # the default limit allows it
    assert _palette_size(tmp_path / "out" / "big.png") <= 16
