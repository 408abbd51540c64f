"""Image inputs (sccodec.image_io): the per-mode behaviour documented in its module docstring,
EXIF orientation, input kinds, unreadable files and pixel limits."""
from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import encode_png, exif_rotated_jpeg, gradient_image
from sccodec.errors import ImageInputError, LimitError
from sccodec.image_io import (MAX_ICC_BYTES, ICCProfileWarning, from_planes, icc_problem, pad_to_multiple, read_image,
                              to_planes, validate_icc)

LIMIT = 1 << 27
RGB = gradient_image(12, 10, seed=1)


def read(source, max_pixels: int = LIMIT):
    return read_image(source, max_pixels)


def with_alpha(alpha: np.ndarray, mode: str) -> Image.Image:
    if mode == "La":  # Pillow's RGBA -> La conversion drops the alpha: build it from bands
        return Image.merge("La", (Image.fromarray(RGB[..., 0]), Image.fromarray(alpha)))
    rgba = Image.fromarray(np.dstack([RGB, alpha]), "RGBA")
    return rgba if mode == "RGBA" else rgba.convert(mode)


OPAQUE = np.full(RGB.shape[:2], 255, np.uint8)
HOLE = OPAQUE.copy()
HOLE[3, 4] = 0


# ---------------------------------------------------------------- colour modes


@pytest.mark.parametrize("mode", ["RGBX", "YCbCr", "CMYK", "LAB", "HSV", "P", "1"])
def test_colour_modes_are_coded_as_rgb(mode) -> None:
    rng = np.random.default_rng(0)
    bands = len(Image.new(mode, (1, 1)).getbands())
    if mode in ("P", "1"):
        img = Image.fromarray(RGB).convert(mode)
    else:
        img = Image.frombytes(mode, (10, 12), rng.integers(0, 256, 10 * 12 * bands, dtype=np.uint8).tobytes())
    src = read(img)
    assert src.mode == "RGB"
    np.testing.assert_array_equal(src.pixels, np.asarray(img.convert("RGB")))


def test_grey_is_coded_as_replicated_rgb_and_remembered_as_l() -> None:
    grey = RGB[..., 1]
    src = read(Image.fromarray(grey, "L"))
    assert src.mode == "L"
    np.testing.assert_array_equal(src.pixels, np.dstack([grey] * 3))


@pytest.mark.parametrize(("mode", "expected_mode"), [
    ("RGBA", "RGB"), ("LA", "L"), ("PA", "RGB"), ("RGBa", "RGB"), ("La", "L"),
])
def test_opaque_alpha_is_dropped(mode, expected_mode) -> None:
    img = with_alpha(OPAQUE, mode)
    src = read(img)
    assert src.mode == expected_mode
    assert src.pixels.shape == (12, 10, 3) and src.pixels.dtype == np.uint8
    # the colour is kept exactly: what the mode holds without its alpha band
    if mode == "La":
        expected = np.dstack([RGB[..., 0]] * 3)
    elif mode == "LA":
        expected = np.dstack([np.asarray(Image.fromarray(RGB).convert("L"))] * 3)
    elif mode == "PA":
        expected = np.asarray(img.convert("RGB"))  # the palette's colours
    else:
        expected = RGB
    np.testing.assert_array_equal(src.pixels, expected)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "RGBa", "La"])
def test_real_transparency_is_refused(mode) -> None:
    with pytest.raises(ImageInputError, match="transparen"):
        read(with_alpha(HOLE, mode))


def palette_with_transparency(index_used: bool) -> bytes:
    img = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    index = int(np.asarray(img)[3, 4]) if index_used else 255  # 255: no pixel uses it
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=index)
    return buf.getvalue()


def test_palette_with_used_transparent_index_is_refused() -> None:
    with pytest.raises(ImageInputError, match="transparen"):
        read(palette_with_transparency(index_used=True))


def test_palette_with_unused_transparent_index_is_fine() -> None:
    data = palette_with_transparency(index_used=False)
    src = read(data)
    assert src.mode == "RGB"
    np.testing.assert_array_equal(src.pixels, np.asarray(Image.open(io.BytesIO(data)).convert("RGBA").convert("RGB")))


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("used", [True, False])
def test_transparent_colour_is_refused_only_when_a_pixel_has_it(mode, used) -> None:
    """PNG's tRNS chunk marks one colour transparent, without an alpha band."""
    img = Image.fromarray(RGB).convert(mode)
    colour = img.getpixel((4, 3)) if used else ((1, 2, 3) if mode == "RGB" else 255)
    pixels = np.asarray(img).reshape(-1, len(img.getbands()))
    assert used or not (pixels == np.atleast_1d(colour)).all(axis=1).any()
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=colour)
    if used:
        with pytest.raises(ImageInputError, match="transparen"):
            read(buf.getvalue())
    else:
        assert read(buf.getvalue()).mode == mode


