"""Broken, hostile and unusual images through the real daemon, all in one run.

Each file must end either as an output or in the failed folder with a sidecar and one clear log line,
and none of them may stop the daemon or disturb the others. tests/test_codec.py checks the decoding
itself; this checks the daemon's handling end to end.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from icsd.daemon.output import output_name
from tests.harness import descendants, vm_hwm_kib, wait_until
from tests.images import (
    animated_gif,
    encode,
    exif_jpeg,
    gradient,
    mode_sample,
    multipage_tiff,
    png16_gray,
    png16_rgb,
    png_bomb,
    sample_bytes,
    upright_marker,
    write,
)

# name -> (bytes, expected: "done" or a substring of the one-line failure reason)
BAD = {
    "zero.jpg": (b"", "empty file"),
    "truncated.jpg": (sample_bytes()[:5000], "truncated"),
    "truncated.png": (sample_bytes(fmt="PNG")[:5000], "truncated"),
    "text.jpg": (b"this is a text file, not a JPEG\n" * 20, "not an image"),
    "bomb.png": (png_bomb(30_000, 30_000), "pixels"),  # 900 MP claimed in a few bytes
    "bomb-wide.png": (png_bomb(200_000, 500), "pixels"),  # 100 MP, just over the default limit
}
ODD = {
    "tall-1x100000.png": encode(gradient(1, 100_000), "PNG"),
    "cmyk.jpg": encode(mode_sample("CMYK-jpeg"), "JPEG"),
    "cmyk-tiff.tif": encode(mode_sample("CMYK"), "TIFF"),
    "rgb16.png": png16_rgb(),
    "gray16.png": png16_gray(),
    "i16.png": encode(mode_sample("I;16"), "PNG"),
    "float.tif": encode(mode_sample("F"), "TIFF"),
    "la.png": encode(mode_sample("LA"), "PNG"),
    "palette-transparent.png": encode(mode_sample("P+transparency"), "PNG", transparency=0),
    "animated.gif": animated_gif(),
    "pages.tif": multipage_tiff(),
    "rotated.jpg": exif_jpeg(upright_marker(60, 40), orientation=8),
}
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def test_bad_and_unusual_inputs_each_end_done_or_failed_with_one_clear_line(start_daemon, tmp_path: Path) -> None:
    for name, (data, _reason) in BAD.items():
        write(tmp_path / "in" / name, data)
    for name, data in ODD.items():
        write(tmp_path / "in" / name, data)
    daemon = start_daemon("--stable-seconds", "0.2")
    peak = {"kib": 0}

    def settled() -> bool:
        for pid in [daemon.pid, *descendants(daemon.pid)]:
            peak["kib"] = max(peak["kib"], vm_hwm_kib(pid))
        return all((daemon.output / output_name(n)).exists() or (daemon.output / ".failed" / f"{n}.error.json").exists()
                   for n in [*BAD, *ODD])

    wait_until(settled, timeout=60, what="every bad input done or failed")
    write(daemon.input / "after.jpg", sample_bytes())  # the daemon is still working normally
    daemon.wait_for_outputs([*(output_name(n) for n in ODD), "after.png"])
    assert daemon.stop() == 0
    log = daemon.log()

    for line in log.splitlines():
        assert LINE.match(line), f"not a single-line log record: {line!r}"
    for name, (data, reason) in BAD.items():
        sidecar = json.loads((daemon.output / ".failed" / f"{name}.error.json").read_text())
        assert reason in sidecar["error"], (name, sidecar)
        retried = name.startswith("truncated")  # it might still have been arriving: retried up to max_attempts
        assert sidecar["attempts"] == (3 if retried else 1) and sidecar["icsd_version"] and sidecar["time"]
        assert f"FAILED {name}: {sidecar['error']}" in log
        assert (daemon.output / ".failed" / name).read_bytes() == data
        assert not (daemon.input / name).exists()
    assert peak["kib"] < 512 * 1024, f"a bomb was decoded: peak {peak['kib']} KiB"
    with Image.open(daemon.output / "rotated.png") as rotated:
        assert rotated.size == (12, 8)  # orientation 8 applied: upright 60x40 / 5
        corner = np.asarray(rotated.convert("L"))
        assert corner[0, 0] > corner[-1, -1]  # the white marker block is top-left again
    with Image.open(daemon.output / "tall-1x100000.png") as tall:
        assert tall.size == (1, 20_000)
    assert "Traceback" not in log and "internal error" not in log
    print(f"FIGURES bad inputs: {len(BAD) + len(ODD)} tried, {len(BAD)} refused with a reason, {len(ODD)} compressed, "
          f"peak VmHWM {peak['kib'] // 1024} MiB")


def test_a_file_cut_short_is_retried_so_a_writer_that_paused_still_gets_its_output(start_daemon) -> None:
    """A writer that pauses longer than the quiet period hands icsd half a file. That used to fail at once and
    move the file to the failed folder, where the writer's remaining bytes then landed; a truncated image is
    now retried with backoff, and the completed file is compressed."""
    daemon = start_daemon()
    daemon.wait_ready()
    data = sample_bytes()
    with open(daemon.input / "paused.jpg", "wb") as writer:
        writer.write(data[: len(data) // 2])
        writer.flush()
        daemon.wait_for_log("paused.jpg: truncated JPEG data: image file is truncated")
        writer.write(data[len(data) // 2 :])
    daemon.wait_for_outputs(["paused.png"])
    assert daemon.stop() == 0
    assert daemon.failed() == [] and "FAILED" not in daemon.log()
    assert "retrying in 1 s (attempt 2 of 3)" in daemon.log()
