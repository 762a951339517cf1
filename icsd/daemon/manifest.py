"""`icsd manifest`: one row per output, from the journal, for ML pipelines (.jsonl, .csv or .parquet).

The service records each output's stats with its done row (`done_stats`, one JSON column); the manifest
joins them with the row's identity. It opens the journal read-only, so it runs while the daemon writes
(SQLite WAL), and writes its file atomically. Rows done before the journal kept stats (older icsd) get
their output's size, colours and palette from the PNG on disk, and no source size.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icsd.core import CompressParams, Palette, Result, png_palette
from icsd.daemon.journal import DoneRow, Journal
from icsd.daemon.output import write_named
from icsd.errors import SettingsError, UsageError

if TYPE_CHECKING:
    from icsd.settings import Settings

__all__ = ["COLUMNS", "FORMATS", "done_stats", "manifest_command", "manifest_rows",
           "render_manifest"]

# (name, type) of every column, in order; types are the Parquet schema's.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("source", "string"),  # path relative to the input folder
    ("source_sha1", "string"),
    ("source_bytes", "int64"),
    ("source_width", "int64"),
    ("source_height", "int64"),
    ("output", "string"),  # path relative to the output folder
    ("output_width", "int64"),
    ("output_height", "int64"),
    ("output_bytes", "int64"),
    ("colors", "int64"),
    ("strategy", "string"),  # "palette" when a shared palette was applied
    ("settings_fingerprint", "string"),
    ("palette", "string"),  # "#rrggbb #rrggbb ..." in PLTE order, or the shared palette's "sha1:..." digest
    ("psnr", "float64"),
    ("done_at", "string"),  # ISO 8601, UTC
)
FORMATS = (".jsonl", ".csv", ".parquet")


def done_stats(result: Result, params: CompressParams) -> dict[str, Any]:
    """What the journal keeps about one output (small: a PLTE is at most 256 hex colours)."""
    shared = params.palette is not None
    return {
        "input_size": list(result.input_size),
        "output_size": list(result.output_size),
        "output_bytes": result.output_bytes,
        "colors": result.colors,
        "strategy": "palette" if shared else str(result.strategy),
        "palette": Palette(params.palette).digest() if shared else _plte_hex(result.plte),  # type: ignore[arg-type]
        "fingerprint": params.fingerprint(),
        "psnr": getattr(result, "psnr", None),
    }


def manifest_rows(rows: list[DoneRow], output_root: Path) -> list[dict[str, Any]]:
    """One manifest row (COLUMNS, in order) per done journal row."""
    return [_row(done, output_root) for done in rows]


def render_manifest(rows: list[dict[str, Any]], suffix: str) -> bytes:
    """The manifest file's bytes in the format `suffix` names."""
    if suffix == ".jsonl":  # strict JSON has no Infinity: an exact output's PSNR is null there (inf elsewhere)
        return "".join(json.dumps(_finite(row), ensure_ascii=False) + "\n" for row in rows).encode()
    if suffix == ".csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=[name for name, _ in COLUMNS], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return text.getvalue().encode()
    return _parquet(rows)


def manifest_command(settings: Settings, *, output: str | None) -> int:
    """Write the manifest of ICSD_OUTPUT_DIR's journal to `output` (default OUTPUT_DIR/manifest.jsonl; `-`:
    JSON lines on stdout)."""
    path = settings.state_path / "journal.sqlite3"
    if not path.exists():
        raise SettingsError(f"no journal at {path}: icsd has not run with ICSD_OUTPUT_DIR={settings.output_dir}")
    target = None if output == "-" else Path(output) if output else settings.output_dir / "manifest.jsonl"
    suffix = ".jsonl" if target is None else target.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"-o {target}: give a .jsonl, .csv or .parquet file name (the suffix picks the format)")
    journal = Journal.open_readonly(path)
    try:
        rows = manifest_rows(journal.done_rows(), settings.output_dir)
    finally:
        journal.close()
    data = render_manifest(rows, suffix)
    if target is None:
        sys.stdout.write(data.decode())
        return 0
    write_named(target, data, example="manifest.jsonl")
    print(f"{len(rows)} outputs -> {target}")
    return 0


# -- private -------------------------------------------------------------------------------------------------


def _row(done: DoneRow, output_root: Path) -> dict[str, Any]:
    entry, stats = done.entry, done.stats or _stats_from_disk(output_root / (done.entry.output or ""))
    source_size = stats.get("input_size") or (None, None)
    output_size = stats.get("output_size") or (None, None)
    return {
        "source": entry.rel,
        "source_sha1": entry.digest,
        "source_bytes": entry.size,
        "source_width": source_size[0],
        "source_height": source_size[1],
        "output": entry.output,
        "output_width": output_size[0],
        "output_height": output_size[1],
        "output_bytes": stats.get("output_bytes"),
        "colors": stats.get("colors"),
        "strategy": stats.get("strategy"),
        "settings_fingerprint": stats.get("fingerprint"),
        "palette": stats.get("palette"),
        "psnr": stats.get("psnr"),
        "done_at": datetime.fromtimestamp(entry.updated, UTC).isoformat(timespec="seconds"),
    }


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value for key, value in row.items()}


def _stats_from_disk(path: Path) -> dict[str, Any]:
    """What an output PNG tells of itself (rows done before the journal kept stats); {} if it is gone."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    stats: dict[str, Any] = {"output_bytes": len(data)}
    if data[12:16] == b"IHDR":
        stats["output_size"] = list(struct.unpack(">II", data[16:24]))
    palette = _plte_hex(png_palette(data))
    if palette is not None:
        stats["palette"] = palette
        stats["colors"] = palette.count("#")
    return stats


def _plte_hex(plte: bytes) -> str | None:
    """A PLTE's colours as '#rrggbb ...', in order; None without one (a truecolour or grey PNG: size-only)."""
    if not plte:
        return None
    colours = plte.hex()
    return " ".join("#" + colours[i : i + 6] for i in range(0, len(colours), 6))


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(
            "a .parquet manifest needs pyarrow: pip install 'icsd[parquet]' (or use .jsonl or .csv)"
        ) from None
    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS])
    table = pa.Table.from_pylist(rows, schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
