"""What the command line promises a newcomer (issue 19): it never replaces a file it did not write, a path it
may not look at is one line and an exit code, and its messages speak the user's words."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import clean_env, sample_image, write_image
from tests.test_cli import icsd

# -- never replace a file icsd did not write -------------------------------------------------------------


def test_compress_refuses_to_replace_an_existing_output(tmp_path: Path) -> None:
    """The found bug: `icsd compress k.jpg` replaced a different 4 MB k.png in the same folder."""
    write_image(tmp_path / "k.jpg", sample_image(crop=120))
    neighbour = os.urandom(4 << 20)
    (tmp_path / "k.png").write_bytes(neighbour)
    for args in (["k.jpg"], ["k.jpg", "-o", "k.png"]):
        done = icsd("compress", *args, cwd=tmp_path)
        assert (done.returncode, done.stderr) == (
            73, "icsd: error: k.png already exists: add --force to replace it, or choose another path with -o\n"
        )
        assert done.stdout == ""
        assert (tmp_path / "k.png").read_bytes() == neighbour
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.jpg", "k.png"]  # no temporary file left


def test_compress_force_replaces_and_without_it_a_second_run_is_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "k.jpg", sample_image(crop=120))
    (tmp_path / "k.png").write_bytes(b"old")
    forced = icsd("compress", "k.jpg", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = icsd("compress", "k.jpg", cwd=tmp_path)  # icsd wrote it, but it cannot know: same rule
    assert again.returncode == 73 and "--force" in again.stderr


def test_the_fallback_name_of_a_png_input_is_not_replaced_either(tmp_path: Path) -> None:
    write_image(tmp_path / "p.png", sample_image(crop=60))
    (tmp_path / "p.icsd.png").write_bytes(b"someone's")
    done = icsd("compress", "p.png", cwd=tmp_path)
    assert done.returncode == 73 and "p.icsd.png already exists" in done.stderr
    assert (tmp_path / "p.icsd.png").read_bytes() == b"someone's"


def test_a_file_appearing_while_compress_works_is_not_replaced(tmp_path: Path) -> None:
    """The last word is link(2), which never replaces: the check before the work is only for a quick answer."""
    from icsd.daemon.output import write_atomic

    (tmp_path / "late.png").write_bytes(b"arrived meanwhile")
    with pytest.raises(FileExistsError):
        write_atomic(tmp_path, "late.png", b"ours", replace=False)
    assert (tmp_path / "late.png").read_bytes() == b"arrived meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == ["late.png"]
    assert write_atomic(tmp_path, "new.png", b"ours", replace=False).read_bytes() == b"ours"


# -- paths the user may not look into: one line, not a PermissionError traceback ----------------------------


@pytest.fixture
def unprivileged() -> Iterator[tuple[Path, list[str]]]:
    """A folder tree a user other than root can use, with PRIVATE (mode 0700, someone else's) inside, and the
    command prefix that runs as that user: `setpriv` to nobody when the suite runs as root (CI does)."""
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): cannot drop privileges for this test")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        prefix = []
    root = Path(tempfile.mkdtemp(prefix="icsd-unprivileged-", dir="/tmp"))
    try:
        root.chmod(0o755)
        work = root / "work"
        write_image(work / "in" / "a.jpg", sample_image(crop=60))
        for path in (work, work / "in"):
            path.chmod(0o777)
        (work / "in" / "a.jpg").chmod(0o644)
        private = root / "PRIVATE"
        (private / "in").mkdir(parents=True)
        write_image(private / "a.jpg", sample_image(crop=60))
        private.chmod(0o700 if prefix else 0o000)
        yield work, prefix
    finally:
        (root / "PRIVATE").chmod(0o700)
        shutil.rmtree(root)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["compress", "in/a.jpg", "-o", "../PRIVATE/sub/x.png"], 73,
         "cannot write ../PRIVATE/sub/x.png: Permission denied; choose another path with -o"),
        (["compress", "../PRIVATE/a.jpg", "-o", "x.png"], 66, "cannot read ../PRIVATE/a.jpg: Permission denied"),
        (["batch", "in", "--output-dir", "../PRIVATE/sub/out"], 73,
         "cannot create --output-dir ../PRIVATE/sub/out: Permission denied; choose a folder you can write to"),
        (["batch", "../PRIVATE/in", "--output-dir", "out"], 66,
         "cannot read input folder ../PRIVATE/in: Permission denied; check the FOLDER argument"),
        (["run", "--input-dir", "../PRIVATE/in", "--output-dir", "out"], 66,
         "cannot read input folder ../PRIVATE/in: Permission denied; check --input-dir"),
        (["status", "--output-dir", "../PRIVATE/out"], 66,
         "cannot read the journal ../PRIVATE/out/.icsd/journal.sqlite3: Permission denied; check --output-dir"),
    ],
)
def test_a_folder_the_user_may_not_search_is_a_one_line_error(
    unprivileged: tuple[Path, list[str]], args: list[str], code: int, message: str
) -> None:
    work, prefix = unprivileged
    done = subprocess.run([*prefix, sys.executable, "-m", "icsd", *args], cwd=work, env=clean_env(),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr
    assert done.returncode == code, done.stderr
    # Only the one line from icsd. (Where Python lives in root's home, as on the CI machines, nobody cannot
    # start the helper processes of run/batch: multiprocessing warns about that, which is not our line.)
    ours = [line for line in done.stderr.splitlines() if line.startswith("icsd")]
    assert ours == [f"icsd: error: {message}"]
    assert not (work / "out").exists() and not (work / "x.png").exists()


# -- messages in the user's words -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "dotenv", "message"),
    [
        (["--colors", "300"], {}, "", "--colors must be between 2 and 256, got 300"),
        ([], {"ICSD_COLORS": "300"}, "", "ICSD_COLORS must be between 2 and 256, got 300"),
        ([], {}, "# mine\nICSD_COLORS=300\n", "ICSD_COLORS (.env line 2) must be between 2 and 256, got 300"),
        ([], {}, "ICSD_SCALE=0.5\n", "ICSD_SCALE (.env line 1) must be >= 1, got 0.5"),
        (["--bits", "9"], {}, "", "--bits must be between 1 and 8"),
        (["--resample", "stride", "--scale", "2.5"], {}, "",
         "--resample=stride needs a whole-number --scale, got 2.5"),
        ([], {"ICSD_COLORS": "many"}, "", "ICSD_COLORS: input should be a valid integer"),
    ],
)
def test_setting_errors_name_what_the_user_typed(
    tmp_path: Path, args: list[str], env: dict[str, str], dotenv: str, message: str
) -> None:
    write_image(tmp_path / "a.jpg", sample_image(crop=60))
    if dotenv:
        (tmp_path / ".env").write_text(dotenv)
    done = icsd("compress", "a.jpg", *args, cwd=tmp_path, **env)
    assert done.returncode == 78
    assert done.stderr.startswith(f"icsd: error: {message}") and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["compress", "a.jpg", "--colour", "8"], "did you mean --colors?"),
        (["batch", "--greyscale"], "did you mean --grayscale?"),
        (["run", "--output-folder=out"], "did you mean --output-dir?"),
        (["compress", "a.jpg", "--stratgy", "fkm"], "did you mean --strategy?"),
    ],
)
def test_a_misspelt_flag_gets_did_you_mean(tmp_path: Path, args: list[str], hint: str) -> None:
    done = icsd(*args, cwd=tmp_path)
    assert done.returncode == 64
    usage, error = done.stderr.strip().splitlines()
    assert usage.startswith(f"usage: icsd {args[0]}")
    assert error.startswith("icsd: error: unrecognized arguments: ") and error.endswith(f"; {hint}")


def test_an_unknown_flag_without_a_near_name_gets_no_guess(tmp_path: Path) -> None:
    done = icsd("batch", "--zzzzzz", cwd=tmp_path)
    assert done.returncode == 64 and done.stderr.strip().endswith("icsd: error: unrecognized arguments: --zzzzzz")


def test_grey_output_says_grey_and_one_image_is_singular(tmp_path: Path) -> None:
    write_image(tmp_path / "in" / "a.jpg", sample_image(crop=100))
    one = icsd("compress", "in/a.jpg", "-o", "a.png", "--grayscale", "--colors", "8", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert "(20x20 px, 8 grey levels, kmeans)" in one.stdout.splitlines()[2]
    batch = icsd("batch", "in", "--output-dir", "out", "--grayscale", "--workers", "1", cwd=tmp_path)
    assert batch.returncode == 0, batch.stderr
    lines = batch.stderr.strip().splitlines()
    assert re.search(r"a\.jpg: 100x100 -> 20x20 px, .* 16 grey levels, kmeans", batch.stderr)
    assert "icsd stopped: 1 grey image done, 0 failed" in lines[-1]


def test_batch_names_its_output_folder_on_its_first_line(tmp_path: Path) -> None:
    write_image(tmp_path / "photos" / "a.jpg", sample_image(crop=60))
    done = icsd("batch", "photos", "--workers", "1", cwd=tmp_path)  # the default output: ./Compressed
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.endswith(f"batch: {tmp_path / 'photos'} -> {tmp_path / 'Compressed'}, kmeans, 16 colours, "
                          "1 process workers"), first
    assert (tmp_path / "Compressed" / "a.png").exists()


@pytest.mark.parametrize(
    ("strategy", "env", "module"),
    [("sklearn-kmeans", {}, "sklearn"), ("mbkm", {}, "sklearn"), ("kmeans", {"ICSD_PURE_NUMPY": "1"}, "scipy")],
)
def test_compress_times_the_work_not_the_imports(tmp_path: Path, strategy: str, env: dict[str, str],
                                                 module: str) -> None:
    """The reported time is the image's: scikit-learn (1-2 s), or SciPy when the compiled kernels are not
    built (~1 s), is imported before the clock starts."""
    write_image(tmp_path / "a.jpg", sample_image(crop=100))
    script = (
        "import sys, time\n"
        "from icsd.cli import main\n"
        "start = time.perf_counter()\n"
        "code = main(['compress', 'a.jpg', '--strategy', sys.argv[1]])\n"
        "print('wall', time.perf_counter() - start, 'loaded', sys.argv[2] in sys.modules)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, strategy, module], cwd=tmp_path, env=clean_env(**env),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    reported = float(re.search(r"time: +([\d.]+) s", done.stdout).group(1))
    wall = re.search(r"wall ([\d.]+) loaded True", done.stdout)
    assert wall, done.stdout
    # What the command spent outside compress() (mostly that import) is not in the time shown; compared with the
    # same process's wall time rather than with a fixed bound, so a slow machine passes.
    assert reported < float(wall.group(1)) / 2, done.stdout


def test_as_typed_names_each_setting_by_its_source(tmp_path: Path) -> None:
    """In-process: flag > environment > .env line; unset and unknown names stay as written."""
    from icsd.settings import as_typed

    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nexport ICSD_SCALE=0.5\nICSD_COLORS=3\nICSD_COLORS=300\n")
    message = "ICSD_COLORS, ICSD_SCALE, ICSD_SIZE, ICSD_MAX_PIXELS, ICSD_BITS, ICSD_NOPE"
    typed = as_typed(message, {"size": "--size"}, environ={"ICSD_MAX_PIXELS": "9", "ICSD_BITS": ""}, env_file=dotenv)
    assert typed == (f"ICSD_COLORS ({dotenv} line 4), ICSD_SCALE ({dotenv} line 2), --size, ICSD_MAX_PIXELS, "
                     "ICSD_BITS, ICSD_NOPE")
