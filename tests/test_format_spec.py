"""docs/format.md is enough to decode a tile's symbols.

The ANS coder and the quantiser of sections 3 and 4 are reimplemented here (numpy and Python
integers) and must reproduce constriction's words bit for bit; the symbol decoder below follows
sections 2 and 5-8 (and 12 for version 5, in Python integers only), takes its constants from
the doc's section 10, and imports nothing from sccodec: it must parse every conformance file
to the symbols in the manifest, and streams that sccodec writes for every format version (escapes and adaptation included). sccodec itself is
imported only to encode test streams and to check the doc's constants against the code.
"""
from __future__ import annotations

import ast
import bisect
import hashlib
import json
import re
import struct
from fractions import Fraction
from pathlib import Path

import constriction
import numpy as np
import pytest
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "format.md").read_text()
CONFORMANCE = ROOT / "tests" / "data" / "conformance"
MODELS = ROOT / "weights"


def doc_constants() -> dict:
    """Section 10's table: | `NAME` | `python literal` | meaning |."""
    section = DOC.split("## 10. Constants", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", section, flags=re.M)
    return {name: ast.literal_eval(value) for name, value in rows}


K_ = doc_constants()
TOTAL = 1 << K_["PRECISION"]
WORD = K_["WORD_BITS"]
STATE_LIMIT = 1 << (K_["STATE_BITS"] - WORD)  # the state stays >= this while words are left
PHASES = {"checkerboard": np.array(K_["CHECKERBOARD_PHASES"]), "quad": np.array(K_["QUAD_PHASES"]),
          "nested": np.array(K_["NESTED_PHASES"])}
#: version -> (context scheme, adapted per tile, integer frequencies: section 12)
FORMATS = {1: ("checkerboard", False, False), 2: ("quad", False, False), 3: ("quad", True, False),
           4: ("nested", True, False), 5: ("nested", True, True)}


# ---------------------------------------------------------------- sections 3 and 4

def quantised_cdf(weights: np.ndarray) -> np.ndarray:
    """Section 4: float64 weights (..., n) -> integer CDFs (..., n + 1)."""
    weights = np.asarray(weights, np.float64)
    n = weights.shape[-1]
    partial = np.cumsum(weights, axis=-1)  # left to right, like the doc's sum (np.sum is pairwise)
    total = partial[..., -1]
    if not np.all(np.isfinite(total) & (total >= np.finfo(np.float64).tiny)):
        raise ValueError("a distribution that cannot be normalised")
    scale = (TOTAL - n) / total
    left = np.concatenate([np.zeros_like(partial[..., :1]), partial[..., :-1]], axis=-1)
    cdf = np.empty(weights.shape[:-1] + (n + 1,), np.int64)
    cdf[..., :n] = (left * scale[..., None]).astype(np.int64) + np.arange(n)  # astype truncates
    cdf[..., n] = TOTAL
    return cdf


def bernoulli_cdf(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, np.float64)
    return quantised_cdf(np.stack([1.0 - p, p], axis=-1))


def ans_encode(symbols_and_cdfs: list[tuple[int, list[int]]]) -> list[int]:
    """Section 3's encoder; the list is in decoding order."""
    state, words = 0, []
    for s, cdf in reversed(symbols_and_cdfs):
        start, f = cdf[s], cdf[s + 1] - cdf[s]
        if state >> (K_["STATE_BITS"] - K_["PRECISION"]) >= f:  # 64 - 24 = 40
            words.append(state % (1 << WORD))
            state >>= WORD
        state = (state // f << K_["PRECISION"]) + start + state % f
    if state >= 1 << WORD:
        words += [state % (1 << WORD), state >> WORD]
    elif state:
        words.append(state)
    return words


class AnsDecoder:
    """Section 3's decoder over the payload's words w[0] ... w[n-1]."""

    def __init__(self, words) -> None:
        self.left = [int(w) for w in words]
        self.state = 0
        if self.left:
            if self.left[-1] == 0:
                raise ValueError("payload ends in a zero word")
            self.state = self.left.pop()
            if self.left:
                self.state = (self.state << WORD) | self.left.pop()

    def decode(self, cdf: list[int]) -> int:
        quantile = self.state % TOTAL
        s = bisect.bisect_right(cdf, quantile) - 1
        self.state = (self.state >> K_["PRECISION"]) * (cdf[s + 1] - cdf[s]) + quantile - cdf[s]
        if self.state < 1 << WORD and self.left:
            self.state = (self.state << WORD) | self.left.pop()
        return s

    def decode_all(self, cdfs: np.ndarray) -> list[int]:
        return [self.decode(row) for row in cdfs.tolist()]

    def finished(self) -> bool:
        return self.state == 0


# ---------------------------------------------------------------- sections 2 and 5-8

def bucket(x: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    return np.searchsorted(np.array(edges), x, side="right")


def window_sum(a: np.ndarray, offsets) -> np.ndarray:
    """Sum of a[..., i + di, j + dj] over the offsets, 0 outside the map."""
    h, w = a.shape[-2:]
    pad = np.zeros(a.shape[:-2] + (h + 8, w + 8), np.int64)
    pad[..., 4 : 4 + h, 4 : 4 + w] = a
    return sum(pad[..., 4 + di : 4 + di + h, 4 + dj : 4 + dj + w] for di, dj in offsets)


W3 = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)]
W5 = [(di, dj) for di in range(-2, 3) for dj in range(-2, 3)]
R1 = [o for o in W3 if o != (0, 0)]
R2 = [(2 * di, 2 * dj) for di, dj in R1]
X = [(-1, 0), (1, 0), (0, -1), (0, 1)]


class Model:
    """Section 8: a weights file's tables (float64) and what the decoder needs of its metadata."""

    def __init__(self, path: Path) -> None:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata()
            t = {k[len("tables."):]: f.get_tensor(k).astype(np.float64) for k in f.keys() if k.startswith("tables.")}
        config = json.loads(meta["config"])
        self.scheme = meta.get("context", "checkerboard")
        self.groups = config.get("groups", 4)
        self.p_nonzero = t["p_nonzero"]
        self.atoms = self.p_nonzero.shape[1]
        self.values, self.magnitudes, self.signs = t.get("values"), t.get("magnitudes"), t.get("signs")
        self.r = self.magnitudes.shape[-1] if self.magnitudes is not None else self.values.shape[-1] // 2


def find_model(name: str, digest: bytes) -> Path:
    for path in (MODELS / f"{name}@{digest.hex()}.safetensors", MODELS / f"{name}.safetensors"):
        if path.is_file() and hashlib.sha256(path.read_bytes()).digest()[:8] == digest:
            return path
    pytest.fail(f"no weights for {name} {digest.hex()}")


def contexts(m: Model, x: np.ndarray, phase: np.ndarray, p: int, g: int) -> tuple[np.ndarray, np.ndarray]:
    """Section 5: (flag, value) contexts of group g's atoms at every position, (K/G, h, w)."""
    size = m.atoms // m.groups
    n = (x != 0).reshape(m.groups, size, *x.shape[1:]).sum(1)
    done = phase < p
    decoded = np.where(done, n.sum(0), 0) + np.where(phase == p, n[:g].sum(0), 0)
    own = x[g * size : (g + 1) * size]
    coarse = m.scheme == "nested" and p < 4
    a = bucket(window_sum(decoded, W5 if coarse else W3), K_["ACTIVITY_EDGES"])[None]
    shape = own.shape
    if m.scheme == "checkerboard":
        same = window_sum(own != 0, X) if p == 1 else np.full(shape, 5)
        return same * 8 + a, np.broadcast_to(a, shape)
    if p == 0:
        rows = a // 2 * (K_["SIGN_CONTEXTS"] if m.scheme == "nested" else 1)
        return np.broadcast_to(a, shape), np.broadcast_to(rows, shape)
    y = own * done
    if m.scheme == "quad":
        mag = bucket(window_sum(np.abs(y), R1), K_["MAGNITUDE_EDGES"])
        return (1 + (p - 1) * 7 + mag) * 8 + a, 4 + mag
    ring = R2 if coarse else R1
    mag = bucket(window_sum(np.abs(y), ring), K_["NESTED_MAGNITUDE_EDGES"])
    sigma = 2 + np.sign(window_sum(y, ring))
    return (1 + (p - 1) * 9 + mag) * 8 + a, (4 + mag) * K_["SIGN_CONTEXTS"] + sigma


def step_symbols(m: Model, x: np.ndarray, phase: np.ndarray, steps):
    """Section 5's coding order: per step (s, its positions, flag and value contexts, atoms), each
    (K/G, n) atom-major; the caller writes the step's values into ``x`` before the next step."""
    size = m.atoms // m.groups
    for s, (p, g) in enumerate(steps):
        here = phase == p
        if not here.any():
            continue
        flag_ctx, value_ctx = (c[:, here] for c in contexts(m, x, phase, p, g))
        atom = np.broadcast_to(np.arange(g * size, (g + 1) * size)[:, None], flag_ctx.shape)
        yield s, g, here, flag_ctx, value_ctx, atom


def side_model(sixteenths: tuple[int, ...]) -> tuple[np.ndarray, int]:
    neutral = sixteenths.index(16)
    weights = np.full(len(sixteenths), 0.5 / (len(sixteenths) - 1))
    weights[neutral] = 0.5
    return quantised_cdf(weights), neutral


def decode_tile(words, m: Model, q: int, h: int, w: int, version: int) -> tuple[np.ndarray, tuple]:
    """Sections 2-7: a TILE payload's words -> (symbols (K, h, w), (flag indices, tilt index))."""
    scheme, adaptive, integer = FORMATS[version]
    if integer:
        return decode_integer_tile(words, m, q, h, w)
    assert scheme == m.scheme
    phases = PHASES[scheme]
    period = phases.shape[0]
    phase = phases[np.arange(h)[:, None] % period, np.arange(w)[None, :] % period]
    steps = [(p, g) for p in range(int(phases.max()) + 1) for g in range(m.groups)]
    coder = AnsDecoder(words)
    scales, tilts = K_["FLAG_SCALE_SIXTEENTHS"], K_["VALUE_TILT_SIXTEENTHS"]
    (flag_cdf, flag_neutral), (tilt_cdf, tilt_neutral) = side_model(scales), side_model(tilts)
    flags, tilt = [flag_neutral] * len(steps), tilt_neutral
    if adaptive:
        flags = [coder.decode(flag_cdf.tolist()) for _ in steps]
        tilt = coder.decode(tilt_cdf.tolist())
    escape_cdf = quantised_cdf(0.5 ** np.arange(1, K_["ESCAPE_CLASSES"] + 1)).tolist()
    bit_cdf = bernoulli_cdf(0.5).tolist()
    r, size = m.r, m.atoms // m.groups
    x = np.zeros((m.atoms, h, w), np.int64)
    for s, g, here, flag_ctx, value_ctx, atom in step_symbols(m, x, phase, steps):
        prob = m.p_nonzero[q, atom, flag_ctx]
        if flags[s] != flag_neutral:
            c = scales[flags[s]] / 16
            a, b = c * prob, 1.0 - prob
            prob = a / (a + b)
        nz = np.array(coder.decode_all(bernoulli_cdf(prob.ravel())), bool).reshape(flag_ctx.shape)
        values = np.zeros(flag_ctx.shape, np.int64)
        if nz.any():
            k, vc = atom[nz], value_ctx[nz]
            if m.signs is None:
                rows = m.values[q, k, vc]
            else:
                mags = m.magnitudes[q, k, vc // K_["SIGN_CONTEXTS"]]
                plus = m.signs[q, k, vc % K_["SIGN_CONTEXTS"]][:, None]
                rows = np.concatenate([mags[:, ::-1] * (1.0 - plus), mags * plus], axis=1)
            if tilt != tilt_neutral:
                t, powers = tilts[tilt] / 16, []
                for _ in range(r):
                    powers.append(t if not powers else powers[-1] * t)
                rows = rows * np.array(powers[::-1] + powers)
            index = np.array(coder.decode_all(quantised_cdf(rows)))
            v = np.where(index < r, index - r, index - r + 1)
            escaped = np.flatnonzero(np.abs(v) == r)
            classes = [coder.decode(escape_cdf) for _ in escaped]  # all classes, then all bits
            bits = [coder.decode(bit_cdf) for _ in range(sum(classes))]
            for e, n_bits in zip(escaped, classes):
                mm = (1 << n_bits) + sum(b << j for j, b in enumerate(bits[:n_bits]))
                bits = bits[n_bits:]
                v[e] = np.sign(v[e]) * (r + mm - 1)
            values[nz] = v
        x[g * size : (g + 1) * size][:, here] = values
    if not coder.finished():
        raise ValueError("data left over after the last symbol")
    return x, (tuple(flags), tilt)


# ---------------------------------------------------------------- section 12 (version 5), integers only

def exact(x: float) -> tuple[int, int]:
    """Section 12.1: a stored number (widened to binary64, which is exact) -> (m, x), value m·2^x."""
    bits = struct.unpack("<Q", struct.pack("<d", float(x)))[0]
    e, f = (bits >> 52) & 0x7FF, bits & ((1 << 52) - 1)
    assert e != 0x7FF and (bits >> 63 == 0 or bits & ((1 << 63) - 1) == 0), "not a valid table entry"
    return (f, 1 - 1023 - 52) if e == 0 else (f + (1 << 52), e - 1023 - 52)


def shift(m: int, by: int) -> int:
    return m << by if by >= 0 else m >> -by


def binary_f1(p: float) -> int:
    """Section 12.2: f(1) of a flag or sign entry."""
    m, x = exact(p)
    d = min(shift(m, x + 25), 1 << 25)
    return min(max((d + 1) >> 1, 1), TOTAL - 1)


def normalise(a: list[int]) -> list[int]:
    """Section 12.3's normalise."""
    a = a if any(a) else [1] * len(a)
    free = TOTAL - len(a)
    w = [v * free // sum(a) for v in a]
    w[w.index(max(w))] += free - sum(w)
    return [v + 1 for v in w]


def magnitude_row(stored) -> list[int]:
    """Section 12.3: the R stored magnitudes of a row -> its frequencies."""
    parts = [exact(v) for v in stored]
    m, x = max(parts, key=lambda mx: Fraction(mx[0]) * Fraction(2) ** mx[1])  # the largest by value
    top = m.bit_length() - 1 + x if m else 0
    return normalise([shift(mj, xj + K_["ROW_BITS"] - 1 - top) for mj, xj in parts])


def side_frequencies(n: int, neutral: int) -> list[int]:
    """Section 12.4."""
    f = [(1 << 23) // (n - 1)] * n
    f[neutral] = TOTAL - (n - 1) * f[0]
    return f


def odds(f1: int, k: int) -> int:
    """Section 12.5, flags."""
    d = k * f1 + 16 * (TOTAL - f1)
    return min(max((2 * TOTAL * k * f1 + d) // (2 * d), 1), TOTAL - 1)


def tilt(row: list[int], k: int) -> list[int]:
    """Section 12.5, magnitudes."""
    tau = [TOTAL]
    for _ in row:
        tau.append(max(1, (k * tau[-1] + 8) >> 4))
    sh = max(0, max(tau[1:]).bit_length() - K_["TILT_FRACTION_BITS"])
    return normalise([((f - 1) * t) >> sh for f, t in zip(row, tau[1:])])


def cdf_of(frequencies: list[int]) -> list[int]:
    out = [0]
    for f in frequencies:
        out.append(out[-1] + f)
    assert out[-1] == TOTAL and min(frequencies) >= 1
    return out


def decode_integer_tile(words, m: Model, q: int, h: int, w: int) -> tuple[np.ndarray, tuple]:
    """Section 12.6: a version-5 TILE payload -> (symbols (K, h, w), (flag indices, tilt index))."""
    phases = PHASES[m.scheme]
    phase = phases[np.arange(h)[:, None] % 4, np.arange(w)[None, :] % 4]
    steps = [(p, g) for p in range(int(phases.max()) + 1) for g in range(m.groups)]
    coder = AnsDecoder(words)
    scales, tilts = K_["FLAG_SCALE_SIXTEENTHS"], K_["VALUE_TILT_SIXTEENTHS"]
    flag_cdf, tilt_cdf = (cdf_of(side_frequencies(len(t), t.index(16))) for t in (scales, tilts))
    flags = [coder.decode(flag_cdf) for _ in steps]
    tilt_index = coder.decode(tilt_cdf)
    escape_cdf = cdf_of([(1 << 23) + 8] + [1 << (23 - n) for n in range(1, K_["ESCAPE_CLASSES"])])
    bit_cdf = cdf_of([1 << 23, 1 << 23])
    rows: dict[tuple[int, int], list[int]] = {}

    def magnitude_cdf(k: int, row: int) -> list[int]:
        if (k, row) not in rows:
            f = magnitude_row(m.magnitudes[q, k, row])
            rows[k, row] = cdf_of(f if tilts[tilt_index] == 16 else tilt(f, tilts[tilt_index]))
        return rows[k, row]

    def binary_cdf(f1: int) -> list[int]:
        return [0, TOTAL - f1, TOTAL]

    r, size, signs = m.r, m.atoms // m.groups, K_["SIGN_CONTEXTS"]
    x = np.zeros((m.atoms, h, w), np.int64)
    for s, g, here, flag_ctx, value_ctx, atom in step_symbols(m, x, phase, steps):
        nz = []
        for k, c in zip(atom.ravel().tolist(), flag_ctx.ravel().tolist()):
            f1 = binary_f1(m.p_nonzero[q, k, c])
            nz.append(coder.decode(binary_cdf(f1 if scales[flags[s]] == 16 else odds(f1, scales[flags[s]]))))
        nz = np.array(nz, bool).reshape(flag_ctx.shape)
        values = np.zeros(flag_ctx.shape, np.int64)
        if nz.any():
            pairs = list(zip(atom[nz].tolist(), value_ctx[nz].tolist()))
            magnitude = [coder.decode(magnitude_cdf(k, vc // signs)) + 1 for k, vc in pairs]
            positive = [coder.decode(binary_cdf(binary_f1(m.signs[q, k, vc % signs]))) for k, vc in pairs]
            classes = [coder.decode(escape_cdf) for mag in magnitude if mag == r]  # all classes, then all bits
            bits = [coder.decode(bit_cdf) for _ in range(sum(classes))]
            escapes = iter(classes)
            v = []
            for mag, plus in zip(magnitude, positive):
                if mag == r:
                    n_bits = next(escapes)
                    mag = r + (1 << n_bits) + sum(b << j for j, b in enumerate(bits[:n_bits])) - 1
                    bits = bits[n_bits:]
                v.append(mag if plus else -mag)
            values[nz] = v
        x[g * size : (g + 1) * size][:, here] = values
    if not coder.finished():
        raise ValueError("data left over after the last symbol")
    return x, (tuple(flags), tilt_index)


def read_scv(data: bytes):
    """Section 1, just enough for the tests: header fields and the TILE payloads."""
    version, name_len = data[8], data[11]
    name = data[12 : 12 + name_len].decode("ascii")
    digest, quality, width, height, _, _, tile = struct.unpack_from(">8sBIIBBH", data, 12 + name_len)
    pos, tiles = 12 + name_len + 21 + 4, []
    while pos < len(data):
        kind, length = struct.unpack_from(">4sI", data, pos)
        if kind == b"TILE":
            tiles.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return version, name, digest, quality, width, height, tile, tiles


# ---------------------------------------------------------------- tests

def test_doc_constants_match_the_code():
    from sccodec import bitstream, context
    from sccodec.adaptation import FLAG_SCALES, NEUTRAL_FLAG, NEUTRAL_TILT, VALUE_TILTS
    from sccodec.entropy import ESCAPE_CLASSES, FORMATS as CODE_FORMATS
    from sccodec.model.config import STRIDE

    assert K_["STRIDE"] == STRIDE
    for name in ("ACTIVITY_EDGES", "MAGNITUDE_EDGES", "NESTED_MAGNITUDE_EDGES", "SIGN_CONTEXTS"):
        assert K_[name] == getattr(context, name), name
    for name, scheme in context.SCHEMES.items():
        doc_map = PHASES[name]
        period = doc_map.shape[0]
        np.testing.assert_array_equal(np.tile(doc_map, (6, 6))[:11, :10], scheme.phase(11, 10), err_msg=name)
        assert K_["FLAG_CONTEXTS"][name] == scheme.flag_contexts
        assert K_["VALUE_ROWS"][name] == scheme.value_contexts
        assert int(doc_map.max()) + 1 == scheme.phases and period in (2, 4)
    assert {v: (c.context, c.adaptive, c.integer) for v, c in CODE_FORMATS.items()} == FORMATS
    assert tuple(k / 16 for k in K_["FLAG_SCALE_SIXTEENTHS"]) == FLAG_SCALES
    assert tuple(k / 16 for k in K_["VALUE_TILT_SIXTEENTHS"]) == VALUE_TILTS
    assert (NEUTRAL_FLAG, NEUTRAL_TILT) == (13, 5)  # "index 13", "index 5" in sections 4 and 6
    assert K_["ESCAPE_CLASSES"] == ESCAPE_CLASSES
    assert K_["MAX_TILE"] == bitstream.MAX_TILE and K_["DEFAULT_MAX_PIXELS"] == bitstream.DEFAULT_MAX_PIXELS
    from sccodec.adaptation import FLAG_SIXTEENTHS, TILT_FRACTION_BITS, TILT_SIXTEENTHS
    from sccodec.frequencies import PRECISION, ROW_BITS
    assert (K_["ROW_BITS"], K_["TILT_FRACTION_BITS"], K_["PRECISION"]) == (ROW_BITS, TILT_FRACTION_BITS, PRECISION)
    assert (K_["FLAG_SCALE_SIXTEENTHS"], K_["VALUE_TILT_SIXTEENTHS"]) == (FLAG_SIXTEENTHS, TILT_SIXTEENTHS)


def test_doc_table_storage_matches_the_shipped_files():
    rows = re.findall(r"^\|\s*(?:`([\w-]+)`)?\s*\|\s*(?:`\w+`)?\s*\|\s*`(tables\.\w+)` \| ([\d × ]+) \| (float\d+) \|",
                      DOC, flags=re.M)
    assert len(rows) == 5
    model = None
    for name, key, shape, dtype in rows:
        model = name or model
        with safe_open(str(MODELS / f"{model}.safetensors"), framework="numpy") as f:
            tensor = f.get_slice(key)
            assert tuple(tensor.get_shape()) == tuple(int(d) for d in shape.split("×")), (model, key)
            assert tensor.get_dtype().lower().replace("f", "float") == dtype, (model, key)


def test_quantiser_gives_constriction_cumulatives():
    """Encoding one symbol into an empty AnsCoder leaves state = cdf[symbol], which
    get_compressed() returns as its only word (none when 0): constriction's CDF, read directly."""
    rng = np.random.default_rng(34)

    def constriction_left(model, s, *params) -> int:
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(np.array([s], np.int32), model, *params)
        words = coder.get_compressed()
        return int(words[0]) if len(words) else 0

    for trial in range(40):
        n = int(rng.integers(2, 64))
        weights = [rng.random(n), rng.random(n) ** 12, np.where(rng.random(n) < 0.4, 0.0, rng.random(n)),
                   rng.dirichlet(np.full(n, 0.05)) * 3.7][trial % 4]
        cdf = quantised_cdf(weights)
        for s in rng.choice(n, size=min(n, 6), replace=False):
            fixed = constriction.stream.model.Categorical(weights, perfect=False)
            assert constriction_left(fixed, s) == cdf[s]
            lazy = constriction.stream.model.Categorical(perfect=False)
            assert constriction_left(lazy, s, weights[None]) == cdf[s]
    flag = constriction.stream.model.Bernoulli(perfect=False)
    for p in [0.0, 1.0, 0.5, 0.1, 0.3, 2.0**-24, 1 - 1e-12, *rng.random(20)]:
        assert constriction_left(flag, 0, np.array([p])) == 0
        assert constriction_left(flag, 1, np.array([p])) == bernoulli_cdf(p)[1]


def test_fixed_model_frequencies_in_the_doc():
    def frequencies(weights) -> list[int]:
        return np.diff(quantised_cdf(weights)).tolist()

    def doc_row(label: str) -> str:
        return re.search(rf"^\| {label} \| (\d.*) \|$", DOC, flags=re.M)[1]

    assert frequencies([0.5, 0.5]) == ast.literal_eval(f"[{doc_row('escape extra bit')}]")
    assert frequencies(0.5 ** np.arange(1, 22)) == ast.literal_eval(f"[{doc_row('escape class')}]")
    tilt_cdf, _ = side_model(K_["VALUE_TILT_SIXTEENTHS"])
    assert np.diff(tilt_cdf).tolist() == ast.literal_eval(f"[{doc_row('tilt index')}]")
    flag_cdf, _ = side_model(K_["FLAG_SCALE_SIXTEENTHS"])
    expected = [441506] * 20
    expected[6] = expected[12] = expected[19] = 441507
    expected[13] = 8388599
    assert np.diff(flag_cdf).tolist() == expected
    assert doc_row("flag-scale index") == "441506 at indices 0–5, 7–11, 14–18; 441507 at 6, 12, 19; 8388599 at 13"


def test_integer_tables_in_the_doc():
    """Section 12.4's rows and 12.2/12.3 on hand-made entries."""
    def doc_row(label: str) -> str:
        return re.search(rf"^\| {re.escape(label)} \| (.*) \|$", DOC, flags=re.M)[1]

    flag, tilt_f = side_frequencies(20, 13), side_frequencies(9, 5)
    assert set(flag[:13] + flag[14:]) == {441505} and flag[13] == 8388621
    assert doc_row("flag-scale index (5)") == "441505 at indices 0–12 and 14–19; 8388621 at 13"
    assert set(tilt_f[:5] + tilt_f[6:]) == {1048576} and tilt_f[5] == 8388608
    assert doc_row("tilt index (5)") == "1048576 at indices 0–4 and 6–8; 8388608 at 5"
    assert doc_row("escape class (5)").startswith(f"{(1 << 23) + 8}, then 2^(23 − n)")
    assert [binary_f1(p) for p in (0.0, 2.0 ** -26, 2.0 ** -25, 0.5, 1.0)] == [1, 1, 1, 1 << 23, TOTAL - 1]
    assert magnitude_row([0.5, 0.25, 0.125, 0.125]) == [1 << 23, 1 << 22, 1 << 21, 1 << 21]
    assert magnitude_row([0.0, 0.0]) == [1 << 23, 1 << 23]


def test_ans_words_match_constriction():
    rng = np.random.default_rng(5)
    for trial in range(12):
        coder = constriction.stream.stack.AnsCoder()
        calls, sequence = [], []
        for _ in range(int(rng.integers(1, 6))):
            n, m = int(rng.integers(2, 40)), int(rng.integers(1, 120))
            weights = rng.random((m, n)) ** 6
            symbols = np.array([rng.choice(n, p=row / row.sum()) for row in weights], np.int32)
            calls.append((symbols, weights))
            sequence += list(zip(symbols.tolist(), quantised_cdf(weights).tolist()))
        for symbols, weights in reversed(calls):  # as sccodec does: the last call first
            coder.encode_reverse(symbols, constriction.stream.model.Categorical(perfect=False), weights)
        words = coder.get_compressed()
        assert ans_encode(sequence) == words.tolist()
        decoder = AnsDecoder(words)
        assert [decoder.decode(cdf) for _, cdf in sequence] == [s for s, _ in sequence]
        assert decoder.finished() and not decoder.left
    assert AnsDecoder([]).decode(bernoulli_cdf(0.3).tolist()) == 0  # empty payload: index 0, state 0
    with pytest.raises(ValueError):
        AnsDecoder([5, 0])


@pytest.mark.parametrize("name", sorted(p.name for p in CONFORMANCE.glob("*.scv")))
def test_independent_decoder_reads_conformance_files(name):
    entry = {e["file"]: e for e in json.loads((CONFORMANCE / "manifest.json").read_text())["files"]}[name]
    version, model_name, digest, quality, width, height, tile, tiles = read_scv((CONFORMANCE / name).read_bytes())
    model = Model(find_model(model_name, digest))
    boxes = [(min(tile, height - top), min(tile, width - left))
             for top in range(0, height, tile) for left in range(0, width, tile)]
    digest_of_symbols = hashlib.sha256()
    for payload, (th, tw) in zip(tiles, boxes, strict=True):
        words = np.frombuffer(payload, "<u4")
        symbols, _ = decode_tile(words, model, quality - 1, -(-th // K_["STRIDE"]), -(-tw // K_["STRIDE"]), version)
        digest_of_symbols.update(symbols.astype("<i4").tobytes())
    assert digest_of_symbols.hexdigest() == entry["symbols_sha256"]


class _Stored(Model):
    """Random float16 tables, handed to this decoder as stored arrays."""

    def __init__(self, scheme: str, tables) -> None:
        self.scheme, self.groups, self.atoms, self.r = scheme, tables.groups, tables.atoms, tables.value_range
        stored = {k: np.asarray(v, np.float64) for k, v in tables.stored().items()}
        self.p_nonzero = stored["p_nonzero"]
        self.values, self.magnitudes, self.signs = stored.get("values"), stored.get("magnitudes"), stored.get("signs")


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_independent_decoder_reads_sccodec_streams(version):
    """Every format version, with escapes (small R, large values) and, in 3 and 4, adaptation."""
    from sccodec.context import SCHEMES
    from sccodec.entropy import SymbolTables, encode

    scheme = SCHEMES[FORMATS[version][0]]
    rng = np.random.default_rng(version)
    q_levels, k, groups, r = 2, 8, 2, 4
    half = lambda shape: rng.random(shape).astype(np.float16)  # noqa: E731 - float16 like the shipped tables
    p = (rng.random((q_levels, k, scheme.flag_contexts)) ** 2).astype(np.float16)
    if scheme.sign_contexts == 1:
        tables = SymbolTables(p, half((q_levels, k, scheme.value_contexts, 2 * r)), groups, scheme.name)
    else:
        tables = SymbolTables.from_stored({"p_nonzero": p, "magnitudes": half((q_levels, k, scheme.value_contexts, r)),
                                           "signs": half((q_levels, k, scheme.sign_contexts))}, groups, scheme.name)
    model = _Stored(scheme.name, tables)
    adapted = False
    for trial, (h, w) in enumerate([(5, 7), (1, 1), (8, 3), (2, 9)]):
        q = trial % q_levels
        density = (0.1, 0.9)[trial % 2]
        symbols = np.where(rng.random((k, h, w)) < density, rng.integers(1, 7, (k, h, w)), 0)
        symbols = symbols * rng.choice([-1, 1], symbols.shape)
        symbols.ravel()[rng.choice(symbols.size, 3)] = [40, -3000, 2**21 + r - 2]  # escapes, the largest too
        words = encode(symbols, tables, q, adaptive=FORMATS[version][1], integer=FORMATS[version][2])
        decoded, (flags, tilt) = decode_tile(words, model, q, h, w, version)
        np.testing.assert_array_equal(decoded, symbols)
        adapted |= any(f != 13 for f in flags) or tilt != 5
    assert adapted == FORMATS[version][1]
