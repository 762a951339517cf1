"""The compare page: one self-contained HTML file (pictures as data: URIs, the plot as inline SVG).

Its Content-Security-Policy allows nothing from the network (`default-src 'none'`; images only from data:),
so it opens the same offline, from a CI artifact or a mail attachment, and a browser would refuse (and log) any
request it tried. The generator <meta> marks the file as icsd's: `icsd compare` replaces only such a file
unless given --force.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from html import escape

from icsd import __version__
from icsd.daemon.progress import colours, human_bytes, reduction_pct
from icsd.report.measure import CROP, Measured
from icsd.report.options import Variant
from icsd.report.plot import INSTALL_HINT
from icsd.report.run import ImageRow
from icsd.report.summary import Total

__all__ = ["GENERATOR", "PageInputs", "render_page"]

GENERATOR = "icsd compare"
ZOOM = 4  # crops are shown at 4x, nearest-neighbour (CSS image-rendering: pixelated)
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


@dataclass(frozen=True, slots=True)
class PageInputs:
    """Everything the page shows."""

    rows: list[ImageRow]
    variants: list[Variant]
    totals: list[Total]
    plot_svg: str | None  # None: matplotlib missing
    settings: dict[str, str]  # name -> value, as used
    command: str
    seconds: float  # wall time of the whole comparison


def render_page(page: PageInputs) -> str:
    """The whole HTML document."""
    images = len(page.rows)
    failed = sum(row.error is not None for row in page.rows)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f'<meta name="generator" content="{GENERATOR} {escape(__version__)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>icsd compare: {images} image{'s' * (images != 1)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>icsd compare</h1>",
        f'<p class="lead">{images} image{"s" * (images != 1)} ({failed} unreadable) &times; '
        f"{len(page.variants)} variant{'s' * (len(page.variants) != 1)} in {page.seconds:.1f} s, "
        f"by icsd {escape(__version__)}.</p>",
        _table(page.totals),
        _plot(page.plot_svg),
        '<section id="images"><h2>Images</h2>',
        f"<p>Each row: the downsampled original, then every variant at the same size. Hover over a row (or click "
        f"it to keep it) to see the central {CROP}&times;{CROP} pixels of each, enlarged {ZOOM}&times; without "
        "smoothing: banding and dithering show there. PSNR and SSIM are measured against the downsampled "
        "original.</p>",
        *(_image(row, page.variants) for row in page.rows),
        "</section>",
        _settings(page.settings, page.command),
        f'<script type="application/json" id="results">{_results_json(page.rows)}</script>',
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _settings(settings: dict[str, str], command: str) -> str:
    items = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in settings.items())
    return (f'<section id="settings"><h2>Settings</h2><dl>{items}</dl>'
            f"<p>Command: <code>{escape(command)}</code></p></section>")


def _table(totals: list[Total]) -> str:
    head = ("<tr><th>strategy</th><th>K</th><th>dithering</th><th>images</th><th>total run time</th>"
            "<th>bytes before</th><th>bytes after</th><th>compression factor</th><th>mean PSNR</th>"
            "<th>mean SSIM</th></tr>")
    body = []
    for total in totals:
        variant = total.variant
        body.append(
            f"<tr><td>{escape(variant.strategy.value)} ({escape(variant.label.split()[0])})</td>"
            f"<td>{variant.colors or 'all'}</td><td>{escape(variant.dither if variant.colors else '')}</td>"
            f"<td>{total.images}{_failed_note(total.failed)}</td><td>{total.seconds:.2f} s</td>"
            f"<td>{human_bytes(total.bytes_in)}</td><td>{human_bytes(total.bytes_out)}</td>"
            f"<td>{total.factor:.1f}&times;</td><td>{_db(total.mean_psnr)}</td><td>{_ssim(total.mean_ssim)}</td></tr>"
        )
    return (f'<section id="summary"><h2>Strategies over all images</h2><table id="totals"><thead>{head}</thead>'
            f"<tbody>{''.join(body)}</tbody></table><p>Run time is the sum of each image's compression time "
            "(decode, downsample, quantize, encode) in the workers, as the original system reported it.</p>"
            "</section>")


def _plot(svg: str | None) -> str:
    if svg is None:
        body = (f'<p class="missing" id="plot-missing">The plot of bytes against PSNR needs matplotlib: '
                f"<code>{escape(INSTALL_HINT)}</code>, then run the command again.</p>")
    else:
        body = f'<figure id="plot-svg">{svg}</figure>'
    return f'<section id="plot"><h2>Bytes against PSNR</h2>{body}</section>'


def _image(row: ImageRow, variants: list[Variant]) -> str:
    title = f"<h3>{escape(row.name)}</h3>"
    if row.error is not None or row.reference is None:
        return f'<div class="image failed">{title}<p class="error">{escape(row.error or "not processed")}</p></div>'
    ref = row.reference
    (w_in, h_in), (w_out, h_out) = ref.input_size, ref.output_size
    info = f'<p class="info">{w_in}&times;{h_in} px, {human_bytes(ref.input_bytes)} &rarr; {w_out}&times;{h_out} px</p>'
    tiles = [_tile("original, downsampled (SO)", ref)]
    for variant in variants:
        if variant.strategy.value == "size-only":
            continue  # the reference is this variant
        cell = row.cells.get(variant)
        tiles.append(_tile(variant.label, cell) if cell else "")
    return f'<div class="image">{title}{info}<div class="tiles">{"".join(tiles)}</div></div>'


def _results_json(rows: list[ImageRow]) -> str:
    """The numbers behind the page, for scripts (`json.loads` of #results): per image, per variant label."""
    def numbers(cell: Measured) -> dict[str, object]:
        if cell.error is not None:
            return {"error": cell.error}
        psnr = None if cell.psnr is None or math.isinf(cell.psnr) else round(cell.psnr, 3)
        return {"input_bytes": cell.input_bytes, "output_bytes": cell.output_bytes, "colors": cell.colors,
                "output_size": list(cell.output_size), "psnr": psnr, "ssim": cell.ssim, "seconds": cell.seconds}

    data = [{"name": row.name, "error": row.error,
             "reference": numbers(row.reference) if row.reference else None,
             "variants": {variant.label: numbers(cell) for variant, cell in row.cells.items()}} for row in rows]
    return json.dumps(data).replace("</", "<\\/")  # no "</script>" inside the element


def _tile(label: str, cell: Measured) -> str:
    if cell.error is not None:
        return (f'<figure class="tile failed"><figcaption><b>{escape(label)}</b><br>'
                f'<span class="error">{escape(cell.error)}</span></figcaption></figure>')
    width, height = _png_size(cell.preview)
    crop_w, crop_h = _png_size(cell.crop)
    lines = [
        f"<b>{escape(label)}</b>",
        f"{human_bytes(cell.output_bytes)} &middot; {_change(cell)}",
        f"{cell.bits_per_pixel:.2f} bpp &middot; {colours(cell.colors)}",
        f"PSNR {_db(cell.psnr)} &middot; SSIM {_ssim(cell.ssim)}",
        f"{cell.seconds:.2f} s",
    ]
    return (f'<figure class="tile"><div class="pic" style="width:{max(width, crop_w * ZOOM)}px">'
            f'<img class="preview" alt="{escape(label)}" width="{width}" height="{height}" src="{_uri(cell.preview)}">'
            f'<img class="crop" alt="{escape(label)}, central crop" width="{crop_w * ZOOM}" height="{crop_h * ZOOM}" '
            f'src="{_uri(cell.crop)}"></div><figcaption>{"<br>".join(lines)}</figcaption></figure>')


def _change(cell: Measured) -> str:
    """The size change as the daemon's log line gives it: -98.1% (smaller), +13.1% (grew)."""
    return f"{-reduction_pct(cell.input_bytes, cell.output_bytes):+.1f}%".replace("-", "&minus;")


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk (bytes 16-24 of every PNG)."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _db(value: float | None) -> str:
    if value is None:
        return "&ndash;"
    return "&infin;" if math.isinf(value) else f"{value:.1f} dB"


def _ssim(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.3f}"


def _failed_note(failed: int) -> str:
    return f" ({failed} failed)" if failed else ""


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{margin:0 0 .2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}h3{margin:.2em 0;font-size:15px}
.lead{color:#555}dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em}dt{font-weight:600}dd{margin:0}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}
.image{margin:1em 0;padding:.5em;background:#fff;border:1px solid #ddd;cursor:zoom-in}
.image.zoom{cursor:zoom-out;border-color:#888}.info{margin:0 0 .4em;color:#555}
.tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{margin:0;font-size:12px}
.pic{display:flex;align-items:flex-start}.crop{display:none;image-rendering:pixelated}
.tiles:hover .preview,.zoom .preview{display:none}.tiles:hover .crop,.zoom .crop{display:block}
.error{color:#a00}.missing{background:#ffd;padding:.5em;border:1px solid #dd8}
#plot-svg{margin:0}#plot-svg svg{max-width:100%;height:auto}
"""

_SCRIPT = """
document.querySelectorAll('.image').forEach(function (row) {
  row.addEventListener('click', function () { row.classList.toggle('zoom'); });
});
"""
