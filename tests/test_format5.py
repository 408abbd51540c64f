""".scv format 5: integer frequencies from the stored tables, integer adaptation, and
constriction driven so that it codes with exactly those frequencies (docs/format.md, "Format 5")."""
from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

import constriction
import numpy as np
import pytest

from helpers import make_tables
from sccodec import adaptation, entropy, frequencies
from sccodec.adaptation import (FLAG_INDEX_FREQUENCIES, FLAG_SIXTEENTHS, NEUTRAL_FLAG, NEUTRAL_TILT,
                                TILT_INDEX_FREQUENCIES, TILT_SIXTEENTHS, Adaptation, scale_odds_frequency,
                                tilt_factors, tilt_frequencies)
from sccodec.api import parse_symbols
from sccodec.coder import ContextCoder
from sccodec.context import SCHEMES
from sccodec.entropy import (ESCAPE_BIT_FREQUENCIES, ESCAPE_CLASS_FREQUENCIES, FORMATS, binary_rows, coder_rows,
                             newest_format)
from sccodec.frequencies import TOTAL, binary_frequencies, exact_values, normalise, row_weights

T = TOTAL
CONFORMANCE = Path(__file__).resolve().parent / "data" / "conformance"


def nested_tables(seed: int, k: int = 8, r: int = 6, qualities: int = 2, groups: int = 4):
    rng = np.random.default_rng(seed)
    scheme = SCHEMES["nested"]
    p_nonzero = rng.uniform(0.0, 1.0, size=(qualities, k, scheme.flag_contexts))
    values = rng.dirichlet(np.full(2 * r, 0.5), size=(qualities, k, scheme.value_contexts))
    return make_tables(p_nonzero, values, groups, "nested", seed)


