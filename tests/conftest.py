"""Shared fixtures: a factory for real daemon subprocesses that are always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Daemon


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    """start_daemon(*args, env=..., workers=...) -> Daemon; every daemon is killed at teardown."""
    started: list[Daemon] = []

    def start(*args: str, **kwargs: Any) -> Daemon:
        daemon = Daemon(tmp_path, *args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


@pytest.fixture(scope="session")
def compare_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One real `icsd compare` run (tests/compare_run.py), shared by the page, sheet and browser tests."""
    from tests.compare_run import run_compare

    return run_compare(tmp_path_factory.mktemp("compare"))
