"""Outputs are byte-identical to the recorded ones for a fixed corpus under every strategy and size rule."""

from __future__ import annotations

import json
from pathlib import Path

import icsd
from tests.golden import digests


def test_outputs_match_recorded_digests() -> None:
    recorded = json.loads((Path(__file__).parent / "data" / "golden_digests.json").read_text())
    now = digests(icsd.compress, icsd.CompressParams)
    assert now.keys() == recorded.keys()
    changed = sorted(key for key in now if now[key] != recorded[key])
    assert not changed, f"{len(changed)} of {len(now)} outputs changed, e.g. {changed[:5]}"
