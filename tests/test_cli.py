"""The command line as a user runs it: real subprocesses, real files, exit codes, one-line errors."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from icsd.daemon.executor import BATCH_IMAGES
from icsd.settings import Settings
from tests.harness import PROGRESS, clean_env, sample_image, write_image


def icsd(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "icsd", *args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL,
    )


def test_compress_prints_size_before_after_and_reduction(tmp_path: Path) -> None:
    source = tmp_path / "china.jpg"
    size_in = len(write_image(source))
    done = icsd("compress", str(source), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "china.png"
    lines = done.stdout.splitlines()
    assert lines[0] == f"{source} -> {out}"
    assert lines[1].startswith("size before: ") and "(640x427 px)" in lines[1]
    assert lines[2].startswith("size after:  ") and "(128x86 px, 16 colours, kmeans)" in lines[2]
    reduction = float(lines[3].removeprefix("reduction:").strip().rstrip("%"))
    assert reduction == pytest.approx(100 * (size_in - out.stat().st_size) / size_in, abs=0.06)
    with Image.open(out) as image:
        assert image.mode == "P" and image.size == (128, 86)
    # the figure itself is checked against the decoded output in tests/test_quality.py
    psnr = re.fullmatch(r"PSNR: {8}(\d+\.\d\d) dB \(against the downsampled image\)", lines[4])
    assert psnr is not None and 20 < float(psnr.group(1)) < 40, lines[4]


def test_compress_options_bits_grayscale_exact_size(tmp_path: Path) -> None:
    source = tmp_path / "flower.png"
    write_image(source, sample_image("flower.jpg"))
    target = tmp_path / "sub" / "small.png"
    target.parent.mkdir()
    done = icsd("compress", str(source), "-o", str(target), "--bits", "2", "--grayscale", "--size", "224x224",
                "--strategy", "FKM", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "(224x224 px, 4 grey levels, sklearn-kmeans)" in done.stdout
    with Image.open(target) as image:
        assert image.size == (224, 224)
        colours = image.convert("RGB").getcolors()
        assert len(colours) <= 4 and all(r == g == b for _, (r, g, b) in colours)
    assert (tmp_path / "flower.png").read_bytes()  # a .png input is never overwritten by its own output


def test_compress_never_overwrites_a_png_input(tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    original = write_image(source)
    done = icsd("compress", str(source), "--strategy", "so", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert source.read_bytes() == original
    assert (tmp_path / "photo.icsd.png").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["compress", "missing.jpg"], 66, "icsd: error: cannot read missing.jpg: No such file or directory"),
        (["compress", "text.jpg"], 65, "icsd: error: text.jpg: "),
        (["compress", "text.jpg", "--colors", "1"], 78, "icsd: error: --colors must be between 2 and 256, got 1"),
        (["compress", "text.jpg", "--colors", "4", "--bits", "2"], 64, "argument --bits: not allowed with argument"),
        (["compress", "text.jpg", "--scale", "2", "--size", "9x9"], 64, "argument --size: not allowed with argument"),
        (["batch", "--bogus"], 64, "icsd: error: unrecognized arguments: --bogus"),  # EX_USAGE, not argparse's 2
        (["run", "--strategy", "median"], 78, "icsd: error: --strategy: unknown strategy 'median'"),
        (["batch", "no-such-folder"], 66, "icsd: error: input folder no-such-folder does not exist: check the"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    (tmp_path / "text.jpg").write_text("not an image")
    done = icsd(*args, cwd=tmp_path)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    usage = "not allowed" in message or "unrecognized" in message  # argparse's: usage line + error line
    assert len(done.stderr.strip().splitlines()) == (2 if usage else 1)


def test_batch_processes_a_folder_and_fails_when_an_image_fails(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_image(folder / "a.jpg", sample_image(crop=150))
    write_image(folder / "deep" / "b.png", sample_image("flower.jpg", crop=150))
    done = icsd("batch", str(folder), "--output-dir", str(tmp_path / "out"), "--workers", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "icsd stopped: 2 images done, 0 failed" in done.stderr and "runtime 0:00:" in done.stderr
    assert (tmp_path / "out" / "a.png").exists() and (tmp_path / "out" / "deep" / "b.png").exists()

    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    again = icsd("batch", str(folder), "--output-dir", str(tmp_path / "out"), "--workers", "2", cwd=tmp_path)
    assert again.returncode == 1
    assert "icsd stopped: 0 images done, 1 failed" in again.stderr  # a and b were done already
    assert "FAILED broken.png" in again.stderr


def test_batch_takes_the_largest_files_first(tmp_path: Path) -> None:
    """One worker runs jobs in the order they are handed out: biggest first, so none finishes alone."""
    folder = tmp_path / "photos"
    sizes = {name: len(write_image(folder / name, sample_image(crop=crop)))
             for name, crop in (("a-small.jpg", 60), ("b-large.jpg", 300), ("c-medium.jpg", 150))}
    done = icsd("batch", str(folder), "--output-dir", str(tmp_path / "out"), "--workers", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    order = re.findall(r"icsd: (\S+): \d+x\d+ -> ", done.stderr)
    assert order == sorted(sizes, key=sizes.__getitem__, reverse=True) == ["b-large.jpg", "c-medium.jpg", "a-small.jpg"]


def test_batch_exit_flushes_the_log_and_leaves_no_temporary_files(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The command skips the interpreter's teardown; its exit handlers must still have run."""
    # A short folder: the fork server's socket path must fit AF_UNIX's 108 bytes, and under pytest-xdist this
    # test's own tmp_path (.../popen-gw1/test_batch_exit_flushes_the_lo0/) leaves too little room.
    temp = tmp_path_factory.mktemp("t")
    write_image(tmp_path / "photos" / "a.jpg", sample_image(crop=100))
    done = icsd("batch", "photos", "--output-dir", "out", "--workers", "2", cwd=tmp_path, TMPDIR=str(temp))
    assert done.returncode == 0, done.stderr
    assert "icsd stopped: 1 image done, 0 failed" in done.stderr.strip().splitlines()[-1]
    assert list(temp.iterdir()) == []  # multiprocessing's socket folder (pymp-*) was removed


