""".scv format 6: block classes (sccodec.block_classes) on format 5's integer frequencies.

What is checked: the class map and the class-changed tables round-trip for any tile shape; a
class file is validated and bound to its weights; headers of version 6 carry its hash and a
decoder refuses a file whose classes it does not have; a model without classes keeps writing
format 5; the classes' integer derivation uses no float arithmetic; fitting lowers the bits
of the symbols it was fitted on.
"""
from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from helpers import check_model_without, random_class_tables
from test_format5 import float_operations, nested_tables, sparse_symbols

import sccodec
from sccodec import bitstream, block_classes, entropy
from sccodec.api import parse_symbols
from sccodec.adaptation import NEUTRAL_TILT, Adaptation
from sccodec.block_classes import ClassTables, class_file_path, factored_rows, read_class_tables
from sccodec.context import scheme_contexts
from sccodec.errors import CorruptFileError, ModelMismatchError
from sccodec.frequencies import TOTAL, normalise, scale_odds_frequency
from sccodec.train.block_classes import class_tables, fit_level
from sccodec.weights import available_models, load_model_file


@pytest.mark.parametrize("shape,block,classes", [((8, 6, 5), 2, 3), ((8, 1, 1), 2, 2), ((8, 7, 9), 3, 4),
                                                 ((8, 4, 4), 1, 5), ((8, 5, 3), 8, 2)])
def test_random_symbols_round_trip(shape, block, classes) -> None:
    tables = nested_tables(3, k=8, r=6)
    level = random_class_tables(tables, classes, block, seed=4).level(1, tables.frequencies(1))
    symbols = sparse_symbols(*shape, 6, seed=5)
    symbols[0, 0, 0] = 300  # an escape
    words = entropy.encode(symbols, tables, 1, True, True, level)
    np.testing.assert_array_equal(entropy.decode(words, tables, 1, shape, True, True, level), symbols)


def test_all_zero_tile_and_every_class_round_trip() -> None:
    tables = nested_tables(4, k=8, r=6)
    level = random_class_tables(tables, 4, 2, seed=6).level(0, tables.frequencies(0))
    zeros = np.zeros((8, 6, 6), dtype=np.int32)
    words = entropy.encode(zeros, tables, 0, True, True, level)
    np.testing.assert_array_equal(entropy.decode(words, tables, 0, zeros.shape, True, True, level), zeros)
    # the encoder's choice is not part of the format: any class map must decode
    symbols = sparse_symbols(8, 6, 6, 6, seed=7)
    for forced in range(4):
        chosen = _Forced(**{f.name: getattr(level, f.name) for f in dataclasses.fields(level)})
        object.__setattr__(chosen, "forced", forced)
        words = entropy.encode(symbols, tables, 0, True, True, chosen)
        np.testing.assert_array_equal(entropy.decode(words, tables, 0, symbols.shape, True, True, level), symbols)


@dataclasses.dataclass(frozen=True)
class _Forced(block_classes.LevelClasses):
    """Classes whose encoder puts every block in one class."""

    def choose(self, bits: np.ndarray) -> np.ndarray:
        return np.full(bits.shape[:2], self.forced)


