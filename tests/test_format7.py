""".scv format 7: format 6 with pair weights (sccodec.atom_pairs) on the flags.

What is checked: symbols round-trip for any tile shape and batch size with random pair weights
(the decoder reads a step's flags batch by batch, the encoder all at once); the pair sums are the
documented integer sums, exact at the limits; a pair file is validated, round-trips, hashes its
bytes and is bound to its weights and class file; the encoder prices each step's odds scale on
the frequencies the pairs change (and its estimates of flag and tilt prices follow the exact
integer code lengths); headers of version 7 carry both hashes and a
decoder refuses a file whose pairs it does not have; weights without a pair file keep writing
format 6; the fit lowers the flag bits of the symbols it was fitted on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect

import constriction
import numpy as np
import pytest
from helpers import check_model_without, random_class_tables, random_pair_tables
from test_format5 import float_operations, nested_tables, sparse_symbols

import sccodec
from sccodec import adaptation, atom_pairs, bitstream, entropy
from sccodec.adaptation import (FLAG_INDEX_FREQUENCIES, FLAG_SIXTEENTHS, NEUTRAL_FLAG, NEUTRAL_TILT, TILT_SIXTEENTHS,
                                tilt_frequencies)
from sccodec.api import Codec, parse_symbols
from sccodec.atom_pairs import MAX_BIAS, MAX_WEIGHT, PairTables, pair_file_path, read_pair_tables
from sccodec.context import scheme_contexts, steps
from sccodec.block_classes import MAX_FACTOR, factored_rows
from sccodec.errors import ModelMismatchError
from sccodec.frequencies import PRECISION, TOTAL, normalise, scale_odds_frequency
from sccodec.weights import load_model_file


@pytest.mark.parametrize("shape,batch", [((8, 6, 5), 1), ((8, 1, 1), 2), ((8, 7, 9), 2), ((16, 9, 6), 4),
                                         ((8, 5, 3), 1)])
def test_random_symbols_round_trip(shape, batch) -> None:
    tables = nested_tables(3, k=shape[0], r=6)
    classes = random_class_tables(tables, 3, 2, seed=4).level(1, tables.frequencies(1))
    pairs = random_pair_tables(2, shape[0], batch, seed=5).level(1)
    symbols = sparse_symbols(*shape, 6, seed=6)
    symbols[0, 0, 0] = 300  # an escape
    words = entropy.encode(symbols, tables, 1, True, True, classes, pairs)
    np.testing.assert_array_equal(entropy.decode(words, tables, 1, shape, True, True, classes, pairs), symbols)
    # the pairs change the code: without them the words do not decode to the same symbols
    plain = entropy.encode(symbols, tables, 1, True, True, classes)
    assert not np.array_equal(plain, words)


def _adaptation_written(words: np.ndarray, steps: int) -> tuple[int, ...]:
    """The flag-scale indices a tile's words start with (format 5 and later)."""
    coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
    return tuple(int(i) for i in coder.decode(entropy._Models.of(True).flag_index, steps))


def test_the_flag_scales_are_chosen_on_the_frequencies_the_pairs_change() -> None:
    """Each step's odds scale is the one of least ideal code length for its flags as format 7
    codes them (class, then pairs, then the scale: exact integer frequencies priced here), side
    information included, not as format 6 would code them."""
    shape = (16, 9, 6)
    tables = nested_tables(3, k=shape[0], r=6)
    classes = random_class_tables(tables, 3, 2, seed=4).level(1, tables.frequencies(1))
    pairs = random_pair_tables(2, shape[0], 2, seed=5, scale=MAX_WEIGHT).level(1)
    symbols = sparse_symbols(*shape, 6, seed=6)
    words = entropy.encode(symbols, tables, 1, True, True, classes, pairs)
    order = steps(tables.scheme, tables.groups)
    known = scheme_contexts(tables.scheme, symbols, tables.groups)
    labels = classes.choose(classes.block_bits(symbols, *known, tables.scheme.sign_contexts))
    walk = entropy._PairWalk(symbols, tables, 1, None, classes,
                             classes.position_classes(labels, *shape[1:]), pairs, known)
    side = PRECISION - np.log2(FLAG_INDEX_FREQUENCIES)
    best = []
    for f1, flags in zip(*walk.paired_flags()):
        bits = [(PRECISION - np.log2(np.where(flags, scaled, TOTAL - scaled))).sum()
                for scaled in (scale_odds_frequency(f1, m) for m in FLAG_SIXTEENTHS)]
        best.append(int(np.argmin(np.array(bits) + side)) if f1.size else NEUTRAL_FLAG)
    written = _adaptation_written(words, len(order))
    assert written == tuple(best)
    # the pairs moved the odds enough that format 6's choice differs
    assert _adaptation_written(entropy.encode(symbols, tables, 1, True, True, classes), len(order)) != written


