"""The seams: ``Codec`` composes any image model with any symbol coder, both from a model file.

A new transform is one class implementing ``sccodec.model.interface.ImageModel`` (NumPy in and
out); trying it touches no module of the package (this file defines one), and shipping it adds
its module and one line to ``sccodec.weights.ARCHITECTURES``. Likewise a new entropy model is
one ``SymbolCoder``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from helpers import gradient_image, psnr
from sccodec import bitstream
from sccodec.api import Codec
from sccodec.coder import ContextCoder, SymbolCoder
from sccodec.errors import ModelMismatchError
from sccodec.model.config import Geometry
from sccodec.model.interface import ImageModel
from sccodec.weights import ARCHITECTURES


class PixelBlocks:
    """A toy transform: each 4x4 block's 48 pixel values are the first 48 symbols of its
    position, scaled by a per-level step; the other symbol channels stay 0."""

    geometry = Geometry(stride=4, analysis_margin=4, synthesis_margin=0)

    def __init__(self, atoms: int) -> None:
        self.atoms = atoms

    @staticmethod
    def scale(quality_index: int) -> float:
        return 4.0 + 4.0 * quality_index

    def analyze(self, x: np.ndarray) -> np.ndarray:
        _, c, height, width = x.shape
        h, w = height // 4, width // 4
        return x.reshape(1, c, h, 4, w, 4).transpose(0, 1, 3, 5, 2, 4).reshape(1, c * 16, h, w)

    def scaled_symbols(self, y: np.ndarray, quality_index: int) -> np.ndarray:
        s = np.zeros((self.atoms, *y.shape[-2:]), np.float32)
        s[: y.shape[1]] = (y[0] - 0.5) * self.scale(quality_index)
        return s

    def decode_symbols(self, symbols: np.ndarray, quality_index: int) -> np.ndarray:
        _, h, w = symbols.shape
        blocks = symbols[:48].astype(np.float32) / self.scale(quality_index) + 0.5
        x = blocks.reshape(1, 3, 4, 4, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(1, 3, h * 4, w * 4)
        return np.clip(x, 0, 1)


class PlainRounding(ContextCoder):
    """A coder variant: the shipped tables, plain rounding (no dead zone, no rate awareness)."""

    def quantize(self, s: np.ndarray, quality_index: int, effort: int = 2) -> np.ndarray:
        return np.rint(s).astype(np.int32)


def test_the_shipped_halves_implement_the_interfaces(codec) -> None:
    assert isinstance(codec.network, ImageModel) and isinstance(codec.coder, SymbolCoder)
    assert codec.stride == codec.network.geometry.stride == 16 and codec.geometry.synthesis_margin >= 1


def test_a_new_transform_codes_through_the_codec_unchanged(model_file) -> None:
    toy = dataclasses.replace(model_file, name="toy-blocks")  # its name goes into every header
    plain = PlainRounding(model_file.coder.tables, model_file.coder.format_version, classes=model_file.coder.classes,
                          pairs=model_file.coder.pairs)
    codec = Codec(toy, "cpu", network=PixelBlocks(plain.atoms), coder=plain)
    img = gradient_image(18, 26)  # not a multiple of the stride: padded, then cropped
    results = {}
    for quality in (1, 10):
        data = codec.encode(img, quality)
        header = bitstream.parse_header(data)[0]
        assert (header.model, header.quality, header.width, header.height) == ("toy-blocks", quality, 26, 18)
        symbols = codec.parse_symbols(data).tiles[0]  # the toy's grid: 48 live channels at stride 4
        assert symbols.shape == (plain.atoms, 5, 7) and not symbols[48:].any() and symbols[:48].any()
        results[quality] = psnr(img, np.asarray(codec.decode(data)))
    # what the toy's quantiser promises: error at most half a step of 1/scale
    assert results[1] > 10 * np.log10(1 / (0.5 / PixelBlocks.scale(0)) ** 2) - 1
    assert results[10] > results[1] + 10


def test_a_model_file_builds_the_architecture_it_names(model_file) -> None:
    from sccodec.model.scvae import SCVAE

    assert model_file.architecture in ARCHITECTURES and isinstance(model_file.build(), SCVAE)
    unknown = dataclasses.replace(model_file, architecture="no-such-transform")
    with pytest.raises(ModelMismatchError, match="no-such-transform"):
        unknown.build()
    with pytest.raises(ModelMismatchError, match="no-such-transform"):
        Codec(unknown, "cpu")


def test_encoder_settings_come_from_the_sidecar_and_change_no_decoder(model_file, small_rgb) -> None:
    """Another default level and other rounding weights: different files, each decodes the same way."""
    from sccodec.weights import EncoderSettings

    other = dataclasses.replace(model_file, encoder=EncoderSettings(default_quality=3, bits_weights=(0.0,) * 10))
    codec = Codec(other, "cpu")
    assert codec.default_quality == 3 and Codec(model_file, "cpu").default_quality == 6
    data = codec.encode(small_rgb)
    assert bitstream.parse_header(data)[0].quality == 3
    assert np.array_equal(np.asarray(Codec(model_file, "cpu").decode(data)), np.asarray(codec.decode(data)))
