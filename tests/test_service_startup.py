"""Service start-up releases whatever it took when a later step fails (in-process: the leak would be ours).

A daemon process that fails at start-up exits and the kernel closes its files, so a subprocess cannot show a
leak; an in-process Service can: every file descriptor, lock and listening port must be back afterwards.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

import icsd.daemon.service as service_module
from icsd.daemon.folders import hold_lock
from icsd.daemon.service import Service
from icsd.errors import SettingsError
from icsd.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("ICSD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


def open_fds() -> dict[str, str]:
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
    return fds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_all_released(tmp_path: Path, before: dict[str, str], port: int | None = None) -> None:
    leaked = {fd: target for fd, target in open_fds().items() if fd not in before}
    assert not leaked, f"start-up left open: {leaked}"
    for lock in (tmp_path / "out" / ".icsd" / "lock", tmp_path / "out" / ".icsd" / "output.lock"):
        hold_lock(lock, str(lock)).close()  # TransientError if still held
    if port is not None:
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))  # OSError if the metrics server still listens


def test_an_executor_that_cannot_start_leaves_journal_metrics_and_locks_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executor is created after the locks, the journal and the metrics server. Its real failures take
    seconds (an unreachable Dask scheduler: ~25 s), so this one is injected at create_executor."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise SettingsError("ICSD_EXECUTOR: no workers for you")

    monkeypatch.setattr(service_module, "create_executor", refuse)
    port = free_port()
    service = Service(load_settings(input_dir=tmp_path / "in", output_dir=tmp_path / "out", metrics_port=port))
    before = open_fds()
    with pytest.raises(SettingsError, match="no workers for you"):
        service.run()
    assert (tmp_path / "out" / ".icsd" / "journal.sqlite3").exists()  # it was opened, so it had to be closed
    assert_all_released(tmp_path, before, port)


def test_a_metrics_port_in_use_leaves_journal_and_locks_released(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        service = Service(load_settings(input_dir=tmp_path / "in", output_dir=tmp_path / "out", metrics_port=port))
        before = open_fds()
        with pytest.raises(SettingsError, match="cannot serve metrics"):
            service.run()
        assert_all_released(tmp_path, before)


def test_a_second_lock_that_is_taken_releases_the_first(tmp_path: Path) -> None:
    settings = load_settings(input_dir=tmp_path / "in", output_dir=tmp_path / "out", state_dir=tmp_path / "state")
    service = Service(settings)
    other = hold_lock(tmp_path / "out" / ".icsd" / "output.lock", "the output folder")  # another icsd's
    try:
        before = open_fds()
        with pytest.raises(Exception, match=r"another icsd \(pid \d+\) is already using the output folder"):
            service.run()
        leaked = {fd: target for fd, target in open_fds().items() if fd not in before}
        assert not leaked
        hold_lock(tmp_path / "state" / "lock", "the state folder").close()
    finally:
        other.close()


def test_a_batch_run_in_process_releases_everything_it_took(tmp_path: Path) -> None:
    """The normal way out: a batch over one image, then every descriptor, lock and the pool are released."""
    from icsd.daemon.fork_server import start_worker_server
    from tests.harness import sample_image, write_image

    start_worker_server()  # the fork server lives as long as this process: started before counting
    write_image(tmp_path / "in" / "a.jpg", sample_image(crop=64))
    service = Service(load_settings(input_dir=tmp_path / "in", output_dir=tmp_path / "out", workers=1),
                      mode="batch")
    before = open_fds()
    outcome = service.run()
    assert (outcome.exit_code, outcome.tally.done) == (0, 1)
    assert (tmp_path / "out" / "a.png").is_file()
    assert_all_released(tmp_path, before)
