"""systemd readiness, status and watchdog notifications (the sd_notify protocol, no libsystemd).

The protocol is one unix datagram of newline-separated `KEY=value` lines sent to `$NOTIFY_SOCKET`
(a path, or an abstract socket when it starts with `@`). Everything here is best effort: when the
daemon does not run under systemd, or the socket went away, calls do nothing and never raise —
the service must not die because its supervisor channel is gone.

The watchdog contract (`WatchdogSec=` in the unit): systemd sets `$WATCHDOG_USEC` and
`$WATCHDOG_PID`; the main process sends `WATCHDOG=1` at least every half of that interval, and only
while it is really healthy — a pinger that keeps pinging from a side thread while the pipeline is
wedged would defeat the point, hence `WatchdogPinger` asks a `healthy()` callable before each ping.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

from icsd.daemon.logs import one_line

__all__ = ["Notifier", "WatchdogPinger"]

logger = logging.getLogger("icsd.notify")


class Notifier:
    """Send sd_notify messages to the socket named by `$NOTIFY_SOCKET`, read once at construction.

    `env` defaults to `os.environ`; `pid` to `os.getpid()` (both injectable for tests).
    """

    def __init__(self, env: Mapping[str, str] | None = None, *, pid: int | None = None) -> None:
        env = os.environ if env is None else env
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = _watchdog_usec(env, os.getpid() if pid is None else pid)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failure_logged = False

    @property
    def enabled(self) -> bool:
        """True when a notify socket is configured (we run under a service manager that listens)."""
        return self._address is not None

    def notify(self, **fields: object) -> bool:
        """Send one datagram of `KEY=value` lines, e.g. `notify(READY=1, STATUS="scanning")`.

        Returns whether it was sent. Newlines inside values are flattened to spaces: the protocol
        has no escaping and a newline would start a new (bogus) assignment.
        """
        if self._address is None or not fields:
            return False
        message = "\n".join(f"{key}={one_line(str(value))}" for key, value in fields.items())
        return self._send(message.encode("utf-8", "replace"))

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd that start-up finished (Type=notify units stay 'activating' until this)."""
        return self.notify(READY=1) if status is None else self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """Free-form one-line status shown by `systemctl status icsd`."""
        return self.notify(STATUS=text)

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd that a graceful shutdown (drain) has begun."""
        return self.notify(STOPPING=1) if status is None else self.notify(STOPPING=1, STATUS=status)

    def watchdog(self) -> bool:
        """Keep-alive ping: resets the `WatchdogSec=` timer."""
        return self.notify(WATCHDOG=1)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more before start/stop times out (e.g. a long startup scan or drain)."""
        return self.notify(EXTEND_TIMEOUT_USEC=max(1, round(seconds * 1_000_000)))

    def watchdog_interval(self) -> float | None:
        """Seconds between keep-alive pings (half of `$WATCHDOG_USEC`), or None when not expected.

        None when there is no notify socket, `$WATCHDOG_USEC` is missing or invalid, or
        `$WATCHDOG_PID` names another process (the variables were inherited, not meant for us).
        """
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def close(self) -> None:
        """Close the datagram socket; a later call reopens it."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _send(self, data: bytes) -> bool:
        # One lock for lazy creation and sending: the pinger thread and the main thread both send.
        with self._lock:
            try:
                if self._sock is None:
                    # Non-blocking: if the manager is not reading, drop the message rather than hang
                    # the daemon (a blocked STOPPING=1 would stall shutdown).
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                    )
                self._sock.sendto(data, self._address)
            except BlockingIOError:
                return False  # receiver's queue is full; the next ping or status will try again
            except OSError as exc:
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None  # reopen next time: the manager may have recreated the socket
                if not self._failure_logged:
                    self._failure_logged = True
                    logger.debug("cannot send to NOTIFY_SOCKET %r: %s", self._address, exc)
                return False
            return True


class WatchdogPinger:
    """Thread that sends `WATCHDOG=1` every interval while `healthy()` holds, plus optional `STATUS=`.

    The daemon passes a health check such as "observer thread alive and pool making progress".
    When it returns False (or raises) the ping is withheld, so systemd restarts a wedged daemon
    after `WatchdogSec=`. `status()` (optional) supplies the text for `systemctl status`.
    Instead of `start()`, a daemon loop may call `tick()` itself every `interval` seconds.
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        healthy: Callable[[], bool],
        status: Callable[[], str] | None = None,
        interval: float | None = None,
        status_interval: float = 10.0,
        stop_event: threading.Event | None = None,
    ) -> None:
        self._notifier = notifier
        self._healthy = healthy
        self._status = status
        watchdog = notifier.watchdog_interval()
        self._pings = watchdog is not None
        # Without a watchdog we still refresh the status line, at a calmer pace.
        if interval is None:
            interval = watchdog if watchdog is not None else status_interval
        self.interval = interval
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self._thread: threading.Thread | None = None
        self._was_healthy = True

    @property
    def active(self) -> bool:
        """True when there is something to send: a notify socket and a watchdog or a status source."""
        return self._notifier.enabled and (self._pings or self._status is not None)

    def start(self) -> bool:
        """Start the background thread; returns False (and starts nothing) when not `active`."""
        if not self.active or self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._run, name="icsd-watchdog", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop pinging and wait for the thread to end."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def tick(self) -> bool:
        """One round: ping if healthy, refresh the status. Returns whether a ping was sent."""
        healthy = self._check()
        pinged = self._notifier.watchdog() if (healthy and self._pings) else False
        if self._status is not None:
            try:
                text = self._status()
            except Exception:
                logger.debug("status callback failed", exc_info=True)
            else:
                self._notifier.status(text)
        return pinged

    def _run(self) -> None:
        # Ping at once, then every interval; Event.wait doubles as the sleep and the stop signal.
        self.tick()
        while not self.stop_event.wait(self.interval):
            self.tick()

    def _check(self) -> bool:
        try:
            healthy = bool(self._healthy())
        except Exception:
            logger.exception("watchdog health check raised; treating the daemon as unhealthy")
            healthy = False
        # Log transitions only, so a stuck daemon does not flood the journal every interval.
        if self._pings and healthy != self._was_healthy:
            if healthy:
                logger.warning("health check passes again; resuming watchdog pings")
            else:
                logger.warning(
                    "health check failed; withholding watchdog pings (systemd restarts icsd "
                    "if this lasts longer than WatchdogSec)"
                )
        self._was_healthy = healthy
        return healthy


def _socket_address(value: str) -> str | None:
    """`$NOTIFY_SOCKET` → sendto() address: abstract sockets get their leading NUL."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    if value:
        # e.g. systemd ≥ 254 "vsock:CID:PORT" for VMs; not needed on a host, so treat as absent.
        logger.debug("unsupported NOTIFY_SOCKET %r; notifications disabled", value)
    return None


def _watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    """Positive `$WATCHDOG_USEC` meant for `pid` (same rules as sd_watchdog_enabled(3)), else None."""
    raw_pid = env.get("WATCHDOG_PID", "")
    if raw_pid:
        try:
            if int(raw_pid) != pid:
                return None
        except ValueError:
            return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None
