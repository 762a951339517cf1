"""Prometheus metrics for the daemon (optional extra: `pip install 'icsd[metrics]'`).

The daemon always talks to one interface: `Metrics` when a metrics port is configured,
`NullMetrics` (same methods, no effect) otherwise — so no `if metrics:` at every call site.
Each `Metrics` owns a private `CollectorRegistry`, so tests and several instances never clash over
the process-global default registry. prometheus-client is imported lazily: the core install
does not need it.
"""

from __future__ import annotations

import logging
import math
import platform
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from icsd.errors import SettingsError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["PSNR_BUCKETS", "SECONDS_BUCKETS", "Metrics", "NullMetrics", "create_metrics"]

logger = logging.getLogger("icsd.metrics")

# One image takes ~10 ms (tiny, size-only) to tens of seconds (big photo, sklearn k-means).
SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
# PSNR of an output against its downsampled image: ~22 dB (2 colours) to ~50 dB (256 colours of a photo).
PSNR_BUCKETS = (20.0, 25.0, 28.0, 30.0, 32.0, 34.0, 36.0, 38.0, 40.0, 45.0, 50.0)


class Metrics:
    """Counters, gauges and a histogram under the `icsd_` prefix, served over HTTP by `start()`.

    Raises `SettingsError` when prometheus-client is not installed.
    """

    def __init__(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise SettingsError(
                "metrics need prometheus-client: pip install 'icsd[metrics]' (or leave ICSD_METRICS_PORT unset)"
            ) from None
        self.registry: CollectorRegistry = prom.CollectorRegistry()
        r = self.registry
        self._done = prom.Counter("icsd_images_done", "Images compressed and written.", ["strategy"], registry=r)
        self._failed = prom.Counter("icsd_images_failed", "Images that failed to compress.", ["strategy"], registry=r)
        self._bytes_in = prom.Counter("icsd_bytes_in", "Bytes of the originals of written images.", registry=r)
        self._bytes_out = prom.Counter("icsd_bytes_out", "Bytes written as compressed images.", registry=r)
        self._seconds = prom.Histogram(
            "icsd_image_processing_seconds",
            "Wall time to compress one image in a worker.",
            ["strategy"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self._psnr = prom.Histogram(
            "icsd_image_psnr_db",
            "PSNR of each output against the downsampled image (not observed for size-only or exact outputs).",
            ["strategy"],
            buckets=PSNR_BUCKETS,
            registry=r,
        )
        self._queue = prom.Gauge("icsd_queue_depth", "Images waiting for a worker.", registry=r)
        self._in_flight = prom.Gauge("icsd_in_flight", "Images being compressed right now.", registry=r)
        self._runtime = prom.Gauge("icsd_runtime_seconds", "Cumulative processing runtime in seconds.", registry=r)
        started = time.monotonic()
        self._runtime_source: Callable[[], float] = lambda: time.monotonic() - started
        self._runtime.set_function(self._read_runtime)
        prom.Info("icsd_build", "Version of the running daemon.", registry=r).info(
            {"version": _version(), "python": platform.python_version()}
        )
        # Standard process_* metrics (RSS, CPU seconds, open fds) of the daemon's main process.
        prom.ProcessCollector(registry=r)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- what the daemon records ------------------------------------------------------------
    def image_done(
        self, strategy: str, bytes_in: int, bytes_out: int, seconds: float, *, psnr: float | None = None
    ) -> None:
        """One image written: count it, its bytes before/after, how long the worker took, and its PSNR."""
        self._done.labels(strategy=strategy).inc()
        self._bytes_in.inc(bytes_in)
        self._bytes_out.inc(bytes_out)
        self._seconds.labels(strategy=strategy).observe(seconds)
        if psnr is not None and math.isfinite(psnr):
            self._psnr.labels(strategy=strategy).observe(psnr)

    def image_failed(self, strategy: str) -> None:
        """One image given up on (moved to the failed folder or out of retries)."""
        self._failed.labels(strategy=strategy).inc()

    def set_queue_depth(self, n: int) -> None:
        self._queue.set(n)

    def set_in_flight(self, n: int) -> None:
        self._in_flight.set(n)

    def set_runtime_source(self, source: Callable[[], float]) -> None:
        """Read `icsd_runtime_seconds` from `source()` at scrape time (default: seconds since creation).

        The daemon passes its cumulative runtime (e.g. carried across restarts by the journal).
        """
        self._runtime_source = source

    def _read_runtime(self) -> float:
        # Called at scrape time in the HTTP thread: a failing source must not break the whole scrape.
        try:
            return float(self._runtime_source())
        except Exception:
            logger.debug("runtime source failed", exc_info=True)
            return math.nan

    # -- serving ----------------------------------------------------------------------------
    @property
    def port(self) -> int | None:
        """The bound port while serving (useful after `start(port=0)`), else None."""
        return None if self._server is None else int(self._server.server_port)

    def start(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve `/metrics` from a daemon thread; port 0 picks a free port. Returns the bound port.

        Binds to loopback by default: metrics reveal file counts and timing, so exposing them
        wider is an explicit choice (`ICSD_METRICS_HOST`).
        """
        if self._server is not None:
            raise RuntimeError("metrics server already started")
        from prometheus_client import start_http_server

        try:
            # prometheus-client >= 0.20 returns (server, thread); we keep both to shut down cleanly.
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise SettingsError(
                f"cannot serve metrics on {host}:{port} (ICSD_METRICS_HOST/ICSD_METRICS_PORT): {exc.strerror or exc}"
            ) from None
        return self.port or 0

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and release the port; safe to call twice or before `start()`."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()  # shutdown() alone leaves the listening socket bound
        if thread is not None:
            thread.join(timeout)


class NullMetrics:
    """Metrics switched off: the same methods as `Metrics`, doing nothing."""

    port: int | None = None

    def image_done(
        self, strategy: str, bytes_in: int, bytes_out: int, seconds: float, *, psnr: float | None = None
    ) -> None:
        pass

    def image_failed(self, strategy: str) -> None:
        pass

    def set_queue_depth(self, n: int) -> None:
        pass

    def set_in_flight(self, n: int) -> None:
        pass

    def set_runtime_source(self, source: Callable[[], float]) -> None:
        pass

    def start(self, port: int, host: str = "127.0.0.1") -> int:
        return 0

    def stop(self, timeout: float = 5.0) -> None:
        pass


def create_metrics(port: int | None, host: str = "127.0.0.1") -> Metrics | NullMetrics:
    """`NullMetrics` when `port` is None, else a started `Metrics` (SettingsError if unavailable)."""
    if port is None:
        return NullMetrics()
    metrics = Metrics()
    bound = metrics.start(port, host)
    logging.getLogger("icsd").info("serving Prometheus metrics on http://%s:%d/metrics", host, bound)
    return metrics


def _version() -> str:
    from importlib import metadata  # only when metrics are served: ~10 ms of every start-up otherwise

    try:
        return metadata.version("icsd")
    except metadata.PackageNotFoundError:
        return "unknown"
