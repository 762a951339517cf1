"""The shipped unit file: parses cleanly with systemd-analyze and keeps its hardening."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "icsd.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed on this machine")
# Exposure score measured when the unit was written (README); fail if hardening erodes past this.
MAX_EXPOSURE = 2.0


def unit_settings() -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values...]}}: systemd keys may repeat, so keep every assignment."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return sections


def test_unit_is_ascii_and_has_sections():
    UNIT.read_bytes().decode("ascii")  # stray non-ASCII (e.g. a zero-width space) hides key typos
    assert set(unit_settings()) == {"Unit", "Service", "Install"}


def test_service_lifecycle_settings():
    service = unit_settings()["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/opt/icsd/.venv/bin/icsd run",
        "EnvironmentFile": "-/etc/icsd/icsd.env",
        "Restart": "on-failure",
        "WatchdogSec": "60",
        "KillMode": "mixed",
        "KillSignal": "SIGTERM",
        "StandardOutput": "journal",
        "StandardError": "journal",
        "ReadWritePaths": "/srv/icsd",
        "StateDirectory": "icsd",
        "UMask": "0027",
    }
    assert_single_values(service, expected)
    # The daemon drains for up to 30 s after SIGTERM; systemd must wait longer than that.
    assert int(service["TimeoutStopSec"][0]) > 30
    assert int(service["RestartSec"][0]) > 0
    env = " ".join(service["Environment"])
    assert "ICSD_INPUT_DIR=/srv/icsd/Uncompressed" in env
    assert "ICSD_OUTPUT_DIR=/srv/icsd/Compressed" in env
    assert unit_settings()["Unit"]["RequiresMountsFor"] == ["/srv/icsd"]


def test_hardening_settings():
    service = unit_settings()["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
    }
    assert_single_values(service, expected)
    assert "@system-service" in service["SystemCallFilter"]
    assert re.fullmatch(r"\d+[KMGT]?", service["MemoryMax"][0])


@needs_analyze
def test_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart exists: point it at this venv's console script (or python).
    icsd = Path(sys.executable).with_name("icsd")
    binary = icsd if icsd.exists() else Path(sys.executable)
    text = UNIT.read_text().replace("ExecStart=/opt/icsd/.venv/bin/icsd run", f"ExecStart={binary} run")
    unit = tmp_path / "icsd.service"
    unit.write_text(text)
    result = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    # verify exits 0 even for unknown keys or bad values; it only warns, naming the file.
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "icsd.service" in line]
    assert result.returncode == 0, result.stderr
    assert complaints == []


@needs_analyze
def test_security_exposure_stays_low():
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0 and "offline" in result.stderr:
        pytest.skip("this systemd-analyze cannot review unit files offline (needs systemd >= 250)")
    match = re.search(r"Overall exposure level for icsd\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


# Run in a child with the kernel's own W^X lock (prctl PR_SET_MDWE, Linux >= 6.3), which refuses
# the same things as MemoryDenyWriteExecute=yes: W+X mappings and making memory executable later.
_MDWE_CHILD = """
import ctypes, io, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(3)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit(3)
except OSError:
    pass
import numpy as np, threadpoolctl
from PIL import Image
from sklearn.cluster import KMeans
threadpoolctl.threadpool_info()  # ctypes callbacks through dl_iterate_phdr
pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
KMeans(4, n_init=1, random_state=0).fit(pixels.reshape(-1, 3).astype(float))
buf = io.BytesIO()
Image.fromarray(pixels).quantize(8).save(buf, "PNG")
Image.open(io.BytesIO(buf.getvalue())).load()
print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_MDWE is Linux-only")
def test_dependencies_run_without_writable_executable_memory():
    result = subprocess.run([sys.executable, "-c", _MDWE_CHILD], capture_output=True, text=True, timeout=100)
    if result.returncode == 3:
        pytest.skip("kernel lacks PR_SET_MDWE (Linux >= 6.3); cannot emulate MemoryDenyWriteExecute")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def assert_single_values(section: dict[str, list[str]], expected: dict[str, str]) -> None:
    """Each key is set exactly once, to the expected value."""
    for key, value in expected.items():
        assert section.get(key) == [value], key