def test_a_tiles_magnitude_rows_are_each_computed_once_and_as_documented(monkeypatch) -> None:
    """The coder keeps a tile's class-scaled magnitude rows: each (class, atom, row) is scaled
    and normalised on first use only, and every lookup gives ``coder_rows`` of that row."""
    tables = nested_tables(5, k=8, r=6)
    level = random_class_tables(tables, 3, 2, seed=9).level(1, tables.frequencies(1))
    rows = entropy._MagnitudeRows(8, tables.frequencies(1).magnitudes)
    v = rows.magnitudes.shape[1]
    computed = []
    direct = block_classes.LevelClasses.magnitudes
    monkeypatch.setattr(block_classes.LevelClasses, "magnitudes",
                        lambda self, m, cls, row: computed.append(len(row)) or direct(self, m, cls, row))
    rng = np.random.default_rng(10)
    seen = set()
    for _ in range(6):  # lookups that repeat keys, within and across calls, past the table's growth
        atom, row = rng.integers(0, 3 * 8, 40), rng.integers(0, v, 40)
        got = rows(level, atom, row)
        want = entropy.coder_rows(direct(level, tables.frequencies(1).magnitudes[atom % 8, row], atom // 8, row))
        np.testing.assert_array_equal(got, want)
        seen |= set((atom * v + row).tolist())
    assert sum(computed) == len(seen), "a row was computed twice, or one was never computed"


def test_a_new_adaptation_replaces_the_kept_magnitude_rows() -> None:
    """The encoder adapts its walk after building it (format 7): rows kept under the first
    adaptation must not outlive it."""
    tables = nested_tables(5, k=8, r=6)
    level = random_class_tables(tables, 3, 2, seed=11).level(1, tables.frequencies(1))
    symbols = sparse_symbols(8, 4, 4, 6, seed=12)
    walk = entropy._ClassWalk(symbols, tables, 1, Adaptation.neutral(7 * tables.groups), level,
                              np.zeros((4, 4), dtype=np.int64))
    atom, ctx = np.arange(8) + 8, np.full(8, 4 * tables.scheme.sign_contexts)
    before = walk._rows(ctx, atom)[0]
    tilted = Adaptation(walk.adaptation.flags, tilt=NEUTRAL_TILT + 2)
    walk.adapt(tilted)
    rows = tilted.magnitude_frequencies(tables.frequencies(1).magnitudes)[atom % 8, 4]
    want = entropy.coder_rows(level.magnitudes(rows, atom // 8, np.full(8, 4)))
    np.testing.assert_array_equal(walk._rows(ctx, atom)[0], want)
    assert not np.array_equal(before, want), "the tilt changed nothing: the test shows nothing"


def test_the_class_changes_the_tables_as_documented() -> None:
    tables = nested_tables(5, k=8, r=6)
    base = tables.frequencies(0)
    ct = random_class_tables(tables, 2, 2, seed=8)
    level = ct.level(0, base)
    f1 = base.nonzero[3, 17]
    want = scale_odds_frequency(f1, ct.flag_scale[0, 1, 17], 8)
    assert level.nonzero(np.array([f1]), np.array([1]), np.array([17]))[0] == want
    k, d = 300, TOTAL - 1000  # by hand: floor((2·T·k·f1 + D) / (2·D)), D = k·f1 + 256·(T − f1)
    big_d = k * d + 256 * (TOTAL - d)
    assert scale_odds_frequency(d, k, 8) == (2 * TOTAL * k * d + big_d) // (2 * big_d)
    row = base.magnitudes[2, 5]
    factored = factored_rows(row, ct.magnitude_factor[0, 1, 5])
    assert factored.sum() == TOTAL and factored.min() >= 1
    np.testing.assert_array_equal(factored, normalise(((row - 1) * ct.magnitude_factor[0, 1, 5]) >> 1))
    # neutral factors leave a row as it is, up to the floor of the shares
    assert np.abs(factored_rows(row, np.full(row.shape, 2)) - row).max() <= row.size


def test_class_files_are_validated() -> None:
    tables = nested_tables(6, k=8, r=6)
    good = random_class_tables(tables, 3, 2, seed=9)
    with pytest.raises(ValueError, match="flag_scale entries"):
        dataclasses.replace(good, flag_scale=good.flag_scale * 0)
    with pytest.raises(ValueError, match="magnitude_factor entries"):
        dataclasses.replace(good, magnitude_factor=good.magnitude_factor + (1 << 16))
    bad = good.class_frequencies.copy()
    bad[0, 0, 0] += 1
    with pytest.raises(ValueError, match="sum to 2"):
        dataclasses.replace(good, class_frequencies=bad)
    with pytest.raises(ValueError, match="class_frequencies has shape"):
        dataclasses.replace(good, class_frequencies=good.class_frequencies[:, :-1])
    assert good.fits(tables.p_nonzero.shape, (2, 8, 13, 6), tables.signs.shape) is None
    assert "classes for" in good.fits(tables.p_nonzero.shape, (2, 8, 13, 7), tables.signs.shape)


def test_class_file_round_trips_and_hashes_its_bytes(tmp_path) -> None:
    tables = nested_tables(7, k=8, r=6)
    ct = random_class_tables(tables, 3, 2, seed=10, model_digest=bytes(range(8)))
    path = tmp_path / "m.classes.safetensors"
    path.write_bytes(ct.to_bytes())
    back = read_class_tables(path)
    for name in ("flag_scale", "sign_scale", "magnitude_factor", "class_frequencies"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ct, name))
    assert (back.block, back.model_digest) == (2, bytes(range(8)))
    import hashlib
    assert back.digest == hashlib.sha256(path.read_bytes()).digest()[:8]
    (tmp_path / "other.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(Exception):
        read_class_tables(tmp_path / "other.safetensors")


def test_version6_headers_carry_the_class_hash() -> None:
    h = bitstream.Header("m", b"\1" * 8, 3, 10, 20, version=6, classes_hash=b"\2" * 8)
    back, end = bitstream.parse_header(h.pack())
    assert back == h and end == len(h.pack())
    five = bitstream.Header("m", b"\1" * 8, 3, 10, 20, version=5)
    assert len(h.pack()) == len(five.pack()) + 8
    with pytest.raises(ValueError, match="needs"):
        bitstream.Header("m", b"\1" * 8, 3, 10, 20, version=6)
    with pytest.raises(ValueError, match="has no"):
        bitstream.Header("m", b"\1" * 8, 3, 10, 20, version=5, classes_hash=b"\2" * 8)
    with pytest.raises(CorruptFileError):
        bitstream.parse_header(h.pack()[:-3])


# ---------------------------------------------------------------- the shipped model


@pytest.fixture(scope="module")
def shipped():
    model_file = load_model_file()
    if model_file.classes is None:
        pytest.skip("the installed default model has no class file")
    return model_file


def test_the_default_model_writes_its_class_file_hash_and_reads_it(shipped) -> None:
    """Format 6, or 7 with a pair file beside the classes (tests/test_format7.py)."""
    pixels = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    data = sccodec.encode(pixels, quality=3)
    header, _ = bitstream.parse_header(data)
    assert header.version == (6 if shipped.pairs is None else 7) and header.classes_hash == shipped.classes.digest
    assert header.classes_hash == read_class_tables(class_file_path(shipped.path)).digest
    assert np.asarray(sccodec.decode(data)).shape == pixels.shape
    assert "scvae-gdn.classes" not in available_models()


def test_a_file_names_exactly_its_class_file(shipped) -> None:
    data = sccodec.encode(np.zeros((32, 32, 3), np.uint8), quality=2)
    container = bitstream.parse(data)
    wrong = dataclasses.replace(container.header, classes_hash=b"\xff" * 8)
    with pytest.raises(ModelMismatchError, match="block classes with hash ffffffffffffffff"):
        parse_symbols(bitstream.Container(wrong, container.tiles, container.ancillary), shipped)


def test_weights_without_classes_write_format_5_and_still_read_6(shipped, tmp_path) -> None:
    """(Without classes a pair file is not used either.) A class file fitted for other weights is not used."""
    stale = dataclasses.replace(shipped.classes, model_digest=b"\0" * 8).to_bytes()
    check_model_without(shipped, tmp_path, ".classes.safetensors", 5, stale)


# ---------------------------------------------------------------- integer derivation, fitting


@pytest.mark.parametrize("function", [block_classes.factored_rows, block_classes.LevelClasses.nonzero,
                                      block_classes.LevelClasses.positive, block_classes.LevelClasses.magnitudes,
                                      block_classes.LevelClasses.positive_table.func, entropy._Walk.store,
                                      block_classes.LevelClasses.position_classes, block_classes.LevelClasses.grid,
                                      block_classes.LevelClasses.map_rows, entropy._decode_class_map,
                                      *(f for f in vars(entropy._ClassWalk).values() if inspect.isfunction(f)),
                                      *(f for f in vars(entropy._MagnitudeRows).values() if inspect.isfunction(f))],
                         ids=lambda f: f.__qualname__)
def test_format6_decoding_uses_no_float_arithmetic(function) -> None:
    assert float_operations(function) == []


def test_fitting_lowers_the_bits_of_its_training_symbols() -> None:
    tables = nested_tables(8, k=8, r=6, qualities=1)
    rng = np.random.default_rng(2)
    tiles = []
    for i in range(6):  # half the blocks busy, half nearly empty: what classes are for
        busy = sparse_symbols(8, 8, 8, 6, seed=20 + i)
        quiet = np.where(rng.random((8, 8, 8)) < 0.03, 1, 0).astype(np.int32)
        tiles.append(np.concatenate([busy, quiet], axis=2))
    level = fit_level(tables, 0, tiles, classes=3, block=2, iterations=3)
    ct = class_tables([level], b"\0" * 8)
    assert isinstance(ct, ClassTables) and ct.flag_scale.shape == (1, 3, tables.p_nonzero.shape[-1])
    fitted = ct.level(0, tables.frequencies(0))
    with_classes = without = 0
    for s in tiles:
        with_classes += 4 * len(entropy.encode(s, tables, 0, True, True, fitted))
        without += 4 * len(entropy.encode(s, tables, 0, True, True))
        bits = fitted.block_bits(s, *scheme_contexts(tables.scheme, s, tables.groups), tables.scheme.sign_contexts)
        assert bits.shape == (4, 8, 3)
    assert with_classes < 0.97 * without
