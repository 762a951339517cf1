"""Safe decoding (every mode, orientation, draft, limits, broken files) and metadata-free PNG encoding."""

from __future__ import annotations

import io
from functools import partial

import numpy as np
import pytest
from PIL import Image, ImageOps

from icsd.core.codec import Decoded, decode, encode_palette_png, encode_png, normalize_mode
from icsd.core.errors import DecodeError, ImageTooLargeError, TruncatedImageError
from icsd.core.params import DEFAULT_MAX_PIXELS, CompressParams
from icsd.core.resize import downsample, draft_size
from tests import images

BIG = 10**8


def decoded(data: bytes, **kwargs: object) -> Decoded:
    return decode(data, max_pixels=kwargs.pop("max_pixels", BIG), **kwargs)  # type: ignore[arg-type]


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


# --- every Pillow mode becomes RGB or L --------------------------------------------------------------


@pytest.mark.parametrize("sample", list(images.MODE_SAMPLES))
def test_every_mode_decodes_to_rgb_or_l(sample: str) -> None:
    source = images.mode_sample(sample)
    data = images.encode(source, images.MODE_SAMPLES[sample])
    assert Image.open(io.BytesIO(data)).mode == sample.split("-")[0].split("+")[0]  # the file really is that mode
    out = decoded(data)
    assert out.image.mode == ("L" if sample in ("1", "L", "LA", "I;16", "I", "F") else "RGB")
    assert out.image.size == out.size == source.size
    assert out.reduction == 1
    arr = pixels(out.image)
    if sample in ("RGB", "CMYK", "YCbCr", "LAB", "CMYK-jpeg"):  # colour conversions are close, not exact
        assert np.abs(arr - images.gradient(32, 24)).mean() < 4
    elif sample == "1":
        assert set(np.unique(arr).tolist()) == {0, 255}
    elif sample == "L":
        assert np.array_equal(arr, pixels(source))


@pytest.mark.parametrize("sample", ["RGBA", "LA", "P+transparency"])
def test_transparent_pixels_become_white(sample: str) -> None:
    out = pixels(decoded(images.encode(images.mode_sample(sample), "PNG")).image)
    assert (out[:, :16] == 255).all()  # the transparent left half
    assert (out[:, 16:] < 255).any()  # the opaque right half keeps its colours
    if sample == "RGBA":
        assert np.array_equal(out[:, 16:], images.gradient(32, 24)[:, 16:])


def test_half_transparent_black_is_mid_grey() -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert pixels(decoded(images.encode(img, "PNG")).image)[0, 0].tolist() == [127, 127, 127]


def test_transparency_in_a_gif_becomes_white() -> None:
    img = Image.new("P", (8, 8), 1)
    img.putpalette([0, 0, 0, 255, 0, 0])
    img.paste(0, (0, 0, 4, 8))
    out = pixels(decoded(images.encode(img, "GIF", transparency=0)).image)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 7].tolist() == [255, 0, 0]


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    out = pixels(decoded(images.png16_gray(256, 4)).image)
    assert out.min() == 0 and out.max() == 255
    assert (np.diff(out[0]) >= 0).all()  # still a ramp
    assert len(np.unique(out)) > 200  # the whole range is used, not clipped to the first 256 values


def test_16_bit_rgb_keeps_its_range() -> None:
    out = pixels(decoded(images.png16_rgb(256, 4)).image)
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255
    assert (out[..., 1] == 255).all() and (out[..., 2] == 0).all()


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I", [0, 128, 255], [0, 128, 255]),  # 8-bit values in a wide mode are kept
        ("I", [0, 257, 65535], [0, 1, 255]),  # 16-bit values are scaled
        ("I", [-1000, 0, 1000], [0, 128, 255]),  # anything else is stretched
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),  # unit floats
        ("F", [0.0, 100.0, 255.0], [0, 100, 255]),
        ("F", [np.nan, 0.0, 1.0], [0, 0, 255]),
        ("I", [70000, 70000, 70000], [255, 255, 255]),  # constant out of range: clipped, no division by 0
    ],
)
def test_wide_grey_scaling_rules(mode: str, values: list[float], expected: list[int]) -> None:
    dtype = np.int32 if mode == "I" else np.float32
    img = Image.fromarray(np.array([values], dtype=dtype))
    assert img.mode == mode
    assert pixels(normalize_mode(img))[0].tolist() == expected


