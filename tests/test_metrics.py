"""Metrics served over real HTTP on a free loopback port, scraped with urllib."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from icsd.daemon.metrics import Metrics, NullMetrics, create_metrics
from icsd.errors import SettingsError

pytest.importorskip("prometheus_client")


def scrape(port: int) -> dict[str, float]:
    """GET /metrics and return {'name{labels}': value} for every sample line."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    m = Metrics()
    m.start(port=0)
    yield m
    m.stop()


def test_scrape_after_recording_images(metrics):
    assert metrics.port and metrics.port > 0
    metrics.image_done("kmeans", bytes_in=1000, bytes_out=250, seconds=0.2, psnr=33.1)
    metrics.image_done("kmeans", bytes_in=3000, bytes_out=750, seconds=1.5, psnr=41.0)
    metrics.image_done("kmeans", bytes_in=10, bytes_out=10, seconds=0.01, psnr=float("inf"))  # exact: not observed
    metrics.image_done("size-only", bytes_in=500, bytes_out=400, seconds=0.02)
    metrics.image_failed("kmeans")
    metrics.set_queue_depth(7)
    metrics.set_in_flight(2)
    metrics.set_runtime_source(lambda: 123.5)

    s = scrape(metrics.port)

    assert s['icsd_images_done_total{strategy="kmeans"}'] == 3
    assert s['icsd_images_done_total{strategy="size-only"}'] == 1
    assert s['icsd_images_failed_total{strategy="kmeans"}'] == 1
    assert s["icsd_bytes_in_total"] == 4510
    assert s["icsd_bytes_out_total"] == 1410
    assert s['icsd_image_processing_seconds_count{strategy="kmeans"}'] == 3
    assert s['icsd_image_processing_seconds_sum{strategy="kmeans"}'] == pytest.approx(1.71)
    assert s['icsd_image_processing_seconds_bucket{le="0.25",strategy="kmeans"}'] == 2
    assert s['icsd_image_processing_seconds_bucket{le="30.0",strategy="kmeans"}'] == 3
    assert s['icsd_image_psnr_db_count{strategy="kmeans"}'] == 2
    assert s['icsd_image_psnr_db_sum{strategy="kmeans"}'] == pytest.approx(74.1)
    assert s['icsd_image_psnr_db_bucket{le="34.0",strategy="kmeans"}'] == 1
    assert 'icsd_image_psnr_db_count{strategy="size-only"}' not in s
    assert s['icsd_image_processing_seconds_bucket{le="0.025",strategy="size-only"}'] == 1
    assert s["icsd_queue_depth"] == 7
    assert s["icsd_in_flight"] == 2
    assert s["icsd_runtime_seconds"] == 123.5
    build = [k for k in s if k.startswith("icsd_build_info{")]
    assert len(build) == 1 and 'version="' in build[0]
    assert "process_resident_memory_bytes" in s


def test_runtime_defaults_to_uptime(metrics):
    assert 0 <= scrape(metrics.port)["icsd_runtime_seconds"] < 60


def test_failing_runtime_source_does_not_break_the_scrape(metrics):
    metrics.set_runtime_source(lambda: 1 / 0)
    s = scrape(metrics.port)
    assert s["icsd_runtime_seconds"] != s["icsd_runtime_seconds"]  # NaN
    assert "icsd_queue_depth" in s


def test_instances_do_not_share_a_registry(metrics):
    other = Metrics()
    other.start(port=0)
    try:
        metrics.image_done("kmeans", 10, 5, 0.1)
        assert 'icsd_images_done_total{strategy="kmeans"}' not in scrape(other.port)
    finally:
        other.stop()


def test_stop_frees_the_port(metrics):
    port = metrics.port
    scrape(port)
    metrics.stop()
    assert metrics.port is None
    with pytest.raises(urllib.error.URLError):
        scrape(port)
    again = Metrics()
    assert again.start(port=port) == port
    again.stop()
    metrics.stop()  # idempotent


def test_port_in_use_is_a_settings_error(metrics):
    with pytest.raises(SettingsError, match=rf"127\.0\.0\.1:{metrics.port} .*ICSD_METRICS_PORT"):
        Metrics().start(port=metrics.port)


def test_missing_prometheus_client_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import now raises ImportError
    with pytest.raises(SettingsError, match=r"pip install 'icsd\[metrics\]'"):
        Metrics()
    with pytest.raises(SettingsError):
        create_metrics(port=0)
    assert isinstance(create_metrics(port=None), NullMetrics)


def test_null_metrics_accepts_every_call():
    m = create_metrics(port=None)
    assert isinstance(m, NullMetrics)
    m.image_done("kmeans", 1, 1, 0.1)
    m.image_failed("kmeans")
    m.set_queue_depth(1)
    m.set_in_flight(1)
    m.set_runtime_source(lambda: 1.0)
    assert m.start(port=0) == 0
    assert m.port is None
    m.stop()


def test_null_metrics_mirrors_the_real_interface():
    public = {name for name in dir(Metrics) if not name.startswith("_")}
    assert public <= set(dir(NullMetrics))


def test_create_metrics_starts_serving():
    m = create_metrics(port=0)
    try:
        assert isinstance(m, Metrics)
        assert "icsd_queue_depth" in scrape(m.port)
    finally:
        m.stop()
