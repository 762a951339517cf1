"""Progress text: the per-image line's wording."""

from __future__ import annotations

import pytest

from icsd.daemon.progress import Tally, image_fields, image_line


@pytest.mark.parametrize(("colors", "words"), [(1, "1 colour"), (2, "2 colours"), (16, "16 colours")])
def test_image_line_counts_colours_in_good_english(colors: int, words: str) -> None:
    fields = image_fields(
        "flat.png", size_in=(50, 40), size_out=(10, 8), bytes_in=2048, bytes_out=1024, colors=colors,
        strategy="kmeans", seconds=0.25, tally=Tally(done=1), queued=0,
    )
    fields["runtime_seconds"] = 1.0
    assert image_line(fields) == (
        f"flat.png: 50x40 -> 10x8 px, 2.0 KiB -> 1.0 KiB (-50.0%), {words}, kmeans, 0.25 s"
        " | done 1, failed 0, queued 0 | runtime 0:00:01.0"
    )


@pytest.mark.parametrize(
    ("psnr", "text", "field"), [(34.214, ", PSNR 34.21 dB", 34.21), (float("inf"), ", exact", None)]
)
def test_image_line_and_fields_carry_the_psnr(psnr: float, text: str, field: float | None) -> None:
    fields = image_fields(
        "a.jpg", size_in=(50, 40), size_out=(10, 8), bytes_in=2048, bytes_out=1024, colors=16,
        strategy="kmeans", seconds=0.25, tally=Tally(done=1), queued=0, psnr=psnr,
    )
    assert fields["psnr_db"] == field and fields["exact"] is (psnr == float("inf"))
    assert f"16 colours, kmeans{text}, 0.25 s |" in image_line(fields)
