"""The architecture, checked: the core imports nothing of the shell, the shell uses only the core's public names."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import icsd.core

ROOT = Path(icsd.core.__file__).parent.parent
FORBIDDEN = ("icsd.daemon", "icsd.settings", "icsd.cli", "icsd.launch", "icsd.errors", "watchdog", "pydantic",
             "pydantic_settings", "sqlite3", "_sqlite3", "distributed", "dask")
CORE_MODULES = sorted(
    info.name for info in pkgutil.walk_packages(icsd.core.__path__, "icsd.core.") if not info.name.endswith("_lloyd")
    and not info.name.endswith("_pixels")
)


@pytest.mark.parametrize("module", ["icsd", "icsd.core", *CORE_MODULES])
def test_core_module_loads_no_shell(module: str) -> None:
    code = (f"import sys, {module}\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(" + repr(FORBIDDEN) + "))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == [], f"{module} loads {done.stdout.split()}"


def test_core_uses_every_public_name_it_promises() -> None:
    for name in icsd.core.__all__:
        assert getattr(icsd.core, name) is not None


def _shell_files() -> list[Path]:
    shell = sorted((ROOT / "daemon").glob("*.py")) + sorted((ROOT / "report").glob("*.py"))
    return [*shell, *(ROOT / name for name in ("cli.py", "settings.py", "launch.py", "errors.py"))]


@pytest.mark.parametrize("path", _shell_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shell_imports_the_core_only_through_its_public_names(path: Path) -> None:
    deep = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("icsd.core."):
            deep.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            deep += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.startswith("icsd.core.")]
    assert not deep, deep
