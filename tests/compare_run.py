"""One real `icsd compare` run shared by the compare tests (it takes seconds; they only read its outputs)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.harness import clean_env, sample_image, write_image

__all__ = ["ARGS", "CompareRun", "icsd", "run_compare"]

ARGS = ("--colors", "4,16", "--strategies", "all", "--scale", "4", "--workers", "2")


@dataclass
class CompareRun:
    folder: Path
    page: Path
    sheet: Path
    done: subprocess.CompletedProcess[str]

    @property
    def html(self) -> str:
        return self.page.read_text()

    @property
    def results(self) -> list[dict[str, object]]:
        found = re.search(r'<script type="application/json" id="results">(.*?)</script>', self.html, re.DOTALL)
        assert found, "no #results in the page"
        return json.loads(found.group(1).replace("<\\/", "</"))


def icsd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "icsd", *args], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)


def run_compare(root: Path) -> CompareRun:
    """Two photos, a file that is no image, a JPEG cut short and a FIFO named like a JPEG, compared 7 ways."""
    folder = root / "photos"
    write_image(folder / "china.jpg")
    write_image(folder / "flower.jpg", sample_image("flower.jpg"))
    (folder / "notes.jpg").write_text("not a picture\n")
    (folder / "cut.jpg").write_bytes((folder / "china.jpg").read_bytes()[:600])
    os.mkfifo(folder / "pipe.jpg")
    page, sheet = root / "report.html", root / "sheet.png"
    done = icsd("compare", str(folder), "-o", str(page), "--sheet", str(sheet), *ARGS, cwd=root)
    return CompareRun(folder, page, sheet, done)
