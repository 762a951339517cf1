"""Palette files on disk: read one for ICSD_PALETTE (one-line errors naming the setting and the file), write
one atomically for `icsd palette learn`. The formats themselves are the core's (`icsd.core.Palette`)."""

from __future__ import annotations

from pathlib import Path

from icsd.core import Palette, ParameterError
from icsd.daemon.output import write_named
from icsd.errors import OutputError, SettingsError

__all__ = ["read_palette_file", "write_palette_file"]

# A palette file is a few KB; anything this large is the wrong file (and is not read whole into memory).
_MAX_BYTES = 16 << 20


def read_palette_file(path: Path, *, setting: str = "ICSD_PALETTE") -> Palette:
    """The palette in `path` (.gpl, .png or .json by suffix); SettingsError (exit 78) naming `setting` and
    the file when it is missing, unreadable, not a palette, empty or over 256 colours."""
    where = f"{setting} file {path}"
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise SettingsError(f"{where}: the file is over {_MAX_BYTES >> 20} MB, not a palette")
        data = path.read_bytes()
    except IsADirectoryError:
        raise SettingsError(f"{where}: is a folder; give a .gpl, .png or .json palette file") from None
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read the palette file: {exc.strerror or exc}") from None
    try:
        palette = Palette.decode(data, path.suffix)
    except ParameterError as exc:
        raise SettingsError(f"{where}: {exc.message}") from None
    return palette if palette.name else Palette(palette.entries, path.stem)


def write_palette_file(path: Path, palette: Palette) -> None:
    """Write `palette` to `path` atomically, in the format its suffix names; OutputError (exit 73) if not."""
    try:
        data = palette.encode(path.suffix)
    except ParameterError as exc:
        raise OutputError(f"-o {path}: {exc.message}") from None
    write_named(path, data, example="palette.gpl")
