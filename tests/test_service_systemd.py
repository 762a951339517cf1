"""The daemon as a service: sd_notify to a real socket, watchdog health, metrics over HTTP, JSON logs,
and the Dask executor giving the same outputs as the process pool."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import clean_env, descendants, sample_image, wait_until, write_image


class NotifyListener:
    """A unix datagram socket standing in for systemd's notify socket.

    Like systemd, it reads continuously (a reader thread): the kernel queue of a unix datagram
    socket is short (net.unix.max_dgram_qlen), and a silent reader would make the daemon drop messages.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def drain(self) -> list[str]:
        with self._lock:
            return [m for _, m in self.messages]

    def has(self, text: str) -> bool:
        return any(text in message for message in self.drain())

    def ping_times(self) -> list[float]:
        with self._lock:
            return [at for at, message in self.messages if "WATCHDOG=1" in message]

    def pings_since(self, since: float) -> int:
        return sum(1 for at in self.ping_times() if at >= since)

    def close(self) -> None:
        self._stop.set()
        self._reader.join(5)
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    notify = NotifyListener(tmp_path / "notify.sock")
    yield notify
    notify.close()


def test_ready_status_watchdog_and_stopping_reach_the_notify_socket(start_daemon, listener) -> None:
    env = clean_env(NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC="300000")
    daemon = start_daemon(env=env)
    wait_until(lambda: listener.has("READY=1"), what="READY=1")
    assert any("STATUS=done 0, failed 0" in m for m in listener.drain())
    started = time.monotonic()
    wait_until(lambda: listener.pings_since(started) >= 3, what="three WATCHDOG=1 pings")
    write_image(daemon.input / "a.jpg", sample_image(crop=120))
    daemon.wait_for_outputs(["a.png"])
    assert daemon.stop() == 0
    assert listener.has("STOPPING=1")


def test_watchdog_pings_stop_while_the_pool_is_stalled(start_daemon, listener) -> None:
    env = clean_env(NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC="200000")
    daemon = start_daemon("--stall-seconds", "1", env=env)
    write_image(daemon.input / "first.jpg", sample_image(crop=120))
    daemon.wait_for_outputs(["first.png"])  # the pool's workers exist now
    stopped = descendants(daemon.process.pid)
    assert stopped, "no worker processes found"
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        write_image(daemon.input / "stuck.jpg", sample_image(crop=120))
        wait_until(lambda: "stuck.jpg" in daemon.log() or listener.pings_since(time.monotonic()) == 0,
                   timeout=10, what="the job to be submitted")
        # after the stall bound passes, the pinger must fall silent for a whole window
        wait_until(lambda: _silent_for(listener, 1.0), timeout=30, what="watchdog pings to stop")
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    daemon.wait_for_outputs(["first.png", "stuck.png"])
    resumed = time.monotonic()
    wait_until(lambda: listener.pings_since(resumed) >= 2, what="pings to resume once the pool is healthy")
    assert daemon.stop() == 0


def _silent_for(listener: NotifyListener, window: float) -> bool:
    """True once a full `window` (5 ping intervals) passed without a WATCHDOG=1."""
    pings = listener.ping_times()
    return bool(pings) and time.monotonic() - pings[-1] >= window


def test_metrics_are_scraped_over_http(start_daemon) -> None:
    daemon = start_daemon("--metrics-port", "0")
    daemon.wait_for_log("serving Prometheus metrics on http://127.0.0.1:")
    port = int(re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", daemon.log()).group(1))
    write_image(daemon.input / "a.jpg", sample_image(crop=120))
    write_image(daemon.input / "b.png", sample_image("flower.jpg", crop=120))
    daemon.wait_for_outputs(["a.png", "b.png"])

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return response.read().decode()

    # An output appears (rename) just before its journal row and counters are updated: poll, don't race.
    settled = ('icsd_images_done_total{strategy="kmeans"} 2.0', "icsd_queue_depth 0.0", "icsd_in_flight 0.0")

    def settled_scrape() -> str:
        text = scrape()
        return text if all(marker in text for marker in settled) else ""

    text = str(wait_until(settled_scrape, what="metrics to settle"))
    assert re.search(r"^icsd_bytes_in_total [1-9]", text, re.M)
    assert re.search(r'^icsd_image_processing_seconds_count\{strategy="kmeans"\} 2\.0', text, re.M)
    assert re.search(r"^icsd_runtime_seconds [0-9.]+", text, re.M)
    assert daemon.stop() == 0


def test_json_logs_carry_the_progress_fields(start_daemon) -> None:
    daemon = start_daemon("--log-format", "json")
    daemon.wait_ready()
    write_image(daemon.input / "a.jpg", sample_image(crop=120))
    daemon.wait_for_outputs(["a.png"])
    assert daemon.stop() == 0
    records = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
    progress = [r for r in records if r.get("name") == "a.jpg"]
    assert len(progress) == 1
    fields = progress[0]
    assert (fields["width_in"], fields["height_in"], fields["width_out"], fields["height_out"]) == (120, 120, 24, 24)
    assert fields["strategy"] == "kmeans" and fields["colors"] <= 16 and fields["done"] == 1
    assert fields["bytes_out"] < fields["bytes_in"] and 0 < fields["reduction_pct"] < 100
    assert {"ts", "level", "logger", "message", "seconds", "queued", "runtime_seconds"} <= fields.keys()
    assert records[-1]["message"].startswith("icsd stopped: 1 image done")


@pytest.mark.timeout(240)
def test_dask_executor_gives_the_process_pools_outputs(tmp_path: Path) -> None:
    source = tmp_path / "in"
    write_image(source / "china.jpg", sample_image(crop=200))
    write_image(source / "sub" / "flower.png", sample_image("flower.jpg", crop=200))
    outputs = {}
    for executor in ("process", "dask"):
        out = tmp_path / f"out-{executor}"
        done = subprocess.run(
            [sys.executable, "-m", "icsd", "batch", str(source), "--output-dir", str(out), "--workers", "2",
             "--executor", executor, "--strategy", "sklearn-minibatch", "--colors", "32"],
            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=200, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
        assert "icsd stopped: 2 images done, 0 failed" in done.stderr
        outputs[executor] = {p.relative_to(out).as_posix(): p.read_bytes()
                             for p in out.rglob("*.png") if ".icsd" not in p.parts}
        assert not list(out.rglob(".icsd-tmp-*"))  # Dask's local workers spool their outputs, as the pool's do
    assert sorted(outputs["process"]) == ["china.png", "sub/flower.png"]
    assert outputs["dask"] == outputs["process"]
