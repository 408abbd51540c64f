"""The ANS coder (sccodec.entropy): lossless on any symbols and tables, efficient, robust to garbage."""
from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest

from helpers import make_tables, random_class_tables, random_pair_tables
from sccodec import entropy
from sccodec.adaptation import FLAG_SCALES, NEUTRAL_FLAG, NEUTRAL_TILT, VALUE_TILTS, choose, scale_odds, tilt_weights
from sccodec.context import SCHEMES, scheme_contexts, steps
from sccodec.entropy import SymbolTables

# (atoms K, groups G, h, w)
SHAPES = [(8, 4, 4, 5), (8, 2, 1, 7), (4, 4, 6, 1), (4, 2, 1, 1), (16, 4, 3, 3)]


def random_tables(k: int, groups: int, r: int, seed: int, qualities: int = 2,
                  context: str = "checkerboard") -> SymbolTables:
    rng = np.random.default_rng(seed)
    scheme = SCHEMES[context]
    p_nonzero = rng.uniform(0.0, 1.0, size=(qualities, k, scheme.flag_contexts))
    values = rng.dirichlet(np.full(2 * r, 0.5), size=(qualities, k, scheme.value_contexts))
    return make_tables(p_nonzero, values, groups, context, seed)


def random_symbols(k: int, h: int, w: int, r: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.integers(-r, r + 1, size=(k, h, w))
    values[0, 0, 0] = -r  # the extremes of the coded range must survive too
    values[-1, -1, -1] = r
    return np.where(rng.random((k, h, w)) < 0.4, 0, values).astype(np.int32)


def roundtrip(symbols: np.ndarray, tables: SymbolTables, q: int, adaptive: bool = False,
              integer: bool = False) -> np.ndarray:
    words = entropy.encode(symbols, tables, q, adaptive, integer)
    assert words.dtype == np.uint32
    return entropy.decode(words, tables, q, symbols.shape, adaptive, integer)


#: (context scheme, per-tile adaptation, integer frequencies) of every .scv format version
CODINGS = [(c.context, c.adaptive, c.integer) for c in entropy.FORMATS.values()]


@pytest.mark.parametrize(("k", "groups", "h", "w"), SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("context", "adaptive", "integer"), CODINGS)
def test_encode_decode_is_lossless(k, groups, h, w, seed, context, adaptive, integer) -> None:
    r = 7
    tables = random_tables(k, groups, r, seed, context=context)
    symbols = random_symbols(k, h, w, r, seed)
    for q in range(tables.qualities):
        np.testing.assert_array_equal(roundtrip(symbols, tables, q, adaptive, integer), symbols)


@pytest.mark.parametrize(("context", "adaptive", "integer"), CODINGS)
def test_lossless_with_degenerate_tables(context, adaptive, integer) -> None:
    """Probabilities of exactly 0 and 1 (e.g. float16 underflow in exported tables) must still
    code every symbol of the range: the coder has to be leaky, not fail."""
    k, groups, r = 8, 4, 3
    scheme = SCHEMES[context]
    p_nonzero = np.zeros((2, k, scheme.flag_contexts))
    p_nonzero[1] = 1.0
    values = np.zeros((2, k, scheme.value_contexts, 2 * r))
    values[..., 0] = 1.0  # all mass on -r (on +-r where the sign has its own table, and that is 0 or 1)
    signs = np.stack([np.zeros((k, scheme.sign_contexts)), np.ones((k, scheme.sign_contexts))])
    tables = make_tables(p_nonzero, values, groups, context, signs=signs)
    symbols = random_symbols(k, 3, 4, r, seed=5)
    for q in (0, 1):
        np.testing.assert_array_equal(roundtrip(symbols, tables, q, adaptive, integer), symbols)


@pytest.mark.parametrize(("adaptive", "integer"), [(False, False), (True, False), (True, True)])
def test_lossless_with_the_shipped_tables(model_file, adaptive, integer) -> None:
    tables = model_file.tables
    r = tables.value_range
    symbols = random_symbols(tables.atoms, 2, 3, r, seed=7)
    for q in (0, tables.qualities - 1):
        np.testing.assert_array_equal(roundtrip(symbols, tables, q, adaptive, integer), symbols)


def test_tables_must_fit_their_context_scheme() -> None:
    """A weights file whose tables do not match the scheme it names is refused up front,
    not mis-indexed (or out of bounds) in the middle of a decode."""
    good = random_tables(4, 2, 3, seed=0, context="quad")
    with pytest.raises(ValueError, match="contexts"):
        SymbolTables(good.p_nonzero, good.values, 2, "checkerboard")
    with pytest.raises(ValueError, match="unknown context scheme"):
        SymbolTables(good.p_nonzero, good.values, 2, "hexagonal")


# sha256 of the words for fixed tables and symbols, per .scv format version. The checkerboard
# value was also produced by sccodec 0.3's coder: files of every format version must stay
# readable by every later version.
GOLDEN = {1: "d452836db7ff18c2442a06a819169c3db98517616409852ff723c2d8ae0ff529",
          2: "faaf1e58d16aaf2e9da623c7d1b3f208eaae0f1c43c1f7141fd9417eabd4762a",
          3: "19bd80f83a372d056cb0b6abdb9c1c11d54efd7019124e72e81f986900000025",
          4: "f3aceda7594c05f99ba549ca1d54e4d4528eb8932ff900533a7bb4bffbfd4e77",
          5: "7f0845f24b97898ea48ad59ed17a5b0b66e7ef8d3ff2f7cf0b7dc0b5ec796a9b",
          6: "6ee8712926aac97b56792dc60e0e9417bdab75d527fc0b95d2cd6a1bfbaca9c6",
          7: "f6b5502dfaeeb576d9dbfe41adc7c4bcb54849c35599e765abdff9b97862557b"}


@pytest.mark.parametrize("version", list(entropy.FORMATS))
def test_bitstream_of_each_format_is_frozen(version) -> None:
    """A change of contexts, coding order, escape coding or adaptation that still round-trips
    would silently make existing files undecodable: pin the exact words."""
    coding = entropy.FORMATS[version]
    rng = np.random.default_rng(11)
    scheme = SCHEMES[coding.context]
    p_nonzero = rng.uniform(0.0, 1.0, size=(2, 16, scheme.flag_contexts))
    values = rng.dirichlet(np.full(12, 0.5), size=(2, 16, scheme.value_contexts))
    tables = make_tables(p_nonzero, values, 4, coding.context, seed=12)
    rng = np.random.default_rng(5)
    symbols = np.where(rng.random((16, 7, 9)) < 0.3, rng.integers(-9, 10, (16, 7, 9)), 0).astype(np.int32)
    symbols[2, 3, 4] = 1000  # an escape
    classes = random_class_tables(tables, seed=13).level(1, tables.frequencies(1)) if coding.classes else None
    pairs = random_pair_tables(2, 16, 2, seed=14).level(1) if coding.pairs else None
    words = entropy.encode(symbols, tables, 1, coding.adaptive, coding.integer, classes, pairs)
    assert hashlib.sha256(words.tobytes()).hexdigest() == GOLDEN[version]
    np.testing.assert_array_equal(entropy.decode(words, tables, 1, symbols.shape, coding.adaptive, coding.integer,
                                                 classes, pairs), symbols)


def test_adaptation_follows_the_tile() -> None:
    """Symbols sparser and smaller than the tables expect: the encoder lowers every step's
    P(non-zero) and tilts the values to small magnitudes, and the file gets smaller; symbols
    drawn from the tables themselves keep (nearly) the neutral choice."""
    k, groups, r = 16, 4, 6
    rng = np.random.default_rng(3)
    scheme = SCHEMES["quad"]
    p_nonzero = rng.uniform(0.2, 0.6, size=(1, k, scheme.flag_contexts))
    values = rng.dirichlet(np.full(2 * r, 2.0), size=(1, k, scheme.value_contexts))
    tables = SymbolTables(p_nonzero, values, groups, "quad")
    typical = sample_from_tables(tables, 0, (k, 16, 16), seed=1)
    neutral = choose(typical, tables, 0)
    assert sum(f != NEUTRAL_FLAG for f in neutral.flags) <= 2 and neutral.tilt == NEUTRAL_TILT
    sparse = np.where(rng.random(typical.shape) < 0.3, np.sign(typical), 0).astype(np.int32)
    adapted = choose(sparse, tables, 0)
    assert all(FLAG_SCALES[f] < 1 for f in adapted.flags) and VALUE_TILTS[adapted.tilt] < 1
    assert len(entropy.encode(sparse, tables, 0, adaptive=True)) < 0.9 * len(entropy.encode(sparse, tables, 0))


@pytest.mark.parametrize(("k", "groups", "h", "w"), SHAPES + [(16, 4, 9, 7)])
@pytest.mark.parametrize("context", list(SCHEMES))
def test_adaptation_minimises_each_steps_code_length(k, groups, h, w, context) -> None:
    """Each step's flag index is a minimiser of that step's ideal flag code length plus its side
    information, recomputed here symbol by symbol (choose works on counts of all steps at once);
    a step without positions stays neutral."""
    tables = random_tables(k, groups, 4, seed=k + h, context=context)
    symbols = random_symbols(k, h, w, 4, seed=w)
    flag_ctx, _ = scheme_contexts(tables.scheme, symbols, groups)
    chosen = choose(symbols, tables, 1)
    phase = tables.scheme.phase(h, w)
    per = k // groups
    side = -np.log2(entropy.FLAG_INDEX_PROBS)
    for i, (p, g) in enumerate(steps(tables.scheme, groups)):
        atoms = np.arange(g * per, (g + 1) * per)[:, None]
        here = phase == p
        if not here.any():
            assert chosen.flags[i] == NEUTRAL_FLAG
            continue
        prob = np.clip(tables.p_nonzero[1, atoms, flag_ctx[g * per : (g + 1) * per][:, here]], 2.0**-24, 1 - 2.0**-24)
        fired = symbols[g * per : (g + 1) * per][:, here] != 0
        bits = np.array([-np.where(fired, np.log2(scale_odds(prob, f)), np.log2(1 - scale_odds(prob, f))).sum()
                         for f in FLAG_SCALES]) + side
        assert bits[chosen.flags[i]] <= bits.min() + 1e-9 * abs(bits.min())


def test_odds_scaling_and_tilts_are_exact() -> None:
    """The decoder must rebuild the encoder's probabilities bit for bit: the factors are exact
    binary fractions and the tilt powers come from plain multiplication."""
    assert all((s * 16).is_integer() for s in FLAG_SCALES + VALUE_TILTS)
    np.testing.assert_array_equal(tilt_weights(0.75, 3), [0.421875, 0.5625, 0.75, 0.75, 0.5625, 0.421875])
    p = np.array([0.0, 0.2, 0.5, 1.0])
    np.testing.assert_array_equal(scale_odds(p, 1.0), p)
    assert scale_odds(p, 2.0)[2] == 2 / 3 and scale_odds(p, 0.5)[1] == 0.1 / 0.9


def test_tables_of_the_wrong_shape_are_refused() -> None:
    good = random_tables(8, 4, 3, seed=0)
    for p, v, groups in ((good.p_nonzero[0, 0], good.values[0, 0], 4),  # not (Q, K, C) / (Q, K, V, 2R)
                         (good.p_nonzero, good.values[:, :7], 4),  # K differs
                         (good.p_nonzero, good.values[..., :0], 4),  # no values
                         (good.p_nonzero[:, :6], good.values[:, :6], 4)):  # K not a multiple of G
        with pytest.raises(ValueError, match="not"):
            SymbolTables(p, v, groups)


def test_sign_tables_only_where_the_scheme_has_them() -> None:
    """nested needs a sign table of shape (Q, K, S) and sign-symmetric value rows; the older
    schemes carry the sign in their rows and refuse a sign table."""
    good = random_tables(8, 4, 3, seed=0, context="nested")
    with pytest.raises(ValueError, match="needs a sign table"):
        SymbolTables(good.p_nonzero, good.values, 4, "nested")
    with pytest.raises(ValueError, match="needs a sign table"):
        SymbolTables(good.p_nonzero, good.values, 4, "nested", good.signs[..., :2])
    lopsided = good.values.copy()
    lopsided[..., 0] += 0.5
    with pytest.raises(ValueError, match="symmetric"):
        SymbolTables(good.p_nonzero, lopsided, 4, "nested", good.signs)
    quad = random_tables(8, 4, 3, seed=0, context="quad")
    with pytest.raises(ValueError, match="no sign table"):
        SymbolTables(quad.p_nonzero, quad.values, 4, "quad", good.signs)


@pytest.mark.parametrize("context", list(SCHEMES))
def test_stored_tables_read_back_exactly(context) -> None:
    """A weights file keeps half of a symmetric row: reading it back must give the same rows."""
    tables = random_tables(8, 4, 3, seed=1, context=context)
    back = SymbolTables.from_stored(tables.stored(), 4, context)
    for q in range(tables.qualities):
        np.testing.assert_array_equal(back.value_table(q), tables.value_table(q))
    np.testing.assert_array_equal(back.p_nonzero, tables.p_nonzero)


def test_sign_table_weights_the_row_halves() -> None:
    """A value's probability is P(|v| | row) x P(sign | sign context)."""
    tables = random_tables(4, 2, 3, seed=2, context="nested")
    s, r = tables.scheme.sign_contexts, tables.value_range
    table = tables.value_table(1)
    for atom, ctx in ((0, 0), (3, 4 * s + 3), (2, 5 * s + 1)):
        row = tables.values[1, atom, ctx // s]
        p = tables.signs[1, atom, ctx % s]
        np.testing.assert_array_equal(table[atom, ctx], np.concatenate([row[:r] * (1 - p), row[r:] * p]))


def test_all_zero_symbols() -> None:
    tables = random_tables(8, 4, 3, seed=4)
    symbols = np.zeros((8, 2, 3), dtype=np.int32)
    np.testing.assert_array_equal(roundtrip(symbols, tables, 0), symbols)


def test_symbols_outside_the_range_are_refused() -> None:
    tables = random_tables(4, 2, 3, seed=0)
    symbols = np.zeros((4, 2, 2), dtype=np.int32)
    symbols[1, 1, 0] = -(tables.value_range + entropy.MAX_MAGNITUDE_OVER_RANGE + 1)
    with pytest.raises(ValueError, match="range"):
        entropy.encode(symbols, tables, 0)


def test_magnitudes_beyond_the_tables_use_escape_codes() -> None:
    tables = random_tables(4, 2, 3, seed=0)
    r = tables.value_range
    symbols = np.zeros((4, 3, 5), dtype=np.int32)
    symbols[0, 0, :5] = [r, -r, r + 1, -(r + 1000), r + entropy.MAX_MAGNITUDE_OVER_RANGE]
    symbols[3, 2, 4] = -(r + entropy.MAX_MAGNITUDE_OVER_RANGE)
    words = entropy.encode(symbols, tables, 0)
    np.testing.assert_array_equal(entropy.decode(words, tables, 0, symbols.shape), symbols)


def test_trailing_words_are_detected() -> None:
    tables = random_tables(4, 2, 3, seed=0)
    symbols = np.zeros((4, 3, 5), dtype=np.int32)
    symbols[1, 1, 1] = 2
    words = entropy.encode(symbols, tables, 0)
    with pytest.raises(ValueError, match="left over"):
        entropy.decode(words, tables, 0, (4, 2, 5))  # a header claiming a smaller image


def sample_from_tables(tables: SymbolTables, q: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Draw symbols from the model itself, step by step in coding order."""
    rng = np.random.default_rng(seed)
    k, h, w = shape
    r, per = tables.value_range, k // tables.groups
    symbols = np.zeros(shape, dtype=np.int32)
    for p, g in steps(tables.scheme, tables.groups):
        flag, value = scheme_contexts(tables.scheme, symbols, tables.groups)
        atoms = np.arange(g * per, (g + 1) * per)[:, None, None]
        here = np.broadcast_to(tables.scheme.phase(h, w) == p, (per, h, w))
        mine = slice(g * per, (g + 1) * per)
        nonzero = rng.random((per, h, w)) < tables.p_nonzero[q, atoms, flag[mine]]
        rows = tables.value_table(q)[atoms, value[mine]]  # (per, h, w, 2r)
        rows = rows / rows.sum(-1, keepdims=True)
        index = (rows.cumsum(-1) < rng.random((per, h, w, 1))).sum(-1).clip(0, 2 * r - 1)
        value = np.where(index < r, index - r, index - r + 1)
        symbols[g * per : (g + 1) * per][here] = np.where(nonzero, value, 0)[here]
    return symbols


def information_bits(symbols: np.ndarray, tables: SymbolTables, q: int) -> float:
    """-log2 P(symbols) under the tables, with the contexts of sccodec.context.scheme_contexts."""
    k = symbols.shape[0]
    r = tables.value_range
    ctx, vctx = scheme_contexts(tables.scheme, symbols, tables.groups)
    atom = np.broadcast_to(np.arange(k)[:, None, None], symbols.shape)
    nz = symbols != 0
    p_flag = tables.p_nonzero[q, atom, ctx]
    bits = -np.log2(np.where(nz, p_flag, 1 - p_flag)).sum()
    index = np.where(symbols < 0, symbols + r, symbols + r - 1)
    escapes = int((np.abs(symbols) == r).sum())  # |v| = R: escape class 0 follows, 1 bit each
    rows = tables.value_table(q)[atom[nz], vctx[nz]]
    rows = rows / rows.sum(-1, keepdims=True)
    return float(bits + escapes - np.log2(rows[np.arange(len(rows)), index[nz]]).sum())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("context", list(SCHEMES))
def test_code_length_matches_the_model(seed, context) -> None:
    """The coder spends about -log2 P(symbols) bits with the contexts the tables were fitted
    with: catches a coder whose contexts (or coding order) drift from sccodec.context (files
    would still round trip, but be far larger than the tables promise)."""
    k, groups, r = 16, 4, 4
    rng = np.random.default_rng(seed)
    scheme = SCHEMES[context]
    # sharply context-dependent tables: the right context is worth a lot of bits
    p_nonzero = np.where(rng.random((1, k, scheme.flag_contexts)) < 0.5, 0.03, 0.97)
    values = rng.dirichlet(np.full(2 * r, 0.3), size=(1, k, scheme.value_contexts))
    signs = np.where(rng.random((1, k, scheme.sign_contexts)) < 0.5, 0.1, 0.9)
    tables = make_tables(p_nonzero, values, groups, context, signs=signs)
    symbols = sample_from_tables(tables, 0, (k, 8, 8), seed)
    ideal = information_bits(symbols, tables, 0)
    actual = 32 * len(entropy.encode(symbols, tables, 0))
    assert ideal - 64 <= actual <= 1.02 * ideal + 96, (actual, ideal)


def _decode_with_timeout(words: np.ndarray, tables: SymbolTables, shape, adaptive: bool, integer: bool,
                         seconds: float = 20.0):
    box: dict = {}

    def work() -> None:
        try:
            box["result"] = entropy.decode(words, tables, 0, shape, adaptive, integer)
        except ValueError as e:  # constriction: e.g. "never ends in a zero word"
            box["error"] = e
        except BaseException as e:  # noqa: BLE001 - reported below
            box["unexpected"] = e

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"decoding {len(words)} garbage words did not finish in {seconds} s"
    assert "unexpected" not in box, f"garbage raised {box.get('unexpected')!r}, not ValueError"
    return box.get("result")


@pytest.mark.parametrize("n_words", [0, 1, 2, 5, 64])
@pytest.mark.parametrize(("context", "adaptive", "integer"), CODINGS)
def test_garbage_words_decode_to_something_or_valueerror_quickly(n_words, context, adaptive, integer) -> None:
    k, groups, r = 8, 4, 5
    tables = random_tables(k, groups, r, seed=n_words, context=context)
    rng = np.random.default_rng(n_words)
    for trial in range(5):
        words = rng.integers(0, 2**32, size=n_words, dtype=np.uint64).astype(np.uint32)
        if trial == 0 and n_words:
            words[-1] = 0  # a zero last word is invalid ANS data
        shape = (k, 1 + trial, 3)
        result = _decode_with_timeout(words, tables, shape, adaptive, integer)
        if result is not None:
            assert result.shape == shape
            assert np.abs(result).max(initial=0) <= r + entropy.MAX_MAGNITUDE_OVER_RANGE  # escapes