def test_help_lists_every_setting_as_a_flag(tmp_path: Path) -> None:
    for command in ("run", "batch"):
        done = icsd(command, "--help", cwd=tmp_path)
        assert done.returncode == 0
        for name in Settings.model_fields:
            assert f"--{name.replace('_', '-')}" in done.stdout, (command, name)
            assert f"ICSD_{name.upper()}" in done.stdout, (command, name)
    top = icsd("--help", cwd=tmp_path)
    for command in ("run", "batch", "compress", "status"):
        assert command in top.stdout


# -- alternatives: the highest source's choice wins -----------------------------------------------------


def compressed_size(done: subprocess.CompletedProcess[str]) -> str:
    """`50x50` from the `size after:  ... (50x50 px, ...)` line of `icsd compress`."""
    match = re.search(r"size after: .*\((\d+x\d+) px", done.stdout)
    assert match, done.stdout + done.stderr
    return match.group(1)


def test_size_rule_flag_wins_over_the_environment(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", sample_image(crop=100))
    for flags, size in ((["--scale", "2"], "50x50"), (["--max-size", "40x40"], "40x40"), ([], "64x64")):
        done = icsd("compress", "a.jpg", "--force", *flags, cwd=tmp_path, ICSD_SIZE="64x64")
        assert done.returncode == 0, done.stderr
        assert compressed_size(done) == size, flags


def test_batch_max_size_flag_wins_over_size_in_the_environment(tmp_path: Path) -> None:
    write_image(tmp_path / "in" / "a.jpg", sample_image(crop=100))
    done = icsd("batch", "in", "--output-dir", "out", "--max-size", "40x40", "--workers", "1", cwd=tmp_path,
                ICSD_SIZE="64x64")
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "out" / "a.png") as image:
        assert image.size == (40, 40)


