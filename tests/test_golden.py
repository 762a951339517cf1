"""Outputs are byte-identical to the recorded ones for a fixed corpus under every strategy and size rule.

One test per settings label, so a change names the settings it broke and the grid spreads over test workers.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

import icsd
from tests.golden import corpus, digest, grid

GRID = dict(grid())


@functools.cache
def recorded() -> dict[str, str]:
    return json.loads((Path(__file__).parent / "data" / "golden_digests.json").read_text())


@functools.cache
def images() -> dict[str, bytes]:
    return corpus()


def test_the_recorded_digests_cover_exactly_the_grid_and_corpus() -> None:
    assert set(recorded()) == {f"{label}/{name}" for label in GRID for name in images()}


@pytest.mark.parametrize("label", list(GRID))
def test_outputs_match_recorded_digests(label: str) -> None:
    params = icsd.CompressParams(**GRID[label])
    changed = [name for name, data in images().items()
               if digest(icsd.compress, data, params) != recorded()[f"{label}/{name}"]]
    assert not changed, f"{label}: {len(changed)} of {len(images())} outputs changed: {changed}"
