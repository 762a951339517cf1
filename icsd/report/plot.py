"""Bytes against PSNR, one line per strategy (and dithering) across K, as inline SVG.

matplotlib is an optional extra (`pip install 'icsd[report]'`): without it `bytes_psnr_svg` returns None and
the page says how to get the plot. The figure API is used directly (no pyplot: no global backend or state),
text is drawn as paths (no font needed where the page is opened) and the date metadata is left out, so the
same numbers give the same SVG.
"""

from __future__ import annotations

import io
import re

__all__ = ["INSTALL_HINT", "bytes_psnr_svg"]

INSTALL_HINT = "pip install 'icsd[report]'"


def bytes_psnr_svg(series: dict[str, list[tuple[int, int, float]]]) -> str | None:
    """An <svg> element (no XML prolog) for the points (K, bytes, PSNR) of each series; None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    figure = Figure(figsize=(7.5, 4.2), dpi=96)
    axes = figure.add_subplot()
    labelled: set[int] = set()
    for index, (name, points) in enumerate(series.items()):
        xs = [size / 1024 for _, size, _ in points]
        ys = [psnr for _, _, psnr in points]
        # markers and dashes differ too: strategies that land on the same numbers still show as distinct lines
        axes.plot(xs, ys, marker="osD^v"[index % 5], linestyle=("-", "--", ":", "-.")[index % 4], label=name,
                  markerfacecolor="none" if index % 2 else None)
        for (k, _, _), x, y in zip(points, xs, ys, strict=True):
            if k not in labelled:  # once per K: the strategies' points lie close together
                labelled.add(k)
                axes.annotate(f"K{k}", (x, y), textcoords="offset points", xytext=(5, -12), fontsize=8)
    axes.set_xlabel("bytes after, all images (KiB)")
    axes.set_ylabel("mean PSNR (dB)")
    axes.grid(True, alpha=0.3)
    if series:
        axes.legend(loc="lower right")
    figure.tight_layout()
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    return re.sub(r"^.*?(?=<svg)", "", svg, flags=re.DOTALL)  # drop the XML prolog and DOCTYPE
