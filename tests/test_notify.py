"""sd_notify over real unix datagram sockets: path and abstract addresses, watchdog pinging."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from icsd.daemon.notify import Notifier, WatchdogPinger


class Receiver:
    """The service manager's end: a bound datagram socket that collects messages."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []

    def wait_for(self, predicate, timeout: float = 5.0) -> list[str]:
        """Receive until `predicate(messages)` holds; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.messages):
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {timeout}s; received {self.messages!r}")
            self.drain_once()
        return self.messages

    def drain_once(self) -> None:
        with contextlib.suppress(TimeoutError):
            self.messages.append(self.sock.recv(4096).decode())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receiver(tmp_path, monkeypatch) -> Iterator[Receiver]:
    path = str(tmp_path / "notify.sock")
    rx = Receiver(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield rx
    rx.close()


def test_ready_status_stopping_arrive_as_datagrams(receiver):
    notifier = Notifier()
    assert notifier.enabled
    assert notifier.ready()
    assert notifier.status("watching /srv/icsd\nqueued 3")
    assert notifier.stopping(status="draining 2 jobs")
    assert notifier.notify(MAINPID=42, STATUS="x")
    messages = receiver.wait_for(lambda m: len(m) == 4)
    assert messages == [
        "READY=1",
        "STATUS=watching /srv/icsd\\nqueued 3",  # newline escaped as in every line icsd writes: the protocol has none
        "STOPPING=1\nSTATUS=draining 2 jobs",
        "MAINPID=42\nSTATUS=x",
    ]
    notifier.close()


def test_abstract_socket_address(monkeypatch):
    name = f"icsd-test-{uuid.uuid4().hex}"
    rx = Receiver("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notifier = Notifier()
        assert notifier.ready(status="up")
        assert rx.wait_for(lambda m: len(m) == 1) == ["READY=1\nSTATUS=up"]
        notifier.close()
    finally:
        rx.close()


def test_unset_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.watchdog_interval() is None
    pinger = WatchdogPinger(notifier, healthy=lambda: True)
    assert pinger.start() is False


def test_unsupported_address_is_ignored():
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_socket_gone_never_raises(tmp_path, caplog):
    path = tmp_path / "gone.sock"
    rx = Receiver(str(path))
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    assert notifier.ready()
    rx.close()
    path.unlink()
    caplog.set_level("DEBUG", logger="icsd.notify")
    assert notifier.status("a") is False
    assert notifier.watchdog() is False
    failures = [r for r in caplog.records if r.name == "icsd.notify"]
    assert len(failures) == 1  # logged once, at debug
    assert failures[0].levelname == "DEBUG"
    # The manager recreates its socket: we reconnect on the next message.
    rx = Receiver(str(path))
    try:
        assert notifier.status("back")
        assert rx.wait_for(lambda m: len(m) == 1) == ["STATUS=back"]
    finally:
        rx.close()
        notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # inherited, not for us
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "x"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env, expected):
    notifier = Notifier({"NOTIFY_SOCKET": "/run/systemd/notify", **env})
    assert notifier.watchdog_interval() == expected


def test_extend_timeout(receiver):
    notifier = Notifier()
    assert notifier.extend_timeout(30)
    assert receiver.wait_for(lambda m: len(m) == 1) == ["EXTEND_TIMEOUT_USEC=30000000"]
    notifier.close()


def test_pinger_pings_while_healthy_and_stops_when_unhealthy(receiver, monkeypatch, caplog):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    notifier = Notifier()
    is_healthy = threading.Event()
    is_healthy.set()
    pinger = WatchdogPinger(notifier, healthy=is_healthy.is_set, status=lambda: "queued 0")
    assert pinger.interval == pytest.approx(0.1)
    assert pinger.start()
    try:
        receiver.wait_for(lambda m: m.count("WATCHDOG=1") >= 3)
        assert "STATUS=queued 0" in receiver.messages

        is_healthy.clear()
        # A ping already in flight at the flip may still land; three status-only ticks in a row prove
        # the pinger noticed. From then on no ping may arrive.
        receiver.wait_for(lambda m: m[-3:] == ["STATUS=queued 0"] * 3)
        pings_when_unhealthy = receiver.messages.count("WATCHDOG=1")
        seen = len(receiver.messages)
        receiver.wait_for(lambda m: len(m) >= seen + 3)
        assert receiver.messages.count("WATCHDOG=1") == pings_when_unhealthy

        is_healthy.set()
        receiver.wait_for(lambda m: m.count("WATCHDOG=1") > pings_when_unhealthy)
    finally:
        pinger.stop()
        notifier.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "icsd.notify" and r.levelname == "WARNING"]
    assert len(warnings) == 2 and "withholding" in warnings[0] and "resuming" in warnings[1]


def test_pinger_health_check_raising_counts_as_unhealthy(receiver, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    notifier = Notifier()

    def broken() -> bool:
        raise RuntimeError("observer gone")

    pinger = WatchdogPinger(notifier, healthy=broken)
    assert pinger.tick() is False
    receiver.drain_once()
    assert receiver.messages == []
    notifier.close()


def test_pinger_stop_event_ends_thread(receiver, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    stop = threading.Event()
    notifier = Notifier()
    pinger = WatchdogPinger(notifier, healthy=lambda: True, stop_event=stop)
    assert pinger.start()
    receiver.wait_for(lambda m: "WATCHDOG=1" in m)
    stop.set()
    pinger.stop(timeout=5)
    assert not any(t.name == "icsd-watchdog" for t in threading.enumerate())
    notifier.close()


def test_pinger_status_only_without_watchdog(receiver):
    notifier = Notifier()
    pinger = WatchdogPinger(notifier, healthy=lambda: True, status=lambda: "idle", status_interval=0.05)
    assert pinger.active
    assert pinger.tick() is False  # no watchdog requested: status only
    assert receiver.wait_for(lambda m: len(m) == 1) == ["STATUS=idle"]
    notifier.close()


def test_a_manager_that_stops_reading_never_blocks_the_sender(tmp_path: Path) -> None:
    """A full receive queue drops messages; it must not hang the daemon (e.g. STOPPING=1 at shutdown)."""
    path = tmp_path / "full.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        results = [notifier.status("x" * 1000) for _ in range(2000)]  # far more than the queue holds
        assert results[0] is True and results[-1] is False
        assert notifier.stopping() is False  # returns at once instead of blocking
        receiver.recv(4096)
        assert notifier.ready() is True  # room again: sending works without reopening anything
        notifier.close()
    finally:
        receiver.close()
