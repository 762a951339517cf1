"""Outputs made with other settings than the current ones: how many, and how many cannot be remade.

The journal records each output's settings fingerprint (CompressParams.fingerprint); `icsd batch` and
`icsd run` remake a stale output when they see its original again (intake). An original already deleted or
archived (ICSD_ON_SUCCESS) is not seen again: its output stays as it was, which the daemon says once per
start and `icsd status` shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from icsd.daemon.journal import Journal

__all__ = ["StaleOutputs", "stale_outputs"]


@dataclass(frozen=True, slots=True)
class StaleOutputs:
    """Done outputs made with other settings (`total`), of which `orphaned` have no original left to remake."""

    total: int
    orphaned: int

    def status_line(self) -> str:
        """The line of `icsd status` (printed when there are any)."""
        line = f"stale: {self.total} made with other settings"
        if self.orphaned:
            line += f"; {self.orphaned} cannot be remade (original deleted or archived)"
        return line

    def warning(self) -> str | None:
        """The daemon's one WARNING line at start, or None when every stale output can be remade."""
        if not self.orphaned:
            return None
        what = "output" if self.orphaned == 1 else "outputs"
        return (f"{self.orphaned} {what} made with other settings cannot be remade: "
                "the originals were deleted or archived (ICSD_ON_SUCCESS); they stay as they are")


def stale_outputs(journal: Journal, fingerprint: str, input_root: Path) -> StaleOutputs:
    """Count the stale outputs for `fingerprint`, and those whose original is no longer in `input_root`."""
    stale = journal.stale(fingerprint)
    orphaned = sum(not os.path.lexists(input_root / entry.rel) for entry in stale)
    return StaleOutputs(total=len(stale), orphaned=orphaned)