def test_tilt_prices_follow_the_integer_rows() -> None:
    """The tilt's one-product estimate ranks the tilts as the exact integer rows do, and its
    differences between tilts are those of the integer code lengths to within a millibit per
    symbol."""
    rng = np.random.default_rng(8)
    r = 12
    rows = normalise(rng.integers(0, 1 << 20, size=(40, r)) >> rng.integers(0, 16, size=(40, r)))
    factor = rng.integers(1, MAX_FACTOR + 1, size=rows.shape)  # a block class's magnitude factors
    for spread, classed in ((0.4, False), (1.0, False), (2.5, False), (0.4, True), (2.5, True)):
        # values smaller than, as, and larger than the rows expect
        counts = rng.poisson(spread * 60 * (rows - 1) / TOTAL * np.arange(1, r + 1) ** (spread - 1))
        coded = [tilt_frequencies(rows, k) for k in TILT_SIXTEENTHS]
        if classed:
            coded = [factored_rows(f, factor) for f in coded]
        exact = np.array([-(counts * np.log2(f / TOTAL)).sum() for f in coded])
        estimate = adaptation._tilt_bits(((rows - 1) * (factor if classed else 1)).astype(np.float64), counts)
        assert np.argmin(estimate) == np.argmin(exact)
        np.testing.assert_allclose(estimate - estimate[NEUTRAL_TILT], exact - exact[NEUTRAL_TILT],
                                   atol=1e-3 * counts.sum())


def test_flag_histograms_price_as_the_flags_themselves() -> None:
    """``flag_scale_bits`` (binned log-odds) against a price per flag and scale: the same
    choice, totals within a millibit per flag, also where the coder clamps the frequencies;
    steps without flags give None."""
    rng = np.random.default_rng(9)
    frequencies, flags = [], []
    saturated = np.concatenate([np.arange(1, 41), TOTAL - np.arange(1, 41)])  # where the coder's clamp acts
    for odds in (0.25, 1.0, 3.0, "saturated", None):
        if odds is None:
            frequencies.append(np.zeros((4, 0), np.int64))
            flags.append(np.zeros((4, 0), bool))
        elif odds == "saturated":  # flags the tables call all but impossible, half of them set
            frequencies.append(rng.choice(saturated, size=(8, 300)))
            flags.append(rng.random((8, 300)) < 0.5)
        else:
            f1 = rng.integers(1, TOTAL, size=(8, 300))
            p = f1 / TOTAL
            flags.append(rng.random(f1.shape) < odds * p / (odds * p + 1 - p))
            frequencies.append(f1)
    priced = adaptation.flag_scale_bits(frequencies, flags)
    assert priced[-1] is None
    for i, (f1, b, estimate) in enumerate(zip(frequencies[:-1], flags[:-1], priced[:-1])):
        exact = np.array([(PRECISION - np.log2(np.where(b, s, TOTAL - s))).sum()
                          for s in (scale_odds_frequency(f1, m) for m in FLAG_SIXTEENTHS)])
        assert np.argmin(estimate) == np.argmin(exact)
        # near the clamp the integer rounding is what the estimate leaves out (without the clamp: 0.03 bit)
        np.testing.assert_allclose(estimate, exact, atol=(2e-2 if i == 3 else 1e-3) * f1.size)


