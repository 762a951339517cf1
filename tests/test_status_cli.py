"""`icsd status`: journal counts by state and the last failures, while the daemon runs and after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from icsd.errors import EX_CONFIG
from tests.harness import clean_env, sample_image, write_image


def status(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `icsd status` for the harness's output folder, as an operator would from another shell."""
    return subprocess.run(
        [sys.executable, "-m", "icsd", "status", "--output-dir", str(tmp_path / "out"), *args],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
    )


def test_status_counts_by_state_and_lists_recent_failures_while_running_and_after(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon("--stable-seconds", "0.2")
    daemon.wait_ready()
    for name in ("a.jpg", "b.jpg", "sub/c.jpg"):
        write_image(daemon.input / name, sample_image(crop=96))
    (daemon.input / "broken.jpg").write_bytes(b"not a jpeg")
    (daemon.input / "empty.png").write_bytes(b"")
    daemon.wait_for_outputs(["a.png", "b.png", "sub/c.png"])
    daemon.wait_for_log("FAILED empty.png")
    daemon.wait_for_log("FAILED broken.jpg")

    running = status(tmp_path)
    assert daemon.process.poll() is None
    assert daemon.stop() == 0
    stopped = status(tmp_path, "--failures", "1")

    for result in (running, stopped):
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert result.stdout.splitlines()[0] == "pending: 0  in_progress: 0  done: 3  failed: 2"
    failures = running.stdout.splitlines()[1:]
    assert failures[0] == "recent failures:"
    assert sorted(line.split(":")[0].strip() for line in failures[1:]) == ["broken.jpg", "empty.png"]
    assert any(line.startswith("  empty.png: empty file") for line in failures)
    assert len(stopped.stdout.splitlines()) == 3  # counts, heading, the one newest failure


def test_status_without_a_journal_says_so_and_exits_with_the_config_code(tmp_path: Path) -> None:
    result = status(tmp_path)
    assert result.returncode == EX_CONFIG
    assert result.stdout == ""
    assert result.stderr.startswith("icsd: error: no journal at ") and result.stderr.count("\n") == 1


def test_status_warns_about_a_misspelt_variable(tmp_path: Path) -> None:
    """A misspelt ICSD_OUTPUT_DIR would silently read another journal: say so, as run and batch do."""
    result = subprocess.run(
        [sys.executable, "-m", "icsd", "status"], cwd=tmp_path, env=clean_env(ICSD_OUTPUT_DIRR=str(tmp_path / "out")),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == EX_CONFIG
    assert result.stderr.splitlines() == [
        "icsd: warning: unknown setting ICSD_OUTPUT_DIRR is ignored; did you mean ICSD_OUTPUT_DIR?",
        "icsd: error: no journal at Compressed/.icsd/journal.sqlite3: icsd has not run with ICSD_OUTPUT_DIR=Compressed",
    ]


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_status_into_a_closed_pipe_exits_quietly(tmp_path: Path, unbuffered: str) -> None:
    """`icsd status | head -1`: the reader may be gone before icsd writes (at print or at the exit flush)."""
    write_image(tmp_path / "in" / "a.jpg", sample_image(crop=40))
    batch = subprocess.run(
        [sys.executable, "-m", "icsd", "batch", "in", "--output-dir", "out", "--workers", "1"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert batch.returncode == 0, batch.stderr
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader at all: every write gets EPIPE, deterministically
    try:
        result = subprocess.run(
            [sys.executable, "-m", "icsd", "status", "--output-dir", "out"],
            cwd=tmp_path, env=clean_env(PYTHONUNBUFFERED=unbuffered), stdout=write_end, stderr=subprocess.PIPE,
            text=True, timeout=60,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")  # 128 + SIGPIPE, as a shell reports `yes | head -1`


def test_status_shows_a_failed_name_with_a_line_break_on_one_line(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "two\nlines\x1b[31m.jpg").write_bytes(b"not a jpeg")
    batch = subprocess.run([sys.executable, "-m", "icsd", "batch", "in", "--output-dir", "out"], cwd=tmp_path,
                           env=clean_env(), capture_output=True, text=True, timeout=60)
    assert batch.returncode == 1, batch.stderr
    shown = status(tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1:] == ["recent failures:", "  two\\nlines\\x1b[31m.jpg: not an image Pillow can "
                                             "read (format not recognised; 10 bytes starting b'not a jp')"]
