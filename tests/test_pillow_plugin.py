"""The Pillow plugin's save path: ``img.save("x.scv", ...)`` must write *this* image, at the level
asked for. Header fields alone cannot tell (a file of the image rotated 180 degrees has the same
size, mode and quality), so every test here decodes what was written and compares pixels: with
what the API writes for the same image and options, and with the source itself.

(Opening, lazy decoding and Pillow's error conventions are tested in test_codec.py.)
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import sccodec
from helpers import astronaut_crop, luma_correlation
from sccodec import bitstream

SOURCE = astronaut_crop(48, 64)  # a natural photo: flipping or rotating it changes everything
MIN_CORRELATION = 0.8  # decoded vs source, even at the lowest level (about 0.9); a rotated save: below 0


def save(image: Image.Image, tmp_path, **options) -> bytes:
    path = tmp_path / "saved.scv"
    image.save(path, **options)
    return path.read_bytes()


def assert_same_picture(got: np.ndarray, want: np.ndarray) -> None:
    """Decoded pixels of the saved file against those of the API's file for the same image and
    options: identical here; the tolerance only allows an encoder on a GPU to round a symbol
    differently now and then."""
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert np.mean(diff <= 1) >= 0.99 and diff.mean() <= 0.5, (
        f"the saved file decodes to another picture: mean difference {diff.mean():.2f} levels, "
        f"{100 * np.mean(diff <= 1):.1f}% within one level")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.ndim == 3:
        return luma_correlation(a, b)
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def check_saved(codec, data: bytes, source: np.ndarray, reference: bytes, mode: str) -> bitstream.Header:
    header = bitstream.parse_header(data)[0]
    assert (header.width, header.height, header.mode) == (source.shape[1], source.shape[0], mode)
    decoded = codec.decode(data)
    assert decoded.mode == mode
    got = np.asarray(decoded)
    assert_same_picture(got, np.asarray(codec.decode(reference)))
    assert correlation(source, got) > MIN_CORRELATION, "the saved file is not the source image"
    return header


@pytest.mark.parametrize("quality", [1, 4, max(sccodec.QUALITIES)])
def test_save_rgb_at_a_quality(codec, tmp_path, quality) -> None:
    data = save(Image.fromarray(SOURCE), tmp_path, quality=quality)
    header = check_saved(codec, data, SOURCE, sccodec.encode(SOURCE, quality), "RGB")
    assert header.quality == quality


def test_save_without_a_quality_uses_the_default(codec, tmp_path) -> None:
    data = save(Image.fromarray(SOURCE), tmp_path)
    header = check_saved(codec, data, SOURCE, sccodec.encode(SOURCE), "RGB")
    assert header.quality == sccodec.DEFAULT_QUALITY


def test_save_grey_stays_grey(codec, tmp_path) -> None:
    grey = Image.fromarray(SOURCE).convert("L")
    pixels = np.asarray(grey)
    data = save(grey, tmp_path, quality=3)
    header = check_saved(codec, data, pixels, sccodec.encode(grey, 3), "L")
    assert header.quality == 3


def test_save_to_a_file_object(codec) -> None:
    buffer = io.BytesIO()
    Image.fromarray(SOURCE).save(buffer, format="SCV", quality=2)
    header = check_saved(codec, buffer.getvalue(), SOURCE, sccodec.encode(SOURCE, 2), "RGB")
    assert header.quality == 2


@pytest.fixture(scope="module")
def levels(codec) -> dict[int, sccodec.Encoded]:
    """Every level's file and PSNR for SOURCE, to pick targets that fall between two levels."""
    return {q: codec.encode_with_info(SOURCE, q) for q in codec.qualities}


@pytest.mark.parametrize("option", ["target_bpp", "target_psnr"])
def test_save_with_a_target(codec, tmp_path, levels, option) -> None:
    """A target between levels 4 and 5: the plugin must run the search, and code this image."""
    if option == "target_bpp":
        target, expected = (levels[4].bpp + levels[5].bpp) / 2, 4  # the best level that fits
    else:
        from sccodec.metrics import psnr_rgb

        reached = {q: psnr_rgb(SOURCE, np.asarray(codec.decode(levels[q].data))) for q in (4, 5)}
        assert reached[5] > reached[4], "the test needs levels 4 and 5 to differ in PSNR"
        target, expected = (reached[4] + reached[5]) / 2, 5  # the smallest level that reaches it
    data = save(Image.fromarray(SOURCE), tmp_path, **{option: target})
    header = check_saved(codec, data, SOURCE, sccodec.encode(SOURCE, **{option: target}), "RGB")
    assert header.quality == expected


@pytest.mark.parametrize("effort", sccodec.EFFORTS)
def test_save_at_an_effort(codec, tmp_path, effort) -> None:
    data = save(Image.fromarray(SOURCE), tmp_path, quality=2, effort=effort)
    check_saved(codec, data, SOURCE, sccodec.encode(SOURCE, 2, effort=effort), "RGB")
