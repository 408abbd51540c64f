"""The encoder's rate-aware rounding (sccodec.rdo): which ±1 values it zeroes, and that the codec uses it."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import textured_image
import sccodec
import sccodec.errors
from sccodec import rdo
from sccodec.api import Codec, parse_symbols
from sccodec.context import SCHEMES
from sccodec.entropy import SymbolTables
from sccodec.image_io import pad_to_multiple, to_planes
from sccodec.model.config import STRIDE
from sccodec.rdo import ZERO_THRESHOLD

R = 4  # value range of the hand-made tables


def tables_with(p_nonzero_per_atom: list[float], p_one: float = 0.9) -> SymbolTables:
    """Nested-scheme tables for one level: each atom's P(non-zero) the same in every context,
    |v| = 1 with probability ``p_one``, signs even."""
    scheme = SCHEMES["nested"]
    k = len(p_nonzero_per_atom)
    p = np.broadcast_to(np.array(p_nonzero_per_atom)[None, :, None], (1, k, scheme.flag_contexts)).copy()
    magnitudes = np.full(R, (1 - p_one) / (R - 1))
    magnitudes[0] = p_one
    row = np.concatenate([magnitudes[::-1], magnitudes]) / 2
    values = np.broadcast_to(row, (1, k, scheme.value_contexts, 2 * R)).copy()
    signs = np.full((1, k, scheme.sign_contexts), 0.5)
    return SymbolTables(p, values, groups=4, context="nested", signs=signs)


def test_a_one_is_zeroed_where_it_costs_many_bits_and_kept_where_it_is_cheap() -> None:
    tables = tables_with([0.5, 0.001, 0.5, 0.5])
    s = np.zeros((4, 6, 6), np.float32)
    s[0, 2, 3] = s[1, 2, 3] = 0.7  # atom 0: a ±1 costs ~0.15 bit more than a 0; atom 1: ~10
    s[0, 4, 4] = s[1, 4, 4] = -0.7
    out = rdo.quantize(s, tables, 0, 0.035)
    assert out[0, 2, 3] == 1 and out[0, 4, 4] == -1
    assert out[1, 2, 3] == 0 and out[1, 4, 4] == 0
    bits = rdo.one_bits(np.rint(s).astype(np.int32), s != 0, s < 0, tables, 0)  # flat order: atom 0, then 1
    assert bits[:2] == pytest.approx([-np.log2(0.45)] * 2, abs=1e-6)
    assert bits[2:] == pytest.approx([np.log2(0.999 / 0.001) - np.log2(0.45)] * 2, abs=1e-6)


def test_only_values_that_round_to_one_are_ever_changed_and_only_to_zero() -> None:
    tables = tables_with([0.001] * 8)
    rng = np.random.default_rng(0)
    s = (rng.laplace(scale=1.5, size=(8, 10, 12))).astype(np.float32)
    s[0, 0, :4] = [0.5001, 0.99, 1.0, 1.4999]
    out = rdo.quantize(s, tables, 0, bits_weight=10.0)  # every ±1 below the cap gets zeroed
    rounded = np.rint(s).astype(np.int32)
    changed = out != rounded
    assert changed.any()
    assert np.all(out[changed] == 0) and np.all(np.abs(rounded[changed]) == 1)
    assert np.all(np.abs(s[changed]) < rdo.MAX_ZERO_THRESHOLD)
    assert np.array_equal(out[np.abs(rounded) != 1], rounded[np.abs(rounded) != 1])
    assert list(out[0, 0, :4]) == [0, 0, 1, 1]
    assert np.array_equal(rdo.quantize(s, tables, 0, bits_weight=0.0), rounded)


def test_no_weight_means_the_fixed_dead_zone() -> None:
    tables = tables_with([0.5] * 4)
    s = np.array([0.0, 0.55, -0.57, ZERO_THRESHOLD, 0.9, -1.6, 2.5, 40.2], np.float32).reshape(4, 1, 2)
    expected = np.array([0, 0, 0, 1, 1, -2, 2, 40], np.int32).reshape(4, 1, 2)
    assert np.array_equal(rdo.quantize(s, tables, 0, None), expected)
    assert np.array_equal(rdo.fixed_dead_zone(s, R), expected)


def test_the_rounding_weights_are_the_model_files_encoder_settings() -> None:
    """Per level, from the sidecar; a level without a weight (or past the list) keeps the dead zone."""
    codec = Codec(device="cpu")
    weights = codec.model_file.encoder.bits_weights
    assert len(weights) == len(codec.qualities) and any(w is None for w in weights)
    assert all(w is None or 0 < w < 0.2 for w in weights)
    assert [codec.coder.bits_weight(q) for q in range(len(weights))] == list(weights)
    assert codec.coder.bits_weight(len(weights)) is None


@pytest.mark.parametrize("quality", [2, 5])
def test_the_codec_codes_exactly_what_rdo_quantize_gives(quality) -> None:
    """Level 2 of scvae-gdn rounds rate-aware, level 5 with the fixed dead zone (its sidecar's weights)."""
    codec = Codec(device="cpu")
    img = textured_image(64, 96)
    data = codec.encode(img, quality=quality)
    net, q = codec.network, quality - 1
    y = net.analyze(to_planes(pad_to_multiple(img, STRIDE)))
    s = net.scaled_symbols(y, q)
    weight = codec.coder.bits_weight(q)
    assert (weight is None) == (quality == 5)
    expected = rdo.quantize(s, codec.model_file.tables, q, weight)
    assert np.array_equal(parse_symbols(data).tiles[0], expected)
    other = rdo.quantize(s, codec.model_file.tables, q, 0.035 if weight is None else None)
    assert not np.array_equal(expected, other)  # the two rules differ on this image


@pytest.mark.parametrize("effort", [1, 2])
def test_each_effort_codes_its_rounding_rule(effort) -> None:
    """Effort 1: the fixed dead zone; effort 2: the rate-aware rounding (level 2 has a weight)."""
    codec = Codec(device="cpu")
    img = textured_image(64, 96)
    q = 1
    s = codec.network.scaled_symbols(codec.network.analyze(to_planes(pad_to_multiple(img, STRIDE))), q)
    expected = rdo.quantize(s, codec.model_file.tables, q, codec.coder.bits_weight(q) if effort >= 2 else None)
    assert np.array_equal(parse_symbols(codec.encode(img, quality=q + 1, effort=effort)).tiles[0], expected)


def test_the_efforts_differ_and_the_default_is_the_rate_aware_rounding() -> None:
    codec = Codec(device="cpu")
    img = textured_image(64, 96)
    files = {e: codec.encode(img, quality=2, effort=e) for e in sccodec.EFFORTS}
    assert len(set(files.values())) == len(files)
    assert sccodec.DEFAULT_EFFORT == 2 and codec.encode(img, quality=2) == files[2]


@pytest.mark.parametrize("effort", [0, max(sccodec.EFFORTS) + 1, 1.5, True, "2"])
def test_an_unknown_effort_is_refused(effort) -> None:
    with pytest.raises(sccodec.errors.ParameterError, match="effort"):
        sccodec.encode(textured_image(32, 32), effort=effort)