def test_environment_choice_wins_over_dotenv(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", sample_image(crop=100))
    (tmp_path / ".env").write_text("ICSD_COLORS=4\n")
    done = icsd("compress", "a.jpg", cwd=tmp_path, ICSD_BITS="3")
    assert done.returncode == 0, done.stderr
    assert "(20x20 px, 8 colours, kmeans)" in done.stdout


# -- one-line errors naming the setting or path ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["compress", "a.jpg"], {"ICSD_SIZE": "9x9", "ICSD_MAX_SIZE": "5x5"}, 78,
         "set ICSD_MAX_SIZE or ICSD_SIZE, not both: the environment sets both"),
        (["compress", "a.jpg", "--size", "100000x100000"], {}, 78,
         "--size 100000x100000 is 10000000000 pixels, more than ICSD_MAX_PIXELS (89478485): choose a smaller size"),
        (["compress", "a.jpg", "--scale", "inf"], {}, 78, "--scale must be a finite number >= 1, got inf"),
        (["compress", "a.jpg", "--scale", "0.5"], {}, 78, "--scale must be >= 1, got 0.5"),
        (["compress", "a.jpg", "--max-pixels", "0"], {}, 78, "--max-pixels must be between 1 and 178956970, got 0"),
        (["batch", "in"], {"ICSD_SCALE": "0.5"}, 78, "ICSD_SCALE must be >= 1, got 0.5"),
        (["compress", "a.jpg", "-o", "folder"], {}, 73,
         "cannot write folder/: it names a folder; give a file name (e.g. -o folder/a.png)"),
        (["compress", "a.jpg", "-o", "newdir/"], {}, 73,
         "cannot write newdir/: it names a folder; give a file name (e.g. -o newdir/a.png)"),
        (["compress", "a.jpg", "-o", "fifo"], {}, 73,
         "cannot write fifo: it is not a regular file; choose another path with -o"),
        (["compress", "a.jpg", "-o", "link.png"], {}, 73,
         "cannot write link.png: it is not a regular file; choose another path with -o"),
        (["compress", "a.jpg", "-o", "/proc/x.png"], {}, 73,
         "cannot write /proc/x.png: No such file or directory; choose another path with -o"),
        (["compress", "a.jpg", "-o", "a.jpg/out.png"], {}, 73,
         "cannot write a.jpg/out.png: a.jpg is not a folder; choose another path with -o"),
        (["compress", "a.jpg", "-o", ""], {}, 64,
         "-o/--output is empty: give the output file name (e.g. -o small.png)"),
        (["run", "--input-dir", "in"], {"ICSD_RESCAN_SECONDS": "0"}, 78, "ICSD_RESCAN_SECONDS must be > 0, got 0.0"),
        (["run"], {"ICSD_INPUT_DIR": "a.jpg"}, 66,
         "input folder a.jpg is not a folder: check ICSD_INPUT_DIR (icsd compress takes one file)"),
        (["batch", "a.jpg"], {}, 66,
         "input folder a.jpg is not a folder: check the FOLDER argument (icsd compress takes one file)"),
        (["batch", "in", "--output-dir", "/proc/foo"], {}, 73,
         "cannot create --output-dir /proc/foo: No such file or directory; choose a folder you can write to"),
        (["batch", "in", "--output-dir", "a.jpg"], {}, 73,
         "--output-dir a.jpg exists and is not a folder: choose another path"),
        (["run", "--input-dir", "in", "--state-dir", "a.jpg/state"], {}, 73,
         "cannot create --state-dir a.jpg/state: Not a directory; choose a folder you can write to"),
    ],
)
def test_bad_paths_and_values_are_one_line_errors(
    tmp_path: Path, args: list[str], env: dict[str, str], code: int, message: str
) -> None:
    write_image(tmp_path / "a.jpg", sample_image(crop=60))
    write_image(tmp_path / "in" / "b.jpg", sample_image(crop=60))
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")  # as root, /dev/null was replaced by a regular file the same way
    (tmp_path / "link.png").symlink_to(tmp_path / "elsewhere.png")
    done = icsd(*args, cwd=tmp_path, **env)
    assert (done.returncode, done.stderr) == (code, f"icsd: error: {message}\n")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.png").exists()
    assert not (tmp_path / "newdir").exists() and stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)
    assert (tmp_path / "link.png").is_symlink() and not (tmp_path / "elsewhere.png").exists()


def test_compress_warns_about_misspelt_variables(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", sample_image(crop=60))
    done = icsd("compress", "a.jpg", cwd=tmp_path, ICSD_COLOURS="8")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "icsd: warning: unknown setting ICSD_COLOURS is ignored; did you mean ICSD_COLORS?\n"


def test_a_single_colour_is_singular(tmp_path: Path) -> None:
    Image.new("RGB", (50, 40), "navy").save(tmp_path / "flat.png")
    done = icsd("compress", "flat.png", "-o", "out.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "(10x8 px, 1 colour, kmeans)" in done.stdout.splitlines()[2]


def test_ctrl_c_stops_a_batch_with_its_summary(tmp_path: Path) -> None:
    """Ctrl-C signals the whole foreground process group: icsd drains, prints its summary, exits 130."""
    # Three tasks' worth: a task's progress lines come when it ends, so the signal lands while the second one runs
    # (with one task and a bit more, the rest could finish before the signal arrived on a busy machine).
    total = 3 * BATCH_IMAGES
    for i in range(total):
        write_image(tmp_path / "photos" / f"{i:03d}.jpg", sample_image(crop=300))
    with subprocess.Popen(
        [sys.executable, "-m", "icsd", "batch", "photos", "--output-dir", "out", "--workers", "1"],
        cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    ) as batch:
        try:
            assert batch.stderr is not None
            lines = []
            while not PROGRESS.search(line := batch.stderr.readline()):  # the first image is done
                assert line, "".join(lines)
                lines.append(line)
            os.killpg(batch.pid, signal.SIGINT)
            rest = batch.stderr.read()
            assert batch.wait(60) == 130, rest
        finally:
            if batch.poll() is None:
                os.killpg(batch.pid, signal.SIGKILL)
    assert "received SIGINT" in rest and "Traceback" not in rest and "interrupted" not in rest
    summary = re.search(r"icsd stopped: (\d+) images done, 0 failed", rest.strip().splitlines()[-1])
    assert summary, rest
    done = int(summary.group(1))
    assert 1 <= done < total
    assert len(list((tmp_path / "out").glob("*.png"))) == done  # what was finished is saved