@pytest.mark.parametrize("mode", ["HSV", "RGBX", "PA", "RGBa"])
def test_in_memory_modes_normalise(mode: str) -> None:
    img = Image.fromarray(images.gradient(8, 8)).convert("RGBA").convert(mode)
    assert normalize_mode(img).mode == "RGB"
    assert normalize_mode(img, grayscale=True).mode == "L"


def test_grayscale_decodes_to_l() -> None:
    for data in (images.sample_bytes(), images.sample_bytes(fmt="PNG")):
        out = decoded(data, grayscale=True).image
        assert out.mode == "L"
        reference = pixels(Image.open(io.BytesIO(data)).convert("L"))
        assert np.abs(pixels(out) - reference).mean() < 1.5  # JPEG's own Y channel vs Pillow's luma


def test_animated_gif_and_multipage_tiff_give_the_first_frame() -> None:
    for data in (images.animated_gif(("red", "blue")), images.multipage_tiff(("red", "blue"))):
        out = pixels(decoded(data).image)
        assert out[0, 0].tolist() == [255, 0, 0]


# --- EXIF orientation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    upright = images.upright_marker(60, 40)
    data = images.exif_jpeg(upright, orientation)
    stored = Image.open(io.BytesIO(data))
    assert stored.size == ((40, 60) if orientation >= 5 else (60, 40))
    out = decoded(data)
    assert out.size == out.image.size == (60, 40)
    assert np.array_equal(pixels(out.image), pixels(ImageOps.exif_transpose(stored)))  # same as Pillow's
    marker = pixels(out.image)[:10, :15]  # the white block is back in the top-left corner
    assert marker.min() > 200
    assert np.abs(pixels(out.image) - upright).mean() < 3


def test_exif_orientation_with_draft_maps_the_size_hint() -> None:
    upright = images.upright_marker(800, 400)
    data = images.exif_jpeg(upright, 6)  # stored as 400x800
    seen: list[tuple[int, int]] = []

    def hint(width: int, height: int) -> tuple[int, int]:
        seen.append((width, height))
        return (200, 100)  # oriented: fits 800x400 four times

    out = decoded(data, min_size=hint)
    assert seen == [(800, 400)]  # the hint sees the upright size
    assert out.reduction == 4
    assert out.size == (800, 400)
    assert out.image.size == (200, 100)
    assert pixels(out.image)[:20, :40].min() > 200


# --- draft (reduced DCT scale) --------------------------------------------------------------------------


def test_draft_gives_the_same_size_and_close_pixels() -> None:
    data = images.sample_bytes(quality=95)
    params = CompressParams(scale=5)
    hinted = decoded(data, min_size=partial(draft_size, params=params))
    plain = decoded(data)
    assert hinted.reduction == 2 and plain.reduction == 1  # 640x427 -> 320x214 >= 2 * 128x86
    assert hinted.size == plain.size == (640, 427)
    fast = downsample(hinted.image, params, source_size=hinted.size, reduction=hinted.reduction)
    slow = downsample(plain.image, params)
    assert fast.size == slow.size == (128, 86)
    diff = np.abs(pixels(fast) - pixels(slow))
    assert diff.mean() < 4


def test_draft_is_limited_to_jpeg() -> None:
    out = decoded(images.sample_bytes(fmt="PNG"), min_size=lambda w, h: (10, 10))
    assert out.reduction == 1 and out.image.size == (640, 427)


# --- limits and broken input ---------------------------------------------------------------------------


@pytest.mark.parametrize("side", [10_000, 100_000])  # above Pillow's warning / above its hard error
def test_decompression_bomb_is_refused_before_decoding(side: int) -> None:
    data = images.png_bomb(side, side)  # ~100 bytes claiming 10^8 or 10^10 pixels
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLargeError) as err:
        decode(data, max_pixels=DEFAULT_MAX_PIXELS)
    message = str(err.value)
    assert f"{side}x{side}" in message and "max_pixels" in message and "89,478,485" in message
    assert "\n" not in message
    assert limit == Image.MAX_IMAGE_PIXELS  # the global limit was not touched


def test_small_max_pixels_is_refused_with_dimensions_and_setting() -> None:
    with pytest.raises(ImageTooLargeError, match=r"640x427 \(273,280 pixels\).*limit of 100,000.*max_pixels"):
        decode(images.sample_bytes(), max_pixels=100_000)
    assert decode(images.sample_bytes(), max_pixels=640 * 427).size == (640, 427)


