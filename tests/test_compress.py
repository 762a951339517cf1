"""The whole core pipeline on real photos, and the worker-facing job wrapper."""

from __future__ import annotations

import io
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import icsd.core.pipeline
from icsd.core.errors import ParameterError
from icsd.core.jobs import JobOutcome, Result, compress_job
from icsd.core.params import CompressParams, Strategy
from icsd.core.pipeline import compress
from tests import images

QUANTIZING = [Strategy.KMEANS, Strategy.SKLEARN_KMEANS, Strategy.SKLEARN_MINIBATCH]
METADATA_CHUNKS = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"pHYs", b"tIME", b"sRGB", b"gAMA", b"tRNS"}


def chunk_kinds(data: bytes) -> list[bytes]:
    """Chunk types in order, runs of IDAT (Pillow splits large images) counted once."""
    kinds = [kind for kind, _ in images.png_chunks(data)]
    return [kind for i, kind in enumerate(kinds) if i == 0 or kind != kinds[i - 1]]


@pytest.mark.parametrize("strategy", QUANTIZING)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
def test_sample_photos_compress_to_a_palette_png(name: str, fmt: str, strategy: Strategy) -> None:
    data = images.sample_bytes(name, fmt)
    result = compress(data, CompressParams(strategy=strategy, colors=16))
    assert result.input_size == (640, 427)
    assert result.output_size == (128, 86)
    assert result.strategy is strategy
    assert 2 <= result.colors <= 16
    assert (result.input_bytes, result.output_bytes) == (len(data), len(result.data))
    assert result.output_bytes < result.input_bytes / 5
    assert 0 < result.seconds < 60
    back = Image.open(io.BytesIO(result.data))
    assert (back.format, back.mode, back.size) == ("PNG", "P", (128, 86))
    assert images.png_bit_depth(result.data) == 4
    assert len(back.getcolors()) <= 16
    assert chunk_kinds(result.data) == [b"IHDR", b"PLTE", b"IDAT", b"IEND"]
    # the quantized picture still looks like the photo, downsampled
    reference = np.asarray(Image.fromarray(images.sample_array(name)).resize((128, 86), Image.Resampling.BOX))
    error = np.abs(np.asarray(back.convert("RGB"), dtype=np.int16) - reference)
    assert error.mean() < 20


def test_size_only_gives_a_truecolour_png_of_the_downsampled_size() -> None:
    result = compress(images.sample_bytes(), CompressParams(strategy="size-only", max_size=(320, 320)))
    back = Image.open(io.BytesIO(result.data))
    assert (back.mode, back.size, result.output_size) == ("RGB", (320, 214), (320, 214))
    assert result.colors == len(back.getcolors(320 * 214))
    assert chunk_kinds(result.data) == [b"IHDR", b"IDAT", b"IEND"]


def test_grayscale_size_only_gives_a_grey_png() -> None:
    result = compress(images.sample_bytes(), CompressParams(strategy="size-only", grayscale=True))
    back = Image.open(io.BytesIO(result.data))
    assert (back.mode, back.size) == ("L", (128, 86))
    assert result.colors == len(np.unique(np.asarray(back)))


def test_grayscale_gives_a_grey_palette() -> None:
    result = compress(images.sample_bytes("flower.jpg"), CompressParams(grayscale=True, colors=8))
    back = Image.open(io.BytesIO(result.data))
    assert back.mode == "P" and result.colors <= 8
    palette = np.array(back.getpalette()[: 3 * result.colors]).reshape(-1, 3)
    assert (palette == palette[:, :1]).all()  # r == g == b
    assert images.png_bit_depth(result.data) <= 4


def test_exact_size_and_stride_rules_reach_the_output() -> None:
    data = images.sample_bytes(fmt="PNG")
    exact = compress(data, CompressParams(size=(224, 224)))
    assert exact.output_size == Image.open(io.BytesIO(exact.data)).size == (224, 224)
    stride = compress(data, CompressParams(scale=3, resample="stride", strategy="size-only"))
    assert stride.output_size == (math.ceil(640 / 3), math.ceil(427 / 3))
    out = np.asarray(Image.open(io.BytesIO(stride.data)))
    photo = images.sample_array()
    assert np.array_equal(out[0, 0], photo[0, 0]) and np.array_equal(out[-1, -1], photo[-1, -1])


