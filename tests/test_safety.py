"""Hostile input trees through the real daemon: links, FIFOs, odd names, metadata, escaping paths.

One daemon run covers the file-level cases (they must not disturb each other either); the folder
layout rules are startup errors, checked in parallel subprocesses.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from icsd.errors import EX_CONFIG
from tests.harness import Daemon, sample_image, wait_until, write_image
from tests.images import exif_jpeg, png_chunks, upright_marker, write

SECRET = b"root:$6$stand-in-for-/etc/shadow$:19000:0:99999:7:::\n"
METADATA_CHUNKS = {b"eXIf", b"tEXt", b"iTXt", b"zTXt", b"iCCP", b"tIME"}


def test_links_special_files_odd_names_metadata_and_escaping_outputs(start_daemon, tmp_path: Path) -> None:
    inside, outside = tmp_path / "in", tmp_path / "secret"
    write(outside / "shadow", SECRET)
    photo = write_image(outside / "photo.jpg", sample_image("flower.jpg", crop=80))
    write_image(outside / "folder" / "inner.jpg", sample_image("flower.jpg", crop=72))
    inside.mkdir()
    os.symlink(outside / "shadow", inside / "shadow.jpg")  # a link to a secret, named like an image
    os.symlink(outside / "photo.jpg", inside / "leak.jpg")  # a link to a real image outside
    os.symlink(outside / "folder", inside / "linked")  # a linked folder: never entered
    os.mkfifo(inside / "pipe.jpg")  # opening it for reading would block forever
    with socket.socket(socket.AF_UNIX) as listener:  # the socket file stays after the listener closes
        listener.bind(str(inside / "sock.jpg"))
    try:  # a character device (/dev/zero's numbers): reading it would never end
        os.mknod(inside / "zero.jpg", stat.S_IFCHR | 0o644, os.makedev(1, 5))
        device = True
    except PermissionError:  # no CAP_MKNOD here
        device = False
    names = ["café 東京.jpg", "-rf.jpg", "with space.png", "sub dir/ünï -x.jpg", "gps.jpg"]
    for name in names[:-1]:
        write_image(inside / name, sample_image(crop=96))
    write(inside / "gps.jpg", exif_jpeg(upright_marker(60, 40), orientation=6, gps=True))
    (tmp_path / "out" / "esc").parent.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out" / "esc")  # a link in the OUTPUT folder leading out
    write_image(inside / "esc" / "x.jpg", sample_image(crop=96))

    daemon = start_daemon("--stable-seconds", "0.2")
    expected = ["-rf.png", "café 東京.png", "gps.png", "sub dir/ünï -x.png", "with space.png"]
    wait_until(lambda: "FAILED esc/x.jpg" in daemon.log() and sorted(_regular_outputs(daemon)) == expected,
               timeout=60, what=f"outputs {expected} and the escaping output refused")
    write_image(inside / "after.jpg", sample_image(crop=96))  # the FIFO blocked nothing: a new file still goes through
    wait_until(lambda: "after.png" in _regular_outputs(daemon), timeout=30, what="after.png")
    assert daemon.process.poll() is None
    assert daemon.stop() == 0
    log = daemon.log()

    assert "shadow.jpg: symlink — skipped for safety" in log and "leak.jpg: symlink — skipped for safety" in log
    assert "pipe.jpg: named pipe (FIFO) — skipped" in log and "sock.jpg: socket — skipped for safety" in log
    assert not device or "zero.jpg: device file — skipped for safety" in log
    assert sorted(daemon.progress_names()) == sorted([*names, "after.jpg"])
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert "FAILED esc/x.jpg: unsafe output path" in log
    assert (daemon.output / ".failed" / "esc" / "x.jpg.error.json").exists()
    for leaked in daemon.output.rglob("*"):
        if leaked.is_file():
            assert leaked.read_bytes() not in (SECRET, photo), f"{leaked} is a copy of a file outside the input"
    assert (outside / "shadow").read_bytes() == SECRET and (outside / "photo.jpg").read_bytes() == photo
    assert (inside / "shadow.jpg").is_symlink() and (inside / "pipe.jpg").exists()  # skipped means untouched

    gps = (daemon.output / "gps.png").read_bytes()
    assert not {kind for kind, _ in png_chunks(gps)} & METADATA_CHUNKS
    assert b"TestCam" not in gps
    assert "gps.jpg: 60x40 -> 12x8 px" in log  # orientation 6 applied: stored 40x60, upright 60x40


def _regular_outputs(daemon: Daemon) -> list[str]:
    return [rel for rel in daemon.outputs() if not rel.startswith("esc/")]


def test_our_folders_inside_the_input_folder_are_refused_at_startup_naming_the_setting(tmp_path: Path) -> None:
    cases = {
        "OUTPUT_DIR": ["--output-dir", "{in}/Compressed"],
        "FAILED_DIR": ["--failed-dir", "{in}/failed"],
        "STATE_DIR": ["--state-dir", "{in}/.icsd"],
        "ARCHIVE_DIR": ["--on-success", "archive", "--archive-dir", "{in}"],
    }
    daemons = {}
    try:
        for setting, args in cases.items():
            root = tmp_path / setting.lower()
            daemons[setting] = Daemon(root, *(arg.format(**{"in": root / "in"}) for arg in args))
        for setting, daemon in daemons.items():
            assert daemon.wait(60) == EX_CONFIG, daemon.log()
            message = daemon.log().strip()
            flag = "--" + setting.lower().replace("_", "-")  # named as typed: these came from the command line
            assert message.startswith(f"icsd: error: {flag} (") and "is inside --input-dir" in message
            assert "\n" not in message
    finally:
        for daemon in daemons.values():
            daemon.kill()
