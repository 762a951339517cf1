"""The daemon end to end: a real `icsd run` subprocess, real files, real signals."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from PIL import Image

from icsd.daemon.fork_server import WORKER_ENV, worker_environment
from tests.harness import clean_env, descendants, sample_image, wait_until, write_image


def test_existing_files_are_compressed_then_sigterm_exits_zero_with_summary(start_daemon, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "china.jpg")
    write_image(tmp_path / "in" / "nested" / "flower.png", sample_image("flower.jpg"))
    daemon = start_daemon()
    daemon.wait_for_outputs(["china.png", "nested/flower.png"])
    with Image.open(daemon.output / "china.png") as out:
        assert out.mode == "P" and out.size == (128, 86)  # 640x427 / 5, last row and column kept
        assert len(out.getcolors()) <= 16
    assert daemon.stop(signal.SIGTERM) == 0
    log = daemon.log()
    assert "icsd stopped: 2 images done, 0 failed" in log
    assert sorted(daemon.progress_names()) == ["china.jpg", "nested/flower.png"]
    assert "-> 128x86 px" in log and "16 colours, kmeans" in log and "runtime 0:00:" in log
    assert (tmp_path / "in" / "china.jpg").exists()  # originals kept by default


def test_copy_slow_writer_and_rename_each_give_exactly_one_output(start_daemon, tmp_path: Path) -> None:
    source = tmp_path / "source.jpg"
    data = write_image(source)
    daemon = start_daemon("--stable-seconds", "1")  # the default quiet period: 10x the writer's pauses
    daemon.wait_ready()

    shutil.copy(source, daemon.input / "copied.jpg")

    def slow_writer() -> None:
        with open(daemon.input / "slow.jpg", "wb") as handle:
            for start in range(0, len(data), len(data) // 6 + 1):
                handle.write(data[start : start + len(data) // 6 + 1])
                handle.flush()
                threading.Event().wait(0.1)  # a camera trickling bytes, well inside the 1 s quiet period

    writer = threading.Thread(target=slow_writer)
    writer.start()
    partial = daemon.input / ".renamed.jpg.part"
    partial.write_bytes(data)
    os.rename(partial, daemon.input / "renamed.jpg")
    writer.join()

    daemon.wait_for_outputs(["copied.png", "renamed.png", "slow.png"])
    assert daemon.stop() == 0
    assert sorted(daemon.progress_names()) == ["copied.jpg", "renamed.jpg", "slow.jpg"]
    assert "FAILED" not in daemon.log()


def test_junk_is_ignored_and_a_corrupt_file_fails_without_stopping_the_daemon(start_daemon, tmp_path: Path) -> None:
    daemon = start_daemon()
    daemon.wait_ready()
    for junk in (".DS_Store", "Thumbs.db", "notes.txt", "upload.jpg.part", "x.tmp", "backup.jpg~", ".hidden.jpg"):
        (daemon.input / junk).write_bytes(b"junk")
    (daemon.input / "broken.jpg").write_bytes(b"this is text, not a JPEG")
    daemon.wait_for_log("FAILED broken.jpg")
    write_image(daemon.input / "after.jpg")
    daemon.wait_for_outputs(["after.png"])
    assert daemon.failed() == ["broken.jpg", "broken.jpg.error.json"]
    assert not (daemon.input / "broken.jpg").exists()
    assert daemon.stop() == 0
    assert "icsd stopped: 1 image done, 1 failed" in daemon.log()
    for junk in ("DS_Store", "Thumbs", "notes", "upload", "x.tmp", "backup", "hidden"):
        assert junk not in daemon.log()


def test_two_inputs_with_one_output_name_do_not_overwrite_each_other(start_daemon, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "a.jpg")
    daemon = start_daemon()
    daemon.wait_for_outputs(["a.png"])
    write_image(daemon.input / "a.png", sample_image("flower.jpg"))
    daemon.wait_for_outputs(["a.png", "a.png.png"])
    assert daemon.stop() == 0
    with Image.open(daemon.output / "a.png") as first, Image.open(daemon.output / "a.png.png") as second:
        assert first.convert("RGB").tobytes() != second.convert("RGB").tobytes()


def test_sigint_stops_like_sigterm(start_daemon) -> None:
    daemon = start_daemon()
    daemon.wait_ready()
    assert daemon.stop(signal.SIGINT) == 0
    assert "icsd stopped: 0 images done, 0 failed" in daemon.log()


def test_restart_does_not_process_done_files_again(start_daemon, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "once.jpg")
    first = start_daemon()
    first.wait_for_outputs(["once.png"])
    assert first.stop() == 0
    second = start_daemon()
    second.wait_ready()
    write_image(second.input / "twice.jpg", sample_image("flower.jpg"))
    second.wait_for_outputs(["once.png", "twice.png"])
    assert second.stop() == 0
    assert second.progress_names() == ["twice.jpg"]


def test_settings_error_exits_with_config_code_and_one_line(start_daemon) -> None:
    daemon = start_daemon("--colors", "300")
    assert daemon.wait() == 78
    assert daemon.log().strip() == "icsd: error: --colors must be between 2 and 256, got 300"


def test_wait_until_reports_what_it_waited_for() -> None:
    try:
        wait_until(lambda: False, timeout=0.1, what="the impossible")
    except AssertionError as exc:
        assert "the impossible" in str(exc)
    else:
        raise AssertionError("wait_until did not time out")


def test_a_second_icsd_with_its_own_journal_but_the_same_output_folder_is_refused(start_daemon, tmp_path: Path) -> None:
    """Each with its own journal, both would write out/a.png (QA: a batch overwrote the daemon's output)."""
    first = start_daemon()
    first.wait_ready()
    write_image(tmp_path / "other" / "a.jpg", sample_image("flower.jpg", crop=96))
    second = subprocess.run(
        [sys.executable, "-m", "icsd", "batch", "other", "--output-dir", "out", "--state-dir", "state2"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert second.returncode == 75, second.stderr
    assert f"icsd: error: another icsd (pid {first.process.pid}) is already using the output folder " in second.stderr
    assert not (first.output / "a.png").exists()
    assert first.stop() == 0


def test_a_second_daemon_on_the_same_state_folder_is_refused(start_daemon) -> None:
    first = start_daemon()
    first.wait_ready()
    second = start_daemon()
    assert second.wait() == 75  # EX_TEMPFAIL: systemd restarts it (78, a bad setting, it would not)
    assert f"another icsd (pid {first.process.pid}) is already using the state folder" in second.log()
    write_image(first.input / "still.jpg", sample_image(crop=96))
    first.wait_for_outputs(["still.png"])  # the first one is unharmed
    assert first.stop() == 0


def test_daemon_leaves_the_image_stack_to_single_threaded_workers(start_daemon) -> None:
    """The daemon process itself never loads NumPy or Pillow (they are the workers' start-up cost, paid once
    in the fork server); the fork server and its workers run with one BLAS/OpenMP thread from the start."""
    daemon = start_daemon()
    write_image(daemon.input / "warm.jpg", sample_image(crop=96))
    daemon.wait_for_outputs(["warm.png"])
    daemon_maps = Path(f"/proc/{daemon.pid}/maps").read_text()
    assert "_multiarray_umath" not in daemon_maps and "PIL/_imaging" not in daemon_maps
    pool = [pid for pid in descendants(daemon.pid) if "_multiarray_umath" in _maps(pid)]
    assert pool  # the fork server and the workers
    tunables = worker_environment(os.environ).get("GLIBC_TUNABLES", os.environ.get("GLIBC_TUNABLES"))
    for pid in pool:
        env = _environ(pid)
        assert {"OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", f"GLIBC_TUNABLES={tunables}"} <= env, pid
    daemon_tunables = {item for item in _environ(daemon.pid) if item.startswith("GLIBC_TUNABLES=")}
    assert daemon_tunables == ({f"GLIBC_TUNABLES={os.environ['GLIBC_TUNABLES']}"} if "GLIBC_TUNABLES" in os.environ
                               else set())  # the daemon's own allocator is left as it was
    assert daemon.stop(signal.SIGTERM) == 0


def _environ(pid: int) -> set[str]:
    return set(Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0"))


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # exited meanwhile
        return ""


def test_starting_the_worker_server_leaves_this_process_environment_alone() -> None:
    from icsd.daemon.fork_server import WORKER_ENV, start_worker_server

    names = [*WORKER_ENV, "GLIBC_TUNABLES"]
    before = {name: os.environ.get(name) for name in names}
    start_worker_server()
    assert {name: os.environ.get(name) for name in names} == before


def test_workers_ask_glibc_for_huge_pages_unless_the_environment_already_decides() -> None:
    assert worker_environment({}) == {**WORKER_ENV, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    other = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert worker_environment(other)["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    for users_choice in ("glibc.malloc.hugetlb=0", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2"):
        assert worker_environment({"GLIBC_TUNABLES": users_choice}) == WORKER_ENV  # theirs is left as it is


WORKER_FIRST_IMAGES = """
import multiprocessing, os, sys
from icsd.daemon.fork_server import WORKER_PRELOAD
for name in WORKER_PRELOAD:
    __import__(name)
from icsd.daemon.executor import _init_worker, _run_job
from icsd.core.params import CompressParams
stopping = multiprocessing.get_context("forkserver").Event()  # what the executor hands its workers
preloaded = set(sys.modules)
_init_worker(os.getpid(), stopping)
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    for strategy in ("size-only", "kmeans"):
        for colors, grayscale in ((4, False), (16, False), (256, False), (16, True)):
            outcome = _run_job(data, CompressParams(strategy=strategy, colors=colors, grayscale=grayscale))
            assert outcome.result is not None, (path, strategy, outcome.error)
print(" ".join(sorted(set(sys.modules) - preloaded)))
"""


def test_a_worker_imports_nothing_the_fork_server_did_not_preload(tmp_path: Path) -> None:
    """A worker's own imports are paid before its first image, by every worker at once, on every start: the
    fork server's preload must cover the default strategies on JPEG and PNG, colour and grey (NumPy's unique()
    once imported numpy.ma there, ~15-20 ms per worker). scikit-learn stays a lazy import of its strategies."""
    jpeg, png = tmp_path / "china.jpg", tmp_path / "flower.png"
    write_image(jpeg)
    write_image(png, sample_image("flower.jpg", crop=200))
    done = subprocess.run([sys.executable, "-c", WORKER_FIRST_IMAGES, str(jpeg), str(png)], env=clean_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []


def test_the_launcher_imports_nothing_before_it_starts_the_worker_server() -> None:
    """`icsd run`/`batch` start the fork server first (icsd.launch), so the server loads the image stack while
    the daemon imports the rest: the launcher must stay free of the command line and its libraries."""
    script = "import sys, icsd.launch, icsd.daemon.fork_server; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], env=clean_env(), capture_output=True, text=True,
                          timeout=60, check=True)
    loaded = set(done.stdout.split())
    assert loaded.isdisjoint({"icsd.cli", "icsd.settings", "icsd.executor", "argparse", "logging",
                              "multiprocessing", "numpy", "PIL", "pydantic", "pydantic_settings"})