def sparse_symbols(k: int, h: int, w: int, r: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.integers(-r, r + 1, size=(k, h, w))
    return np.where(rng.random((k, h, w)) < 0.5, 0, values).astype(np.int32)


# ---------------------------------------------------------------- (a) the integer derivation


def test_stored_floats_decode_to_their_exact_values() -> None:
    v = exact_values(np.array([1.0, 2.0 ** -24, 65504.0, 0.0, -0.0, 0.099975586], np.float16))
    np.testing.assert_array_equal(v.mantissa, [1024, 1, 2047, 0, 0, 1638])
    np.testing.assert_array_equal(v.exponent, [-10, -24, 5, -24, -24, -14])
    np.testing.assert_array_equal(v.log2_floor[:3], [0, -24, 15])
    v = exact_values(np.array([1.0, 5e-324, 0.1], np.float64))  # normal, smallest subnormal
    np.testing.assert_array_equal(v.mantissa, [1 << 52, 1, 7205759403792794])
    np.testing.assert_array_equal(v.exponent, [-52, -1074, -56])
    v = exact_values(np.array([0.1], np.float32))
    assert (int(v.mantissa[0]), int(v.exponent[0])) == (13421773, -27)


@pytest.mark.parametrize("bad", [np.array([-1.0]), np.array([np.nan]), np.array([np.inf], np.float16),
                                 np.array([1], np.int64)])
def test_only_finite_non_negative_floats_make_tables(bad) -> None:
    with pytest.raises(ValueError):
        binary_frequencies(bad)


def test_binary_frequencies_round_half_up_and_clamp() -> None:
    p = np.array([0.0, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 6 * 2.0 ** -26, 0.5, 1.0, 7.0], np.float64)
    np.testing.assert_array_equal(binary_frequencies(p), [1, 1, 1, 1, 2, 1 << 23, T - 1, T - 1])
    # 0.1 in float32 is 13421773·2^-27: times 2^24 = 1677721.625
    np.testing.assert_array_equal(binary_frequencies(np.array([0.1], np.float32)), [1677722])
    # float16 entries are multiples of 2^-24 below 1: their frequency is exact
    np.testing.assert_array_equal(binary_frequencies(np.array([0.1, 6e-8, 1 - 2 ** -11], np.float16)),
                                  [1677312, 1, T - (1 << 13)])


def test_magnitude_rows_scale_to_31_bits_and_normalise_exactly() -> None:
    np.testing.assert_array_equal(row_weights(np.array([1.0, 0.5, 0.0], np.float16)), [1 << 30, 1 << 29, 0])
    np.testing.assert_array_equal(row_weights(np.array([3e-6, 2.0 ** -24, 0.0], np.float16)), [1677721600, 33554432, 0])
    # floor shares of 2^24 − n, +1 each, the remainder to the first largest
    np.testing.assert_array_equal(normalise(np.array([[1, 1], [3, 1], [0, 0]])),
                                  [[1 << 23, 1 << 23], [12582912, 4194304], [1 << 23, 1 << 23]])
    np.testing.assert_array_equal(normalise(np.array([3, 1, 0])), [12582911, 4194304, 1])
    np.testing.assert_array_equal(normalise(row_weights(np.array([0.5, 0.25, 0.125, 0.125]))),
                                  [1 << 23, 1 << 22, 1 << 21, 1 << 21])
    with pytest.raises(ValueError):
        normalise(np.array([1 << 39, 1]))


def test_the_shipped_tables_give_valid_integer_tables(model_file) -> None:
    tables = model_file.tables
    for q in (0, tables.qualities - 1):
        f = tables.frequencies(q)
        assert f.nonzero.dtype == f.magnitudes.dtype == f.positive.dtype == np.int64
        assert f.nonzero.min() >= 1 and f.nonzero.max() <= T - 1 and f.positive.min() >= 1 and f.positive.max() <= T - 1
        assert f.magnitudes.min() >= 1 and np.all(f.magnitudes.sum(-1) == T)
        assert tables.frequencies(q) is f  # derived once
        # the stored tables are float16: P(x != 0) below 1 is an exact multiple of 2^-24
        stored = model_file.tensors["tables.p_nonzero"][q].astype(np.float64)
        np.testing.assert_array_equal(f.nonzero, np.clip(stored * T, 1, T - 1).astype(np.int64))


# ---------------------------------------------------------------- integer adaptation


def test_odds_scaling_is_exact_rounded_and_neutral_at_16() -> None:
    f1 = np.array([1 << 23, 1, T - 1, 1000])
    np.testing.assert_array_equal(scale_odds_frequency(f1, 32), [11184811, 2, T - 1, 2000])
    np.testing.assert_array_equal(scale_odds_frequency(f1, 3), [2649034, 1, T - 5, 188])
    for k in FLAG_SIXTEENTHS:
        out = scale_odds_frequency(np.arange(1, T, 4099), k)
        assert out.dtype == np.int64 and out.min() >= 1 and out.max() <= T - 1
    np.testing.assert_array_equal(scale_odds_frequency(np.arange(1, T, 4099), 16), np.arange(1, T, 4099))
    # broadcast factors (a table's classes against its atoms), inputs left as they were
    f1, k = np.arange(1, T, 1 << 20)[None, :], np.array([[1], [7], [4095]])
    kept = f1.copy(), k.copy()
    d = k * f1 + 256 * (T - f1)
    want = np.clip((2 * T * k * f1 + d) // (2 * d), 1, T - 1)
    np.testing.assert_array_equal(scale_odds_frequency(f1, k, 8), want)
    np.testing.assert_array_equal(f1, kept[0])
    np.testing.assert_array_equal(k, kept[1])


def test_tilt_is_fixed_point_rounded_per_step_and_renormalised() -> None:
    np.testing.assert_array_equal(tilt_factors(8, 3), [1 << 23, 1 << 22, 1 << 21])
    np.testing.assert_array_equal(tilt_factors(11, 6), [11534336, 7929856, 5451776, 3748096, 2576816, 1771561])
    np.testing.assert_array_equal(tilt_factors(19, 4), [19922944, 23658496, 28094464, 33362176])
    f = np.array([1 << 23, 1 << 22, 1 << 21, 1 << 21])
    np.testing.assert_array_equal(tilt_frequencies(f, 8), [12485370, 3121342, 780336, 390168])
    np.testing.assert_array_equal(tilt_frequencies(f, 19), [7094174, 4212165, 2500972, 2969905])
    np.testing.assert_array_equal(tilt_frequencies(f, 16), f)
    rows = nested_tables(3, r=31).frequencies(0).magnitudes
    for k in TILT_SIXTEENTHS:
        out = tilt_frequencies(rows, k)
        assert out.min() >= 1 and np.all(out.sum(-1) == T)
    extreme = np.full((2, 31), 1)  # all mass on |v| = 1, or on |v| = R: the bounds of the products
    extreme[0, 0] = extreme[1, -1] = T - 30
    for k in (11, 19):
        assert np.all(tilt_frequencies(extreme, k).sum(-1) == T)


def test_side_and_escape_tables_are_the_documented_integers() -> None:
    assert FLAG_INDEX_FREQUENCIES.sum() == TILT_INDEX_FREQUENCIES.sum() == ESCAPE_CLASS_FREQUENCIES.sum() == T
    assert FLAG_INDEX_FREQUENCIES[NEUTRAL_FLAG] == 8388621
    assert set(np.delete(FLAG_INDEX_FREQUENCIES, NEUTRAL_FLAG)) == {441505}
    assert TILT_INDEX_FREQUENCIES[NEUTRAL_TILT] == 1 << 23
    assert set(np.delete(TILT_INDEX_FREQUENCIES, NEUTRAL_TILT)) == {1 << 20}
    np.testing.assert_array_equal(ESCAPE_CLASS_FREQUENCIES, [(1 << 23) + 8] + [1 << (23 - n) for n in range(1, 21)])
    np.testing.assert_array_equal(ESCAPE_BIT_FREQUENCIES, [1 << 23, 1 << 23])


# ---------------------------------------------------------------- (b) constriction uses exactly our frequencies


def read_back(model, n: int, params: np.ndarray | None = None) -> np.ndarray:
    """The frequencies constriction's decoder uses for one distribution: decode from a crafted
    state (2^39 << 24) | q; afterwards the state is 2^39·f(s) + (q − cdf[s]), so walking q over
    the cdf reads every frequency (no word is read: the coder holds none)."""
    big = 1 << 39
    q, out = 0, []
    for i in range(n):
        coder = constriction.stream.stack.AnsCoder()
        coder.seek(0, (big << 24) | q)
        s = coder.decode(model) if params is None else coder.decode(model, params[None])
        state = coder.pos()[1]
        assert int(np.ravel(s)[0]) == i and q - (state & (big - 1)) == q
        out.append(state >> 39)
        q += out[-1]
    assert q == T
    return np.array(out, dtype=np.int64)


def test_constriction_codes_with_exactly_the_frequencies_passed(model_file) -> None:
    rows = constriction.stream.model.Categorical(perfect=False)
    tables = model_file.tables.frequencies(3)
    rng = np.random.default_rng(0)
    flags = np.concatenate([[1, 2, T - 2, T - 1], tables.nonzero.ravel()[rng.integers(0, tables.nonzero.size, 8)]])
    for f1 in [*flags, *scale_odds_frequency(flags, 3), *tables.positive.ravel()[:4]]:  # flags, adapted, signs
        np.testing.assert_array_equal(read_back(rows, 2, binary_rows(np.array(f1))), [T - f1, f1])
    magnitudes = tables.magnitudes.reshape(-1, tables.magnitudes.shape[-1])
    for f in [*magnitudes[rng.integers(0, len(magnitudes), 4)], tilt_frequencies(magnitudes[7], 19),
              tilt_frequencies(magnitudes[8], 11)]:
        np.testing.assert_array_equal(read_back(rows, len(f), coder_rows(f)), f)
    for fixed in (ESCAPE_CLASS_FREQUENCIES, ESCAPE_BIT_FREQUENCIES, FLAG_INDEX_FREQUENCIES, TILT_INDEX_FREQUENCIES):
        model = constriction.stream.model.Categorical(coder_rows(fixed), perfect=False)
        np.testing.assert_array_equal(read_back(model, len(fixed)), fixed)


# ---------------------------------------------------------------- (c) no float arithmetic in the decode path


class _CheckedCoder:
    """An AnsCoder that asserts every parameter array it is handed is a float64 row table of
    exact integers f − 1 with f >= 1 summing to 2^24 per row, and counts the symbols."""

    def __init__(self, real, *args) -> None:
        self._coder = real(*args)
        self.checked = 0

    def _check(self, params: tuple) -> None:
        for rows in params:
            if isinstance(rows, (int, np.integer)):  # decode(model, amount): a fixed model's symbol count
                continue
            check_rows(np.asarray(rows))
            self.checked += len(rows)

    def encode_reverse(self, symbols, model, *params) -> None:
        self._check(params)
        self._coder.encode_reverse(symbols, model, *params)

    def decode(self, model, *params):
        self._check(params)
        return self._coder.decode(model, *params)

    def __getattr__(self, name):
        return getattr(self._coder, name)


def check_rows(rows: np.ndarray) -> None:
    assert rows.dtype == np.float64 and rows.ndim == 2 and rows.shape[1] >= 2, (rows.dtype, rows.shape)
    assert np.all(rows == np.floor(rows)) and rows.min(initial=0) >= 0
    np.testing.assert_array_equal(rows.sum(1), T - rows.shape[1])


@pytest.fixture
def checked_constriction(monkeypatch):
    """constriction as format 5 must use it: exact integer rows only, never a Bernoulli model."""
    real_coder, real_categorical = constriction.stream.stack.AnsCoder, constriction.stream.model.Categorical
    coders: list[_CheckedCoder] = []

    def coder(*args):
        coders.append(_CheckedCoder(real_coder, *args))
        return coders[-1]

    def categorical(*args, **kwargs):
        if args:
            check_rows(np.asarray(args[0])[None])
        return real_categorical(*args, **kwargs)

    def no_bernoulli(*args, **kwargs):
        raise AssertionError("format 5 codes binary symbols as exact 2-column Categorical rows")

    monkeypatch.setattr(constriction.stream.stack, "AnsCoder", coder)
    monkeypatch.setattr(constriction.stream.model, "Categorical", categorical)
    monkeypatch.setattr(constriction.stream.model, "Bernoulli", no_bernoulli)
    return coders


def test_format5_hands_constriction_only_exact_integer_rows(checked_constriction, model_file) -> None:
    for name in [p.name for p in CONFORMANCE.glob("*.scv")]:
        data = (CONFORMANCE / name).read_bytes()
        if data[8] == 5:
            parse_symbols(data, model_file)
    tables = nested_tables(1, k=8, r=6)
    symbols = sparse_symbols(8, 6, 5, 6, seed=2)
    symbols[1, 2, 3], symbols[4, 0, 0] = 500, -9  # escapes
    for q in (0, 1):
        words = entropy.encode(symbols, tables, q, True, True)
        np.testing.assert_array_equal(entropy.decode(words, tables, q, symbols.shape, True, True), symbols)
    assert sum(c.checked for c in checked_constriction) > 2 * symbols.size


FLOAT_NAMES = {"log", "log2", "log10", "log1p", "exp", "exp2", "expm1", "power", "float_power", "sqrt", "frexp",
               "ldexp", "float16", "float32", "float64", "float128", "half", "single", "double", "longdouble",
               "floating", "true_divide", "divide", "float", "round", "rint", "floor_divide_float"}
FLOAT_STRINGS = {"float16", "float32", "float64", "f2", "f4", "f8", "<f2", "<f4", "<f8", "half", "single", "double"}


def float_operations(function) -> list[str]:
    """What in a function's source is float arithmetic: float literals, true division, ** with
    a non-integer exponent, float functions (log, exp, power, …) or float dtypes."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # a function, class or module
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            found.append(f"float literal {node.value}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in FLOAT_STRINGS:
            found.append(f"float dtype {node.value!r}")
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.Div):
            found.append("true division /")
        integer_power = (isinstance(node, ast.BinOp) and isinstance(node.right, ast.Constant)
                         and isinstance(node.right.value, int))
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.Pow) and not integer_power:
            found.append("** with a non-integer exponent")
        if isinstance(node, ast.Attribute) and node.attr in FLOAT_NAMES:
            found.append(f".{node.attr}")
        if isinstance(node, ast.Name) and node.id in FLOAT_NAMES:
            found.append(node.id)
    return found


#: everything that computes a frequency a format-5 decoder uses (all of sccodec.frequencies)
INTEGER_FUNCTIONS = [
    frequencies, adaptation.side_frequencies, adaptation.scale_odds_frequency, adaptation.tilt_factors,
    adaptation.tilt_frequencies,
    Adaptation.flag_frequencies, Adaptation.magnitude_frequencies,
    entropy.binary_rows, entropy.SymbolTables.frequencies,
    *(f for name, f in vars(entropy._IntegerWalk).items() if inspect.isfunction(f)),
]


@pytest.mark.parametrize("function", INTEGER_FUNCTIONS, ids=lambda f: getattr(f, "__qualname__", f.__name__))
def test_format5_frequencies_use_no_float_arithmetic(function) -> None:
    assert float_operations(function) == []


def test_the_float_check_catches_float_arithmetic() -> None:
    def floaty(p):
        return np.log2(p / 2) * 0.5 + p ** 0.5 + np.asarray(p, dtype="float32")

    assert len(float_operations(floaty)) == 6  # /, two 0.5, **, log2, float32
    assert float_operations(adaptation.scale_odds) and float_operations(adaptation.choose_integer)


def test_the_only_float_conversion_is_exact() -> None:
    """``coder_rows``, the boundary to constriction, converts integers below 2^24 to float64."""
    assert float_operations(coder_rows) == [".float64"]
    f = np.array([[1, T - 1], [T - 3, 3]])
    rows = coder_rows(f)
    assert rows.dtype == np.float64 and np.array_equal(rows.astype(np.int64) + 1, f)


# ---------------------------------------------------------------- (d) round trips


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("k", "groups", "h", "w"), [(8, 4, 4, 5), (8, 2, 1, 7), (4, 4, 6, 1), (4, 2, 1, 1),
                                                     (16, 4, 9, 8)])
def test_random_symbols_round_trip(seed, k, groups, h, w) -> None:
    r = 5
    tables = nested_tables(seed, k=k, r=r, groups=groups)
    rng = np.random.default_rng(seed)
    symbols = sparse_symbols(k, h, w, r, seed)
    symbols.flat[rng.integers(0, symbols.size, 3)] = rng.choice([-1, 1], 3) * rng.integers(r, r + 3000, 3)  # escapes
    symbols.flat[0] = r + entropy.MAX_MAGNITUDE_OVER_RANGE  # the largest codable magnitude
    for q in (0, 1):
        words = entropy.encode(symbols, tables, q, True, True)
        np.testing.assert_array_equal(entropy.decode(words, tables, q, symbols.shape, True, True), symbols)


def test_empty_and_all_zero_tiles_round_trip() -> None:
    tables = nested_tables(0)
    for shape in [(8, 1, 1), (8, 3, 4), (8, 0, 3)]:
        symbols = np.zeros(shape, np.int32)
        words = entropy.encode(symbols, tables, 0, True, True)
        np.testing.assert_array_equal(entropy.decode(words, tables, 0, shape, True, True), symbols)


def test_adaptation_is_chosen_and_applied() -> None:
    """Sparse small symbols: the integer encoder lowers P(non-zero) and tilts towards small
    magnitudes, and the decoder applies the same integer tables (the tile round-trips)."""
    tables = nested_tables(5, k=16, r=6)
    rng = np.random.default_rng(3)
    sparse = np.where(rng.random((16, 12, 12)) < 0.03, rng.choice([-1, 1], (16, 12, 12)), 0).astype(np.int32)
    chosen = adaptation.choose_integer(sparse, tables, 0)
    assert all(FLAG_SIXTEENTHS[f] < 16 for f in chosen.flags) and TILT_SIXTEENTHS[chosen.tilt] < 16
    words = entropy.encode(sparse, tables, 0, True, True)
    assert len(words) < 0.9 * len(entropy.encode(sparse, tables, 0))  # the same tables, not adapted
    np.testing.assert_array_equal(entropy.decode(words, tables, 0, sparse.shape, True, True), sparse)


def test_format5_costs_what_format4_does(model_file) -> None:
    """Same symbols: integer tables and the separate sign code cost (nearly) what format 4 does
    (bench/formats.py measures it on photos)."""
    data = (CONFORMANCE / "tiled.scv").read_bytes()
    parsed = parse_symbols(data, model_file)
    tables, q = model_file.tables, parsed.header.quality - 1
    four = sum(len(entropy.encode(t, tables, q, True)) for t in parsed.tiles)
    five = sum(len(entropy.encode(t, tables, q, True, True)) for t in parsed.tiles)
    assert abs(five - four) <= 0.02 * four + 2, (four, five)


def test_writers_use_format5_for_nested_tables_and_read_format4(model_file) -> None:
    assert FORMATS[5].integer and FORMATS[5].adaptive and FORMATS[5].context == "nested"
    assert newest_format("nested") == 5
    coder = ContextCoder.writing(model_file.tables)
    assert coder.format_version == 5
    symbols = sparse_symbols(model_file.tables.atoms, 3, 2, 4, seed=9)
    for version in (4, 5):
        reader = coder.reading(version)
        payload = reader.encode_tile(symbols, 2)
        np.testing.assert_array_equal(reader.decode_tile(payload, 2, symbols.shape), symbols)
    assert coder.reading(4).encode_tile(symbols, 2) != coder.encode_tile(symbols, 2)
