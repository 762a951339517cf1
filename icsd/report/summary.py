"""The numbers over all images: the original system's table (per strategy and K) and the plot's series."""

from __future__ import annotations

import math
from dataclasses import dataclass

from icsd.report.options import Variant
from icsd.report.run import ImageRow

__all__ = ["Total", "plot_series", "totals"]


@dataclass(frozen=True, slots=True)
class Total:
    """One variant over every image it succeeded on."""

    variant: Variant
    images: int
    failed: int
    seconds: float  # summed compress() time, as the original system's "total run time"
    bytes_in: int
    bytes_out: int
    mean_psnr: float | None  # dB; inf for size-only (it is the reference)
    mean_ssim: float | None

    @property
    def factor(self) -> float:
        """Compression factor: bytes before / bytes after."""
        return self.bytes_in / self.bytes_out if self.bytes_out else 0.0


def totals(rows: list[ImageRow], variants: list[Variant]) -> list[Total]:
    """One Total per variant, in the variants' order."""
    out = []
    for variant in variants:
        cells = [row.cells[variant] for row in rows if variant in row.cells]
        good = [cell for cell in cells if cell.error is None]
        out.append(Total(
            variant=variant,
            images=len(good),
            failed=len(cells) - len(good),
            seconds=sum(cell.seconds for cell in good),
            bytes_in=sum(cell.input_bytes for cell in good),
            bytes_out=sum(cell.output_bytes for cell in good),
            mean_psnr=_mean([cell.psnr for cell in good]),
            mean_ssim=_mean([cell.ssim for cell in good]),
        ))
    return out


def plot_series(rows: list[Total]) -> dict[str, list[tuple[int, int, float]]]:
    """Per strategy/dithering, the (K, bytes after, mean PSNR) points across K; size-only has no finite PSNR."""
    series: dict[str, list[tuple[int, int, float]]] = {}
    for total in rows:
        psnr = total.mean_psnr
        if total.variant.colors is None or psnr is None or not math.isfinite(psnr) or not total.images:
            continue
        series.setdefault(total.variant.series, []).append((total.variant.colors, total.bytes_out, psnr))
    return {name: sorted(points) for name, points in series.items()}


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None