def broken_inputs() -> dict[str, tuple[bytes, str]]:
    jpeg, png = images.sample_bytes(), images.sample_bytes(fmt="PNG")
    return {
        "zero bytes": (b"", "empty file (0 bytes)"),
        "text named .jpg": (b"just some text, not a photo\n", "not an image Pillow can read (format not recognised"),
        "truncated jpeg": (jpeg[: len(jpeg) // 2], "truncated JPEG data: image file is truncated"),
        "jpeg header only": (jpeg[:300], "truncated JPEG header: Truncated File Read"),
        "truncated png": (png[: len(png) // 2], "truncated PNG data: image file is truncated"),
        "png signature only": (png[:30], "truncated or corrupt PNG file"),
        "png bad header checksum": (png[:29] + b"\0\0\0\0" + png[33:], "truncated or corrupt PNG file"),
        "truncated gif": (images.animated_gif()[:40], "truncated or corrupt GIF"),
    }


@pytest.mark.parametrize("case", list(broken_inputs()))
def test_broken_input_is_a_decode_error_with_a_clear_message(case: str) -> None:
    data, expected = broken_inputs()[case]
    with pytest.raises(DecodeError) as err:
        decoded(data)
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_only_data_that_ran_out_is_worth_retrying() -> None:
    """A file cut short may still be arriving (TruncatedImageError is transient); a corrupt one never mends."""
    outcomes = {case: _error_of(data) for case, (data, _message) in broken_inputs().items()}
    ran_out = {"truncated jpeg", "jpeg header only", "truncated png"}
    assert {case for case, error in outcomes.items() if not error.permanent} == ran_out
    assert all(isinstance(outcomes[case], TruncatedImageError) for case in ran_out)


def _error_of(data: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as err:
        decoded(data)
    return err.value


def test_extreme_aspect_ratio_decodes() -> None:
    data = images.encode(Image.fromarray(images.gradient(1, 100_000)), "PNG")
    assert decoded(data).image.size == (1, 100_000)


# --- encoding ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("colors", "depth"), [(1, 1), (2, 1), (3, 2), (4, 2), (5, 4), (16, 4), (17, 8), (256, 8)])
def test_palette_png_uses_the_smallest_bit_depth(colors: int, depth: int) -> None:
    rng = np.random.default_rng(colors)
    palette = rng.integers(0, 256, (colors, 3), dtype=np.uint8)
    indices = (np.arange(40 * 30).reshape(30, 40) % colors).astype(np.uint8)
    data = encode_palette_png(palette, indices)
    assert images.png_bit_depth(data) == depth
    chunks = dict(images.png_chunks(data))
    assert len(chunks[b"PLTE"]) == 3 * colors  # trimmed to the colours used, not padded to 2**depth
    back = Image.open(io.BytesIO(data))
    assert back.mode == "P" and back.size == (40, 30)
    assert np.array_equal(np.asarray(back.convert("RGB")), palette[indices])


def test_grey_palette_becomes_a_grey_plte() -> None:
    data = encode_palette_png(np.array([0, 100, 255], dtype=np.uint8), np.array([[0, 1], [2, 1]], dtype=np.uint8))
    assert dict(images.png_chunks(data))[b"PLTE"] == bytes([0, 0, 0, 100, 100, 100, 255, 255, 255])
    assert np.asarray(Image.open(io.BytesIO(data)).convert("L")).tolist() == [[0, 100], [255, 100]]


def test_palette_png_rejects_indices_outside_the_palette() -> None:
    with pytest.raises(ValueError, match="palette length"):
        encode_palette_png(np.zeros((2, 3), dtype=np.uint8), np.array([[0, 2]], dtype=np.uint8))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_truecolour_png_has_no_metadata(mode: str) -> None:
    img = Image.fromarray(images.gradient(20, 10)).convert(mode)
    img.info.update(icc_profile=images.icc_profile(), exif=b"Exif\0\0junk", transparency=0, dpi=(300, 300))
    data = encode_png(img)
    assert [kind for kind, _ in images.png_chunks(data)] == [b"IHDR", b"IDAT", b"IEND"]
    back = Image.open(io.BytesIO(data))
    assert back.mode == mode and np.array_equal(np.asarray(back), np.asarray(img))


def test_encode_png_refuses_other_modes() -> None:
    with pytest.raises(ValueError, match="RGB, L, RGBA or LA"):
        encode_png(Image.new("CMYK", (2, 2)))
