"""The compare page in a real browser: headless Chromium renders it offline, and the DOM says what it saw.

A probe script (added to a copy of the page, which allows inline scripts) writes into the DOM, after the load
event, how many images decoded (naturalWidth > 0), the table rows, whether the plot's <svg> is there, every
resource the page fetched (Resource Timing) and every Content-Security-Policy violation; `--dump-dom` prints
it. Every host resolves to nothing, so a request could not succeed anyway; a control page with an external
image and stylesheet shows the probe does see such requests. Without Chromium the tests skip, except in CI
(CI=true), where `.ci/run` installs Debian's `chromium` and a missing browser is a failure.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--enable-logging=stderr", "--v=0"]

PROBE = """<script>
var violations = [];
document.addEventListener('securitypolicyviolation', function (e) { violations.push(e.blockedURI); });
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var checks = {
    images: images.length,
    decoded: images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    rows: document.querySelectorAll('#totals tbody tr').length,
    plot: !!document.querySelector('#plot svg'),
    resources: performance.getEntriesByType('resource').map(function (e) { return e.name; }),
    violations: violations
  };
  var out = document.createElement('pre');
  out.id = 'checks';
  out.textContent = JSON.stringify(checks);
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser's path; asked for before the (slow) compare run, so a skip costs nothing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is missing: .ci/run installs it (apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")


def _browse(chromium: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)


def _checks(chromium: str, page_html: str, tmp_path: Path, name: str) -> tuple[dict[str, Any], str]:
    probed = tmp_path / name
    probed.write_text(page_html.replace("<body>", "<body>" + PROBE, 1))
    done = _browse(chromium, probed, tmp_path / f"profile-{name}", "--virtual-time-budget=10000", "--dump-dom")
    found = re.search(r'<pre id="checks">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found, f"the probe wrote nothing; chromium said: {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1))), done.stderr


def test_every_image_decodes_and_nothing_is_fetched(chromium: str, compare_run: Any, tmp_path: Path) -> None:
    assert compare_run.done.returncode == 0, compare_run.done.stderr
    checks, log = _checks(chromium, compare_run.html, tmp_path, "page.html")
    assert checks["images"] == 28 and checks["decoded"] == 28  # 2 images x 7 tiles x (preview + crop)
    assert checks["rows"] == 7 and checks["plot"] is True
    assert checks["resources"] == [] and checks["violations"] == []
    assert not [line for line in log.splitlines() if "CONSOLE" in line and ("violates" in line or "ERR_" in line)]


def test_the_probe_sees_a_request_when_a_page_makes_one(chromium: str, compare_run: Any, tmp_path: Path) -> None:
    external = '<img src="http://example.com/x.png"><link rel="stylesheet" href="https://cdn.example/a.css">'
    leaky = compare_run.html.replace("<body>", "<body>" + external, 1)
    checks, log = _checks(chromium, leaky, tmp_path, "leaky.html")
    assert sorted(checks["violations"]) == ["http://example.com/x.png", "https://cdn.example/a.css"]
    assert checks["decoded"] == checks["images"] - 1
    assert "violates the following Content Security Policy directive" in log


def test_a_screenshot_of_the_page_is_not_blank(chromium: str, compare_run: Any, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    done = _browse(chromium, compare_run.page, tmp_path / "profile", "--window-size=1280,1600", f"--screenshot={shot}")
    assert shot.exists(), done.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1280, 1600)
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # text, table, plot and photos, not one colour
    assert pixels.std() > 20
