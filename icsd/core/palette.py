"""A shared palette and the files other tools read it from: GIMP `.gpl`, a swatch PNG, JSON.

Pure Python (no NumPy, no Pillow but for truecolour swatch PNGs): the daemon's coordinator loads a palette
file while validating its settings, and it never imports the image stack. Bytes in, bytes out; reading and
writing the files is the shell's job.

- `.gpl`: GIMP's palette (GIMP, Krita, Inkscape read it). Read tolerantly: comments, blank lines, `Name:` and
  `Columns:` headers, names after the numbers, any spacing, CRLF line ends.
- `.png`: the PLTE of a palette PNG, entry for entry (any palette PNG, e.g. one of icsd's outputs); a
  truecolour or grey PNG gives its distinct colours in reading order (a swatch image). Written as one pixel
  per colour, a K x 1 palette PNG.
- `.json`: `{"name": ..., "colors": ["#rrggbb", ...]}`; also read: a bare list, and [r, g, b] triples.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from dataclasses import dataclass

from icsd.core.errors import ParameterError

__all__ = ["FORMATS", "MAX_ENTRIES", "Palette", "png_palette"]

MAX_ENTRIES = 256
FORMATS = (".gpl", ".png", ".json")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class Palette:
    """1-256 RGB entries in a fixed order: index i means the same colour in every image mapped to it."""

    entries: tuple[tuple[int, int, int], ...]
    name: str = ""

    def __post_init__(self) -> None:
        entries = tuple(tuple(int(v) for v in entry) for entry in self.entries)
        if not 1 <= len(entries) <= MAX_ENTRIES:
            raise ParameterError("palette", f"a palette has 1 to {MAX_ENTRIES} colours, this one has {len(entries)}")
        for entry in entries:
            if len(entry) != 3 or not all(0 <= v <= 255 for v in entry):
                raise ParameterError("palette", f"palette entries are three values 0-255 (R, G, B), got {entry}")
        object.__setattr__(self, "entries", entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def grey(self) -> bool:
        """Every entry is a grey (R = G = B): usable for grayscale images."""
        return all(r == g == b for r, g, b in self.entries)

    def hex(self) -> list[str]:
        return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in self.entries]

    def digest(self) -> str:
        """`sha1:` + the SHA-1 of the entries' RGB bytes in order: the same palette whatever file it came from."""
        return "sha1:" + hashlib.sha1(self.rgb_bytes(), usedforsecurity=False).hexdigest()

    def rgb_bytes(self) -> bytes:
        """The entries as a PNG PLTE payload: R, G, B per entry."""
        return bytes(v for entry in self.entries for v in entry)

    def array(self) -> object:
        """(K, 3) uint8 NumPy array (imports NumPy)."""
        import numpy as np

        return np.array(self.entries, dtype=np.uint8).reshape(-1, 3)

    def encode(self, suffix: str) -> bytes:
        """The palette as a `.gpl`, `.png` or `.json` file's bytes."""
        kind = _kind(suffix)
        if kind == ".gpl":
            return _gpl_bytes(self)
        if kind == ".png":
            return _swatch_png(self)
        return (json.dumps({"name": self.name, "colors": self.hex()}, indent=1) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes, suffix: str) -> Palette:
        """Parse a palette file's bytes by its suffix; ParameterError with a one-line reason if it is not one."""
        kind = _kind(suffix)
        if kind == ".gpl":
            return _parse_gpl(data)
        if kind == ".png":
            return png_palette(data)
        return _parse_json(data)