def test_exif_rotated_jpeg_comes_out_upright_without_metadata() -> None:
    data = images.exif_jpeg(images.upright_marker(600, 400), 6, gps=True, icc=True)  # stored 400x600
    for strategy in (Strategy.KMEANS, Strategy.SIZE_ONLY):
        result = compress(data, CompressParams(strategy=strategy))
        assert result.input_size == (600, 400) and result.output_size == (120, 80)
        back = np.asarray(Image.open(io.BytesIO(result.data)).convert("RGB"))
        assert back[:15, :25].min() > 200  # white marker in the top-left corner
        assert not METADATA_CHUNKS & set(chunk_kinds(result.data))
        assert b"TestCam" not in result.data and b"ICC" not in result.data


def test_extreme_aspect_ratio_compresses() -> None:
    data = images.encode(Image.fromarray(images.gradient(1, 100_000)), "PNG")
    result = compress(data, CompressParams(colors=4))
    assert result.output_size == (1, 20_000)
    assert Image.open(io.BytesIO(result.data)).size == (1, 20_000)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scale": math.inf}, "scale must be a finite downsampling factor >= 1, got inf"),
        ({"size": (10, 11), "max_pixels": 100}, "size (10, 11) has more pixels than max_pixels (100)"),
    ],
)
def test_params_refuse_what_would_make_1x1_images_or_huge_buffers(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterError) as caught:
        CompressParams(**fields)  # type: ignore[arg-type]
    assert caught.value.message == message


def test_single_colour_image() -> None:
    result = compress(images.encode(Image.new("RGB", (50, 50), "navy"), "PNG"), CompressParams())
    back = Image.open(io.BytesIO(result.data))
    assert result.colors == 1 and images.png_bit_depth(result.data) == 1
    assert back.convert("RGB").getpixel((0, 0)) == (0, 0, 128)


# --- compress_job: what workers run ------------------------------------------------------------------


def test_job_success() -> None:
    outcome = compress_job(images.sample_bytes(), CompressParams(strategy="size-only"))
    assert outcome.ok and outcome.error is None and not outcome.permanent
    assert isinstance(outcome.result, Result)


@pytest.mark.parametrize(
    ("data", "params", "expected"),
    [
        (b"", CompressParams(), "empty file"),
        (b"not an image", CompressParams(), "not an image Pillow can read"),
        (images.png_bomb(20_000, 20_000), CompressParams(), "20000x20000"),
        (b"\xff\xd8\xff" + b"\0" * 300, CompressParams(), "truncated or corrupt JPEG"),
        (images.sample_bytes(), CompressParams(max_pixels=1000), "raise max_pixels"),
    ],
)
def test_job_bad_input_is_permanent(data: bytes, params: CompressParams, expected: str) -> None:
    outcome = compress_job(data, params)
    assert outcome.result is None and outcome.permanent
    assert outcome.error is not None and expected in outcome.error and "\n" not in outcome.error


def test_job_data_that_ends_early_is_transient() -> None:
    """The rest of the file may still be on its way: the daemon retries it (and fails it if it stays short)."""
    outcome = compress_job(images.sample_bytes()[:5000], CompressParams())
    assert (outcome.result, outcome.permanent) == (None, False)
    assert outcome.error is not None and outcome.error.startswith("truncated JPEG data: image file is truncated")


def test_job_memory_error_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(icsd.core.pipeline, "quantize", exhausted)
    outcome = compress_job(images.sample_bytes(), CompressParams())
    assert (outcome.result, outcome.permanent) == (None, False)
    assert "out of memory" in (outcome.error or "")


def test_job_unexpected_error_is_permanent_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(icsd.core.pipeline, "quantize", broken)
    outcome = compress_job(images.sample_bytes(), CompressParams())
    assert outcome == JobOutcome(result=None, error="internal error: RuntimeError: boom second line", permanent=True)


def test_results_and_outcomes_pickle() -> None:
    result = compress(images.sample_bytes(), CompressParams(strategy="size-only"))
    for value in (result, JobOutcome(result, None, False), compress_job(b"", CompressParams())):
        assert pickle.loads(pickle.dumps(value)) == value


def test_core_does_not_import_the_shell() -> None:
    code = (
        "import sys, icsd.core.pipeline, icsd.core.codec, icsd.core.resize\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('watchdog', 'pydantic_settings', 'pydantic')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