def _sums_by_integers(pairs: PairTables, q: int, symbols: np.ndarray, phase_of, position, atom: int) -> int:
    """s of one (atom, position) as docs/format.md section 14 defines it, in Python integers."""
    k, h, w = symbols.shape
    i, j = position
    per_group = k // 4
    s = int(pairs.bias[q, atom])
    for other in range(k):
        if other // pairs.batch < atom // pairs.batch and symbols[other, i, j]:
            s += int(pairs.centre[q, atom, other])
    for ring, weights in ((atom_pairs.NEAR, pairs.near), (atom_pairs.FAR, pairs.far)):
        for dy, dx in ring:
            y, x = i + dy, j + dx
            if 0 <= y < h and 0 <= x < w and phase_of[y, x] < phase_of[i, j]:
                s += sum(int(weights[q, atom, other]) for other in range(k) if symbols[other, y, x])
    assert per_group % pairs.batch == 0
    return s


def test_pair_sums_are_the_documented_integers_even_at_the_limits() -> None:
    k = 16
    rng = np.random.default_rng(7)
    extreme = PairTables(*(np.full((1, k, k), MAX_WEIGHT) for _ in range(3)), np.full((1, k), MAX_BIAS),
                         np.full((1, 8), 256), lowest=0, batch=4, model_digest=b"\0" * 8, classes_digest=b"\0" * 8)
    random = random_pair_tables(1, k, 4, seed=8, scale=MAX_WEIGHT)
    tables = nested_tables(9, k=k, r=6, qualities=1)
    phase = tables.scheme.phase(9, 10)
    for pairs, symbols in ((extreme, np.ones((k, 9, 10), np.int32)), (random, sparse_symbols(k, 9, 10, 6, seed=9))):
        level = pairs.level(0)
        nonzero = symbols != 0
        for p, lattice in enumerate(tables.scheme.lattices):
            ring = level.ring_sums(nonzero, phase < p, lattice)
            fired = nonzero[:, phase == p]
            positions = np.argwhere(phase == p)
            for g in range(tables.groups):
                for b in range(k // 4 // pairs.batch):
                    first = g * k // 4 + b * pairs.batch
                    s = ring[first : first + pairs.batch] + level.centre[first : first + pairs.batch, :first] \
                        @ fired[:first].astype(np.float32)
                    for a in range(pairs.batch):
                        for n in rng.choice(len(positions), size=min(3, len(positions)), replace=False):
                            want = _sums_by_integers(pairs, 0, symbols, phase, positions[n], first + a)
                            assert s[a, n] == want
    assert abs(_sums_by_integers(extreme, 0, np.ones((k, 9, 10), np.int32), phase, (4, 5), k - 1)) < 1 << 24


def test_pair_files_are_validated_and_round_trip(tmp_path) -> None:
    good = random_pair_tables(2, 8, 2, seed=10, model_digest=bytes(range(8)), classes_digest=bytes(range(8, 16)))
    with pytest.raises(ValueError, match="centre entries"):
        dataclasses.replace(good, centre=good.centre * 0 + MAX_WEIGHT + 1)
    with pytest.raises(ValueError, match="factor entries"):
        dataclasses.replace(good, factor=good.factor * 0)
    with pytest.raises(ValueError, match="bias entries"):  # int16's −32768 has no int16 absolute value
        dataclasses.replace(good, bias=np.full(good.bias.shape, -32768, np.int16))
    with pytest.raises(ValueError, match="must hold integers"):
        dataclasses.replace(good, far=good.far * 0.5)
    with pytest.raises(ValueError, match="near has shape"):
        dataclasses.replace(good, near=good.near[:, :-1])
    assert good.fits(2, 8, 4) is None and "batches of" in good.fits(2, 8, 8)
    assert "pairs for" in good.fits(3, 8, 4)
    path = tmp_path / "m.pairs.safetensors"
    path.write_bytes(good.to_bytes())
    back = read_pair_tables(path)
    for name in ("centre", "near", "far", "bias", "factor"):
        np.testing.assert_array_equal(getattr(back, name), getattr(good, name))
    assert (back.batch, back.lowest, back.model_digest, back.classes_digest) == (2, -20, bytes(range(8)),
                                                                                 bytes(range(8, 16)))
    assert back.digest == hashlib.sha256(path.read_bytes()).digest()[:8]
    (tmp_path / "other.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(Exception):
        read_pair_tables(tmp_path / "other.safetensors")


def test_pair_file_metadata_is_validated(tmp_path) -> None:
    good = random_pair_tables(1, 8, 2, seed=12)
    path = tmp_path / "m.pairs.safetensors"
    from safetensors.numpy import load, save
    arrays = load(good.to_bytes())
    meta = {"batch": "2", "lowest": "-20", "model_digest": "00" * 8, "classes_digest": "01" * 8}
    for key, bad in (("batch", "２"), ("batch", "0"), ("lowest", "x"), ("model_digest", "00"),
                     ("lowest", str(-(1 << 21)))):
        path.write_bytes(save(arrays, metadata=meta | {key: bad}))
        with pytest.raises(ValueError, match="pair file|batch|lowest"):
            read_pair_tables(path)
    path.write_bytes(save({**arrays, "centre": arrays["centre"].astype(np.int32)}, metadata=meta))
    with pytest.raises(ValueError, match="centre is int32"):
        read_pair_tables(path)


def test_a_coder_refuses_pairs_that_do_not_fit_its_tables() -> None:
    from sccodec.coder import ContextCoder
    tables = nested_tables(13, k=12, r=6)  # groups of 3 atoms
    classes = random_class_tables(tables, 2, 2, seed=14)
    with pytest.raises(ValueError, match="batches of 2 atoms do not divide groups of 3"):
        ContextCoder.writing(tables, (), classes, random_pair_tables(2, 12, 2, seed=15))
    with pytest.raises(ValueError, match="do not divide"):
        entropy.encode(sparse_symbols(12, 4, 4, 6, seed=16), tables, 0, True, True,
                       classes.level(0, tables.frequencies(0)), random_pair_tables(2, 12, 2, seed=15).level(0))


def _blas_threads() -> list[int]:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]


def test_pair_products_run_on_one_blas_thread_and_the_setting_comes_back() -> None:
    """Set and restored in the calling thread; the worker threads that code the tiles see it."""
    from concurrent.futures import ThreadPoolExecutor

    before = _blas_threads()
    with atom_pairs.products_on_one_thread():
        with ThreadPoolExecutor(2) as pool:
            seen = list(pool.map(lambda _: _blas_threads(), range(4)))
    assert all(n == 1 for counts in seen for n in counts)
    assert _blas_threads() == before
    with atom_pairs.products_on_one_thread(needed=False):
        assert _blas_threads() == before


def test_version7_headers_carry_both_hashes() -> None:
    h = bitstream.Header("m", b"\1" * 8, 3, 10, 20, version=7, classes_hash=b"\2" * 8, pairs_hash=b"\3" * 8)
    back, end = bitstream.parse_header(h.pack())
    assert back == h and end == len(h.pack())
    six = bitstream.Header("m", b"\1" * 8, 3, 10, 20, version=6, classes_hash=b"\2" * 8)
    assert len(h.pack()) == len(six.pack()) + 8
    with pytest.raises(ValueError, match="needs pair file hash"):
        bitstream.Header("m", b"\1" * 8, 3, 10, 20, version=7, classes_hash=b"\2" * 8)
    with pytest.raises(ValueError, match="has no pair file hash"):
        bitstream.Header("m", b"\1" * 8, 3, 10, 20, version=6, classes_hash=b"\2" * 8, pairs_hash=b"\3" * 8)


@pytest.mark.parametrize("function", [f for f in vars(entropy._PairWalk).values() if inspect.isfunction(f)]
                         + [atom_pairs.LevelPairs.flag_frequencies], ids=lambda f: f.__qualname__)
def test_format7_walk_uses_no_float_arithmetic(function) -> None:
    """The walk itself is integer; LevelPairs' sums use float32 only as exact integers (tested above)."""
    assert float_operations(function) == []


# ---------------------------------------------------------------- the shipped model


@pytest.fixture(scope="module")
def shipped():
    model_file = load_model_file()
    if model_file.pairs is None:
        pytest.skip("the installed default model has no pair file")
    return model_file


def test_the_default_model_writes_format_7_and_reads_it(shipped) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    data = sccodec.encode(pixels, quality=3)
    header, _ = bitstream.parse_header(data)
    assert header.version == 7 and header.classes_hash == shipped.classes.digest
    assert header.pairs_hash == read_pair_tables(pair_file_path(shipped.path)).digest
    assert np.asarray(sccodec.decode(data)).shape == pixels.shape
    wrong = dataclasses.replace(header, pairs_hash=b"\xff" * 8)
    container = bitstream.parse(data)
    with pytest.raises(ModelMismatchError, match="pair weights with hash ffffffffffffffff"):
        parse_symbols(bitstream.Container(wrong, container.tiles, container.ancillary), shipped)


def test_coding_a_tiled_image_leaves_the_blas_threads_as_they_were(shipped) -> None:
    before = _blas_threads()
    pixels = np.random.default_rng(2).integers(0, 256, (48, 100, 3), dtype=np.uint8)
    codec = Codec(shipped, device="cpu", threads=2)
    data = codec.encode(pixels, 5, tile=32)  # 2 × 4 tiles, coded side by side
    assert codec.decode_array(data)[0].shape == pixels.shape and _blas_threads() == before


def test_weights_without_pairs_write_format_6_and_still_read_7(shipped, tmp_path) -> None:
    """A pair file fitted with another class file is not used."""
    stale = dataclasses.replace(shipped.pairs, classes_digest=b"\0" * 8).to_bytes()
    check_model_without(shipped, tmp_path, ".pairs.safetensors", 6, stale)


def test_fitting_lowers_the_flag_bits_of_its_training_symbols() -> None:
    torch = pytest.importorskip("torch")
    from sccodec.train.atom_pairs import centre_order, correction, fit_weights, flag_bits
    # atoms 0 and 1 never fire together; atom 2 fires where atom 0 fires at a decoded neighbour
    rng = np.random.default_rng(11)
    n, k = 4000, 8
    d = {key: torch.zeros(n, k) for key in ("centre", "near", "far")}
    first = rng.random(n) < 0.4
    d["centre"][:, 0] = torch.from_numpy(first.astype(np.float32))
    y = torch.from_numpy((rng.random((n, k)) < 0.3).astype(np.float32))
    y[:, 0] = d["centre"][:, 0]
    y[:, 1] = torch.from_numpy((~first & (rng.random(n) < 0.6)).astype(np.float32))
    d["centre"] = y.clone()
    d["near"][:, 0] = torch.from_numpy(rng.integers(0, 3, n).astype(np.float32))
    y[:, 2] = (d["near"][:, 0] > 0).float()
    d["y"], d["base"] = y, torch.zeros(n, k)
    mask = centre_order(k, 1)
    w = fit_weights(d, mask, 150, 0.1)
    assert flag_bits(d["base"] + correction(d, w, mask), y) < 0.8 * flag_bits(d["base"], y)
    assert w["centre"][1, 0] < -1 and w["near"][2, 0] > 1


def test_the_fit_reads_the_same_sums_as_the_coder(shipped) -> None:
    """sccodec.train.atom_pairs' features times integer weights equal the coder's pair sums at
    every flag (so what is fitted is what is coded)."""
    torch = pytest.importorskip("torch")
    from sccodec.train.atom_pairs import centre_order, correction, pair_features

    codec = Codec(shipped, device="cpu")
    tables = codec.coder.tables
    k, batch = tables.atoms, shipped.pairs.batch
    symbols = sparse_symbols(k, 6, 7, 6, seed=17)
    symbols[np.random.default_rng(18).random(symbols.shape) < 0.9] = 0  # sparse, as real codes
    pairs = random_pair_tables(tables.qualities, k, batch, seed=19, scale=MAX_WEIGHT)
    d = pair_features(codec, symbols, 4)
    w = {key: torch.from_numpy(getattr(pairs, key)[4].astype(np.float32)) for key in ("centre", "near", "far", "bias")}
    fitted = correction(d, w, centre_order(k, batch)).numpy().T.reshape(symbols.shape)  # (K, h, w)
    level = pairs.level(4)
    phase = tables.scheme.phase(6, 7)
    nonzero = symbols != 0
    for p, lattice in enumerate(tables.scheme.lattices):
        here = phase == p
        if here.any():
            coded = level.ring_sums(nonzero, phase < p, lattice) + level.centre @ level.indicators(nonzero[:, here])
            np.testing.assert_array_equal(coded, fitted[:, here])
