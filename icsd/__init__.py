"""icsd — Image Compression System daemon.

The package root exposes the pure core only (importing it never pulls in watchdog or
pydantic-settings): `quantize` for colour reduction and `compress` for the whole pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "CompressParams", "Quantized", "Result", "Strategy", "compress", "quantize"]

if TYPE_CHECKING:
    from icsd.compress import compress
    from icsd.jobs import Result
    from icsd.params import CompressParams, Strategy
    from icsd.quantize import Quantized, quantize

_LAZY = {
    "CompressParams": "icsd.params",
    "Strategy": "icsd.params",
    "Quantized": "icsd.quantize",
    "quantize": "icsd.quantize",
    "Result": "icsd.jobs",
    "compress": "icsd.compress",
}


def __getattr__(name: str) -> Any:
    """Import lazily so `icsd.errors` users (and the CLI's --help) stay fast."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'icsd' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
