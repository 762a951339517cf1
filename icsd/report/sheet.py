"""The contact sheet (`--sheet`): the page's enlarged crops and captions in one PNG, for terminals and chat.

One row per image: the downsampled original's central crop, then each variant's, enlarged with
nearest-neighbour sampling, each captioned with its label, bytes, reduction, PSNR and SSIM. The PNG's
Software text chunk marks it as icsd's, so a later run may replace it without --force.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from icsd import __version__
from icsd.core import Strategy
from icsd.daemon.progress import human_bytes, reduction_pct
from icsd.report.measure import CROP, Measured
from icsd.report.options import Variant
from icsd.report.run import ImageRow

__all__ = ["SOFTWARE", "render_sheet"]

SOFTWARE = "icsd compare"
ZOOM = 3
TILE = CROP * ZOOM
GAP = 8
LINE = 13
CAPTION = 4 * LINE
TITLE = 2 * LINE


def render_sheet(rows: list[ImageRow], variants: list[Variant]) -> bytes:
    """The sheet as PNG bytes."""
    shown = [v for v in variants if v.strategy is not Strategy.SIZE_ONLY]
    full_height = TITLE + TILE + CAPTION + GAP
    heights = [TITLE if _failed(row) else full_height for row in rows]
    width = GAP + (1 + len(shown)) * (TILE + GAP)
    sheet = Image.new("RGB", (width, GAP + max(1, sum(heights))), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    top = GAP
    for row, height in zip(rows, heights, strict=True):
        if _failed(row):
            draw.text((GAP, top), f"{row.name}: {row.error or 'not processed'}", fill="#a00000", font=font)
        else:
            draw.text((GAP, top), row.name, fill="black", font=font)
            cells: list[tuple[str, Measured | None]] = [("original (SO)", row.reference)]
            cells += [(variant.label, row.cells.get(variant)) for variant in shown]
            for column, (label, cell) in enumerate(cells):
                _draw_tile(sheet, draw, font, (GAP + column * (TILE + GAP), top + TITLE), label, cell)
        top += height
    out = io.BytesIO()
    info = PngInfo()
    info.add_text("Software", f"{SOFTWARE} {__version__}")
    sheet.save(out, format="PNG", optimize=True, pnginfo=info)
    return out.getvalue()


def _failed(row: ImageRow) -> bool:
    return row.error is not None or row.reference is None


def _draw_tile(sheet: Image.Image, draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
               at: tuple[int, int], label: str, cell: Measured | None) -> None:
    left, top = at
    if cell is None or cell.error is not None:
        draw.text((left, top), label, fill="black", font=font)
        draw.text((left, top + LINE), (cell.error if cell else "not run")[:40], fill="#a00000", font=font)
        return
    with Image.open(io.BytesIO(cell.crop)) as crop:
        enlarged = crop.convert("RGB").resize((crop.width * ZOOM, crop.height * ZOOM), Image.Resampling.NEAREST)
    sheet.paste(enlarged, (left, top))
    psnr = "inf" if cell.psnr == float("inf") else f"{cell.psnr:.1f} dB" if cell.psnr is not None else "-"
    ssim = f"{cell.ssim:.3f}" if cell.ssim is not None else "-"
    lines = [
        label,
        f"{human_bytes(cell.output_bytes)}  {-reduction_pct(cell.input_bytes, cell.output_bytes):+.1f}%",
        f"PSNR {psnr}  SSIM {ssim}",
        f"{cell.bits_per_pixel:.2f} bpp  {cell.colors} col  {cell.seconds:.2f} s",
    ]
    for number, line in enumerate(lines):
        draw.text((left, top + TILE + 2 + number * LINE), line, fill="black", font=font)
