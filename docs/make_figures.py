"""Make the README's before/after picture with icsd itself: `python docs/make_figures.py`.

scikit-learn's sample photo `china.jpg` (640x427, shipped with scikit-learn, so no download), compressed by
`icsd.compress` with the defaults (1/5 per side, 16 colours, kmeans) and with `--grayscale --bits 2`. The
outputs are shown enlarged (nearest neighbour, so each output pixel stays visible) beside the original, with
their real sizes in the captions. Writes docs/before-after.png; prints the sizes.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from sklearn.datasets import load_sample_image

import icsd

OUT = Path(__file__).resolve().parent / "before-after.png"
PANEL = (320, 214)  # each panel: the original at half size, the outputs enlarged to the same box
CAPTION = 34


def main() -> int:
    buffer = io.BytesIO()
    Image.fromarray(load_sample_image("china.jpg")).save(buffer, "JPEG")  # as the README makes china.jpg
    original = buffer.getvalue()
    panels = [(Image.open(io.BytesIO(original)).convert("RGB"),
               f"original JPEG: 640x427 px, {len(original) / 1024:.1f} KiB")]
    for params, label in (
        (icsd.CompressParams(), "icsd defaults: 1/5 size, 16 colours"),
        (icsd.CompressParams(grayscale=True, colors=4), "--grayscale --bits 2: 4 grey levels"),
    ):
        result = icsd.compress(original, params)
        w, h = result.output_size
        panels.append((Image.open(io.BytesIO(result.data)).convert("RGB"),
                       f"{label}\n{w}x{h} px PNG, {result.output_bytes / 1024:.1f} KiB"))
        print(f"{label}: {w}x{h} px, {result.input_bytes} -> {result.output_bytes} bytes")
    figure = Image.new("RGB", (PANEL[0] * len(panels), PANEL[1] + CAPTION), "white")
    draw = ImageDraw.Draw(figure)
    for i, (image, caption) in enumerate(panels):
        resample = Image.Resampling.LANCZOS if i == 0 else Image.Resampling.NEAREST
        figure.paste(image.resize(PANEL, resample), (i * PANEL[0], 0))
        draw.multiline_text((i * PANEL[0] + 6, PANEL[1] + 3), caption, fill="black", spacing=2)
    # A palette PNG keeps the figure small; 256 colours are plenty for three panels, two of them quantized.
    figure.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")
    return 0 if np.asarray(figure).any() else 1


if __name__ == "__main__":
    sys.exit(main())