@pytest.mark.parametrize("array", [
    pytest.param(np.zeros((0, 5, 3), np.uint8), id="0 rows"),
    pytest.param(torch.zeros(3, 4, 0), id="0 columns tensor"),
    pytest.param(Image.new("RGB", (0, 4)), id="0 columns PIL"),
    pytest.param(torch.full((3, 4, 4), float("nan")), id="NaN tensor"),
])
def test_empty_or_nan_images_are_refused(array) -> None:
    with pytest.raises(ImageInputError, match="no pixels|NaN"):
        read(array)


@pytest.mark.parametrize("source", [None, 5, 1.5, ["in.png"]])
def test_other_python_objects_are_refused(source) -> None:
    with pytest.raises(ImageInputError, match="cannot read an image from"):
        read(source)


def test_bytes_like_inputs_are_read(tmp_path) -> None:
    data = encode_png(RGB)
    for source in (bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(read(source).pixels, RGB)


def test_text_mode_file_is_refused(tmp_path) -> None:
    path = tmp_path / "in.png"
    path.write_bytes(encode_png(RGB))
    with path.open() as f, pytest.raises(ImageInputError, match="binary mode"):
        read(f)


@pytest.mark.parametrize("source", [
    pytest.param(lambda: Image.fromarray(np.arange(120, dtype=np.uint16).reshape(12, 10) * 500), id="I;16"),
    pytest.param(lambda: encode_png(np.arange(120, dtype=np.uint16).reshape(12, 10) * 500), id="16-bit PNG"),
    pytest.param(lambda: Image.new("I", (10, 12)), id="I"),
    pytest.param(lambda: Image.new("F", (10, 12)), id="F"),
])
def test_high_bit_depth_is_refused(source) -> None:
    with pytest.raises(ImageInputError, match="8-bit"):
        read(source())


# ---------------------------------------------------------------- orientation


@pytest.mark.parametrize("as_pil", [False, True])
def test_exif_orientation_is_applied(as_pil) -> None:
    data = exif_rotated_jpeg()
    src = read(Image.open(io.BytesIO(data)) if as_pil else data)
    assert src.pixels.shape == (32, 16, 3)
    top, bottom = src.pixels[:16].reshape(-1, 3).mean(0), src.pixels[16:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50, top
    assert bottom[2] > 200 and bottom[0] < 50, bottom


# ---------------------------------------------------------------- input kinds


@pytest.mark.parametrize("kind", ["PIL", "array", "tensor", "batched tensor", "path", "str", "bytes", "file"])
def test_every_input_kind_gives_the_same_pixels(kind, tmp_path) -> None:
    path = tmp_path / "in.png"
    path.write_bytes(encode_png(RGB))
    tensor = torch.from_numpy(RGB).permute(2, 0, 1).float() / 255
    source = {"PIL": lambda: Image.fromarray(RGB), "array": lambda: RGB, "tensor": lambda: tensor,
              "batched tensor": lambda: tensor[None], "path": lambda: path, "str": lambda: str(path),
              "bytes": path.read_bytes, "file": lambda: io.BytesIO(path.read_bytes())}[kind]()
    src = read(source)
    assert src.mode == "RGB"
    np.testing.assert_array_equal(src.pixels, RGB)


def test_float_tensor_is_clamped_to_unit_range() -> None:
    t = torch.tensor([-0.5, 0.0, 0.5, 1.0, 7.0]).reshape(1, 1, 5).expand(3, 1, 5)
    np.testing.assert_array_equal(read(t).pixels[0, :, 0], [0, 0, 128, 255, 255])


def test_integer_tensor_is_not_misread_as_unit_floats() -> None:
    """A uint8 tensor holds 0..255: reading it as floats in [0, 1] would clamp every non-zero
    value to white. Either refuse it or read it as 8-bit values."""
    t = torch.from_numpy(RGB).permute(2, 0, 1).contiguous()
    try:
        src = read(t)
    except ImageInputError:
        return
    np.testing.assert_array_equal(src.pixels, RGB)


@pytest.mark.parametrize("array", [
    pytest.param(RGB[..., 0], id="2-D"),
    pytest.param(RGB.astype(np.float64) / 255, id="float64"),
    pytest.param(np.dstack([RGB, OPAQUE]), id="4 channels"),
    pytest.param(torch.zeros(12, 10, 3), id="HWC tensor"),
    pytest.param(torch.zeros(2, 3, 12, 10), id="batch of 2"),
])
def test_malformed_arrays_are_refused(array) -> None:
    with pytest.raises(ImageInputError):
        read(array)


# ---------------------------------------------------------------- unreadable inputs


@pytest.mark.parametrize("make", [
    pytest.param(lambda p: p.write_bytes(b""), id="zero bytes"),
    pytest.param(lambda p: p.write_bytes(encode_png(gradient_image(64, 64))[:300]), id="truncated PNG"),
    pytest.param(lambda p: p.write_text("this is not an image\n"), id="text"),
    pytest.param(lambda p: p.mkdir(), id="directory"),
    pytest.param(lambda p: None, id="missing"),
])
def test_unreadable_files_raise_image_input_error(make, tmp_path) -> None:
    path = tmp_path / "input.png"
    make(path)
    with pytest.raises(ImageInputError) as err:
        read(path)
    assert "\n" not in str(err.value)


def test_truncated_png_bytes() -> None:
    data = encode_png(gradient_image(64, 64))
    for cut in (0, 8, 40, len(data) // 2, 3 * len(data) // 4):
        with pytest.raises(ImageInputError):
            read(data[:cut])


# ---------------------------------------------------------------- pixel limit


@pytest.mark.parametrize("kind", ["array", "PNG"])
def test_pixel_limit_is_exact(kind) -> None:
    """15x17 = 255 pixels (odd on purpose): allowed at max_pixels=255, refused at 254, and no
    decompression-bomb warning for an image within the limit."""
    pixels = gradient_image(15, 17)
    source = pixels if kind == "array" else encode_png(pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. PIL.Image.DecompressionBombWarning
        assert read(source, max_pixels=255).pixels.shape == (15, 17, 3)
        assert read(source, max_pixels=1000).pixels.shape == (15, 17, 3)
    with pytest.raises(LimitError, match="254"):
        read(source, max_pixels=254)


def test_pixel_limit_leaves_pillow_global_alone() -> None:
    before = Image.MAX_IMAGE_PIXELS
    read(encode_png(RGB), max_pixels=500)
    with pytest.raises(LimitError):
        read(encode_png(RGB), max_pixels=100)
    assert Image.MAX_IMAGE_PIXELS == before


def test_padding_replicates_the_edges() -> None:
    x = np.broadcast_to(np.arange(6, dtype=np.uint8).reshape(2, 3, 1), (2, 3, 3))
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (4, 4, 3)
    np.testing.assert_array_equal(padded[..., 0], [[0, 1, 2, 2], [3, 4, 5, 5], [3, 4, 5, 5], [3, 4, 5, 5]])
    assert pad_to_multiple(padded, 4) is padded


def test_planes_round_trip_and_round_to_the_nearest_level() -> None:
    pixels = (np.arange(5 * 7 * 3) % 256).astype(np.uint8).reshape(5, 7, 3)
    planes = to_planes(pixels)
    assert planes.shape == (1, 3, 5, 7) and planes.dtype == np.float32 and 0 <= planes.min() <= planes.max() <= 1
    np.testing.assert_array_equal(from_planes(planes), pixels)
    np.testing.assert_array_equal(from_planes(planes + 0.49 / 255), pixels)
    assert from_planes(np.full((1, 3, 1, 1), 2.0)).max() == 255 and from_planes(np.full((1, 3, 1, 1), -1.0)).max() == 0


def test_icc_profile_is_carried_through(codec, tmp_path):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "icc.png"
    Image.fromarray(gradient_image(24, 20)).save(src, icc_profile=profile)
    data = codec.encode(src, quality=2)
    assert b"iCCP" in data
    decoded = codec.decode(data)
    assert decoded.info["icc_profile"] == profile
    out = tmp_path / "out.png"
    decoded.save(out)
    with Image.open(out) as written:
        assert written.info["icc_profile"] == profile


def _bare_header(colour_space: bytes) -> bytes:
    """128 zero bytes but the colour space signature: not a valid profile."""
    head = bytearray(128)
    head[16:20] = colour_space
    return bytes(head)


def _fake_profile(colour_space: bytes) -> bytes:
    """The smallest profile that passes ``validate_icc``: a header (its size field, the 'acsp'
    signature, the colour space signature: what ``read_image`` looks at) and an empty tag table."""
    head = bytearray(_bare_header(colour_space) + bytes(4))
    head[0:4] = struct.pack(">I", len(head))
    head[12:16], head[20:24], head[36:40] = b"mntr", b"XYZ ", b"acsp"
    return bytes(head)


@pytest.mark.parametrize(("mode", "space", "kept"), [
    ("RGB", b"RGB ", True), ("L", b"GRAY", True), ("RGB", b"CMYK", False), ("LAB", b"Lab ", False),
    ("L", b"RGB ", False),
])
def test_only_a_profile_that_describes_the_coded_pixels_is_kept(mode, space, kept) -> None:
    img = Image.fromarray(RGB).convert(mode) if mode != "LAB" else Image.new("LAB", (10, 12), (50, 0, 0))
    img.info["icc_profile"] = _fake_profile(space)
    assert (read(img).icc is not None) == kept


def test_cmyk_with_its_profile_is_converted_to_srgb_through_it(monkeypatch) -> None:
    from PIL import ImageCms

    img = Image.fromarray(RGB).convert("CMYK")
    img.info["icc_profile"] = _fake_profile(b"CMYK")
    seen = []

    def fake_transform(im, src, dst, outputMode):  # noqa: N803 (Pillow's keyword)
        seen.append(outputMode)
        return Image.new("RGB", im.size, (1, 2, 3))

    monkeypatch.setattr(ImageCms, "profileToProfile", fake_transform)
    monkeypatch.setattr(ImageCms, "ImageCmsProfile", lambda f: f)
    src = read(img)
    assert seen == ["RGB"] and src.icc is None
    assert (src.pixels == [1, 2, 3]).all()


def test_cmyk_with_an_unusable_profile_falls_back_to_the_plain_conversion() -> None:
    img = Image.fromarray(RGB).convert("CMYK")
    img.info["icc_profile"] = _bare_header(b"CMYK")  # a header without a body: littleCMS refuses it
    src = read(img)
    assert src.icc is None
    np.testing.assert_array_equal(src.pixels, np.asarray(img.convert("RGB")))


# ---------------------------------------------------------------- ICC profiles are validated


def _srgb() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _resized(profile: bytes, size: int) -> bytes:
    """``profile`` with zeros appended up to ``size`` bytes and its size field saying so."""
    data = profile + bytes(size - len(profile))
    return struct.pack(">I", size) + data[4:]


def _with(profile: bytes, offset: int, new: bytes) -> bytes:
    return profile[:offset] + new + profile[offset + len(new):]


def test_a_valid_profile_passes_unchanged() -> None:
    profile = _srgb()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert validate_icc(profile) == profile
        assert validate_icc(_resized(profile, 300_000)) is not None, "large camera profiles are kept"
        assert validate_icc(_resized(profile, MAX_ICC_BYTES)) is not None, "the cap itself is allowed"
        assert validate_icc(None) is None and validate_icc(b"") is None, "no profile: no warning"


BROKEN_PROFILES = {
    "random bytes": bytes((i * 151 + 7) % 256 for i in range(70_000)),
    "too short": b"\x00\x00\x00\x40" + bytes(60),
    "size field wrong": _with(_srgb(), 0, struct.pack(">I", 100_000)),
    "no acsp signature": _with(_srgb(), 36, b"xxxx"),
    "header only, claimed size": _resized(_bare_header(b"RGB "), 4096),
    "above the cap": _resized(_srgb(), MAX_ICC_BYTES + 1),
}


@pytest.mark.parametrize("name", list(BROKEN_PROFILES))
def test_a_broken_profile_is_dropped_with_a_warning(name) -> None:
    data = BROKEN_PROFILES[name]
    assert icc_problem(data)
    with pytest.warns(ICCProfileWarning, match="dropped the ICC profile") as caught:
        assert validate_icc(data) is None
    assert len(caught) == 1 and "\n" not in str(caught[0].message)


@pytest.mark.parametrize("name", ["random bytes", "no acsp signature", "above the cap"])
def test_reading_an_image_with_a_broken_profile_keeps_the_pixels_and_drops_the_profile(name) -> None:
    """A codec should not fail a user's photo because of a broken profile: the pixels are read
    as they are, and the profile is dropped with a warning."""
    img = Image.fromarray(RGB)
    img.info["icc_profile"] = BROKEN_PROFILES[name]
    with pytest.warns(ICCProfileWarning):
        src = read(img)
    assert src.icc is None
    np.testing.assert_array_equal(src.pixels, RGB)


def test_a_broken_profile_in_a_png_file_is_dropped(tmp_path) -> None:
    path = tmp_path / "broken_icc.png"
    Image.fromarray(RGB).save(path, icc_profile=BROKEN_PROFILES["random bytes"])
    with pytest.warns(ICCProfileWarning):
        src = read(path)
    assert src.icc is None
    np.testing.assert_array_equal(src.pixels, RGB)