def png_palette(data: bytes) -> Palette:
    """The PLTE of a palette PNG, entry for entry; a truecolour or grey PNG's distinct colours in reading order."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ParameterError("palette", "not a PNG file (bad signature)")
    colour_type, plte = None, None
    for kind, payload in _png_chunks(data):
        if kind == b"IHDR" and len(payload) >= 10:
            colour_type = payload[9]
        elif kind == b"PLTE":
            plte = payload
    if colour_type == 3:
        if plte is None or not plte or len(plte) % 3:
            raise ParameterError("palette", "palette PNG without a valid PLTE chunk")
        return Palette(tuple(tuple(plte[i : i + 3]) for i in range(0, len(plte), 3)))  # type: ignore[misc]
    return _swatch_colours(data)


# -- GIMP palettes ------------------------------------------------------------------------------------------


def _gpl_bytes(palette: Palette) -> bytes:
    lines = ["GIMP Palette", f"Name: {palette.name or f'icsd {len(palette)} colours'}", "Columns: 16", "#"]
    lines += [f"{r:3d} {g:3d} {b:3d}\t{h}" for (r, g, b), h in zip(palette.entries, palette.hex(), strict=True)]
    return ("\n".join(lines) + "\n").encode()


def _parse_gpl(data: bytes) -> Palette:
    text = _text(data)
    lines = text.splitlines()
    first = next((n for n, line in enumerate(lines) if line.strip()), None)
    if first is None or lines[first].strip().lower() != "gimp palette":
        raise ParameterError("palette", "not a GIMP palette: the first line must be 'GIMP Palette'")
    entries, name = [], ""
    for number, raw in enumerate(lines[first + 1 :], start=first + 2):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header, _, value = line.partition(":")
        if header.strip().lower() in ("name", "columns"):
            name = value.strip() if header.strip().lower() == "name" else name
            continue
        fields = line.split()
        try:
            rgb = tuple(int(v) for v in fields[:3])
        except ValueError:
            raise ParameterError("palette", f"line {number}: expected 'R G B [name]', got {raw.strip()!r}") from None
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise ParameterError("palette", f"line {number}: expected three values 0-255, got {raw.strip()!r}")
        entries.append(rgb)
    return _palette(entries, name)


# -- JSON ----------------------------------------------------------------------------------------------------


def _parse_json(data: bytes) -> Palette:
    try:
        doc = json.loads(_text(data))
    except json.JSONDecodeError as exc:
        raise ParameterError("palette", f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    name = ""
    if isinstance(doc, dict):
        name = str(doc.get("name") or "")
        doc = doc.get("colors", doc.get("colours", doc.get("palette")))
    if not isinstance(doc, list):
        raise ParameterError("palette", 'JSON palette must be {"colors": [...]} or a list of colours')
    return _palette([_json_colour(item, n) for n, item in enumerate(doc)], name)


def _json_colour(item: object, index: int) -> tuple[int, int, int]:
    if isinstance(item, str):
        value = item.strip().lstrip("#")
        if len(value) == 6:
            try:
                return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
            except ValueError:
                pass
    elif isinstance(item, list) and len(item) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in item):
        return item[0], item[1], item[2]
    raise ParameterError("palette", f"colour {index}: expected '#rrggbb' or [r, g, b] with 0-255, got {item!r}")


# -- PNG -----------------------------------------------------------------------------------------------------


def _swatch_png(palette: Palette) -> bytes:
    """A K x 1 8-bit palette PNG: pixel i is entry i."""
    k = len(palette)
    header = struct.pack(">IIBBBBB", k, 1, 8, 3, 0, 0, 0)
    idat = zlib.compress(bytes([0, *range(k)]), 9)
    chunks = ((b"IHDR", header), (b"PLTE", palette.rgb_bytes()), (b"IDAT", idat), (b"IEND", b""))
    return _PNG_SIGNATURE + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))
        for kind, body in chunks
    )


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        if kind == b"IEND":
            break
        pos += 12 + length
    return chunks


def _swatch_colours(data: bytes) -> Palette:
    """Distinct colours of a truecolour or grey PNG, in reading order (at most 256)."""
    from PIL import Image  # only for this kind of palette file

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > 1 << 20:
                raise ParameterError("palette", f"a {img.width}x{img.height} image is not a palette swatch")
            raw = img.convert("RGB").tobytes()
            pixels = [tuple(raw[i : i + 3]) for i in range(0, len(raw), 3)]
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ParameterError):
            raise
        raise ParameterError("palette", f"cannot decode the PNG: {exc}") from None
    seen = list(dict.fromkeys(pixels))
    if len(seen) > MAX_ENTRIES:
        raise ParameterError("palette", f"the PNG has more than {MAX_ENTRIES} colours: it is not a palette swatch")
    return Palette(tuple(seen))


# -- shared --------------------------------------------------------------------------------------------------


def _kind(suffix: str) -> str:
    kind = suffix.lower() if suffix.startswith(".") else f".{suffix.lower()}"
    if kind not in FORMATS:
        raise ParameterError("palette", f"unknown palette format {suffix!r}: use a .gpl, .png or .json file")
    return kind


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _palette(entries: list[tuple[int, int, int]], name: str) -> Palette:
    if not entries:
        raise ParameterError("palette", "the palette has no colours")
    if len(entries) > MAX_ENTRIES:
        raise ParameterError("palette", f"the palette has {len(entries)} colours, more than {MAX_ENTRIES}")
    return Palette(tuple(entries), name)
