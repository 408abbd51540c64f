"""docs/format.md is enough to decode a tile's symbols.

The ANS coder and the quantiser of sections 3 and 4 are reimplemented here (numpy and Python
integers) and must reproduce constriction's words bit for bit; the symbol decoder below follows
sections 2 and 5-8 (and 12 for version 5, 13 for version 6, 14 for version 7, in Python integers only), takes its constants from
the doc's section 10, and imports nothing from sccodec: it must parse every conformance file
to the symbols in the manifest, and streams that sccodec writes for every format version
(escapes, adaptation and, in versions 6 and 7, block classes from a class file of section 13.1
and in version 7 pair weights from a pair file of section 14.1 included). sccodec itself is
imported only to encode test streams, to write test class and pair files and headers, and to
check the doc's constants against the code.
"""
from __future__ import annotations

import ast
import bisect
import hashlib
import json
import re
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import constriction
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load as load_arrays

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
#: version -> (context scheme, adapted per tile, integer frequencies: section 12, block classes: 13,
#: pair weights: 14)
FORMATS = {1: ("checkerboard", False, False, False, False), 2: ("quad", False, False, False, False),
           3: ("quad", True, False, False, False), 4: ("nested", True, False, False, False),
           5: ("nested", True, True, False, False), 6: ("nested", True, True, True, False),
           7: ("nested", True, True, True, True)}


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


def decode_tile(words, m: Model, q: int, h: int, w: int, version: int,
                classes: "ClassFile | None" = None, pairs: "PairFile | None" = None) -> tuple[np.ndarray, tuple]:
    """Sections 2-7: a TILE payload's words -> (symbols (K, h, w), (flag indices, tilt index,
    class map (versions 6 and 7) or None)). ``classes``: the class file, which versions 6 and 7
    need; ``pairs``: the pair file, which version 7 needs."""
    scheme, adaptive, integer, blocks, paired = FORMATS[version]
    assert blocks == (classes is not None) and paired == (pairs is not None)
    if integer:
        return decode_integer_tile(words, m, q, h, w, classes, pairs)
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
    return x, (tuple(flags), tilt, None)


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


def odds(f1: int, k: int, bits: int = 4) -> int:
    """Section 12.5, flags (odds times k/16); section 13.3 with bits = SCALE_BITS (k/256)."""
    d = k * f1 + (1 << bits) * (TOTAL - f1)
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


def decode_integer_tile(words, m: Model, q: int, h: int, w: int, classes: "ClassFile | None" = None,
                        pairs: "PairFile | None" = None) -> tuple[np.ndarray, tuple]:
    """Section 12.6: a version-5 TILE payload -> (symbols (K, h, w), (flag indices, tilt index,
    None)); with ``classes``, section 13.2: a version-6 payload, and its class map in place of None;
    with ``pairs`` too, section 14: a version-7 payload."""
    phases = PHASES[m.scheme]
    phase = phases[np.arange(h)[:, None] % 4, np.arange(w)[None, :] % 4]
    steps = [(p, g) for p in range(int(phases.max()) + 1) for g in range(m.groups)]
    coder = AnsDecoder(words)
    scales, tilts = K_["FLAG_SCALE_SIXTEENTHS"], K_["VALUE_TILT_SIXTEENTHS"]
    flag_cdf, tilt_cdf = (cdf_of(side_frequencies(len(t), t.index(16))) for t in (scales, tilts))
    flags = [coder.decode(flag_cdf) for _ in steps]
    tilt_index = coder.decode(tilt_cdf)
    class_map, position_class = None, np.zeros((h, w), np.int64)  # version 5: one class, no change
    if classes is not None:
        class_map = decode_class_map(coder, classes, q, h, w)
        b = classes.block
        position_class = np.array([[class_map[i // b][j // b] for j in range(w)] for i in range(h)], np.int64)
    escape_cdf = cdf_of([(1 << 23) + 8] + [1 << (23 - n) for n in range(1, K_["ESCAPE_CLASSES"])])
    bit_cdf = cdf_of([1 << 23, 1 << 23])
    tilted: dict[tuple[int, int], list[int]] = {}
    rows: dict[tuple[int, int, int], list[int]] = {}

    def magnitude_cdf(k: int, row: int, c: int) -> list[int]:
        if (k, row) not in tilted:
            f = magnitude_row(m.magnitudes[q, k, row])
            tilted[k, row] = f if tilts[tilt_index] == 16 else tilt(f, tilts[tilt_index])
        if (k, row, c) not in rows:
            f = tilted[k, row]
            rows[k, row, c] = cdf_of(f if classes is None else factored(f, classes.magnitude_factor[q][c][row]))
        return rows[k, row, c]

    def binary_cdf(f1: int) -> list[int]:
        return [0, TOTAL - f1, TOTAL]

    def class_odds(f1: int, table: str, c: int, ctx: int) -> int:
        return f1 if classes is None else odds(f1, getattr(classes, table)[q][c][ctx], K_["SCALE_BITS"])

    r, size, signs = m.r, m.atoms // m.groups, K_["SIGN_CONTEXTS"]
    x = np.zeros((m.atoms, h, w), np.int64)
    for s, g, here, flag_ctx, value_ctx, atom in step_symbols(m, x, phase, steps):
        cls = np.broadcast_to(position_class[here], flag_ctx.shape)
        positions = [tuple(ij) for ij in np.argwhere(here).tolist()]  # raster order
        nz = []
        for n, (k, ctx, c) in enumerate(zip(atom.ravel().tolist(), flag_ctx.ravel().tolist(), cls.ravel().tolist())):
            f1 = class_odds(binary_f1(m.p_nonzero[q, k, ctx]), "flag_scale", c, ctx)  # the class first
            if pairs is not None:  # then the pairs (section 14.3), on what is decoded so far
                at = positions[n % len(positions)]
                fired = dict(zip([(g * size + i // len(positions), positions[i % len(positions)])
                                  for i in range(len(nz))], nz))
                f1 = odds(f1, pairs.factor_of(q, pairs.sum_of(q, k, at, x, phase, s // m.groups, fired)),
                          K_["SCALE_BITS"])
            nz.append(coder.decode(binary_cdf(f1 if scales[flags[s]] == 16 else odds(f1, scales[flags[s]]))))
        nz = np.array(nz, bool).reshape(flag_ctx.shape)
        values = np.zeros(flag_ctx.shape, np.int64)
        if nz.any():
            triples = list(zip(atom[nz].tolist(), value_ctx[nz].tolist(), cls[nz].tolist()))
            magnitude = [coder.decode(magnitude_cdf(k, vc // signs, c)) + 1 for k, vc, c in triples]
            positive = [coder.decode(binary_cdf(class_odds(binary_f1(m.signs[q, k, vc % signs]), "sign_scale", c,
                                                           vc % signs)))
                        for k, vc, c in triples]
            escape_classes = [coder.decode(escape_cdf) for mag in magnitude if mag == r]  # all classes, then all bits
            bits = [coder.decode(bit_cdf) for _ in range(sum(escape_classes))]
            escapes = iter(escape_classes)
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
    return x, (tuple(flags), tilt_index, class_map)


# ---------------------------------------------------------------- section 13 (version 6), integers only

class ClassFile:
    """Section 13.1: a class file's arrays (as Python integers) and metadata, read from its bytes
    and checked against the doc."""

    #: section 13.1's table: key -> safetensors dtype
    DTYPES = {key: {"uint16": "U16", "int32": "I32"}[dtype] for key, dtype in re.findall(
        r"^\| `(\w+)` \| (uint16|int32) \|", DOC.split("### 13.1", 1)[1].split("\n### ", 1)[0], flags=re.M)}

    def __init__(self, data: bytes) -> None:
        (length,) = struct.unpack_from("<Q", data)  # safetensors: u64 header length, JSON header
        header = json.loads(data[8 : 8 + length])
        meta = header.pop("__metadata__")
        assert {key: entry["dtype"] for key, entry in header.items()} == self.DTYPES
        arrays = load_arrays(data)
        self.block = int(meta["block"])
        self.model_digest = bytes.fromhex(meta["model_digest"])
        self.digest = hashlib.sha256(data).digest()[:8]
        flag, sign, factor, frequencies = (arrays[key].astype(np.int64) for key in
                                           ("flag_scale", "sign_scale", "magnitude_factor", "class_frequencies"))
        q, n, _ = flag.shape
        assert 1 <= self.block <= 64 and n >= 2 and len(self.model_digest) == 8
        assert sign.shape == (q, n, K_["SIGN_CONTEXTS"]) and factor.shape[:2] == (q, n) and factor.ndim == 4
        assert frequencies.shape == (q, n + 1, n)
        assert 1 <= min(flag.min(), sign.min()) and max(flag.max(), sign.max()) <= K_["MAX_SCALE"]
        assert 1 <= factor.min() and factor.max() <= K_["MAX_FACTOR"]
        assert frequencies.min() >= 1 and (frequencies.sum(-1) == TOTAL).all()
        self.classes = n
        self.flag_scale, self.sign_scale, self.magnitude_factor, self.class_frequencies = (
            a.tolist() for a in (flag, sign, factor, frequencies))

    def fits(self, m: Model) -> bool:
        """Shapes of the model's tables (Q, C, V, R)."""
        q, v, r = len(self.flag_scale), len(self.magnitude_factor[0][0]), len(self.magnitude_factor[0][0][0])
        c = len(self.flag_scale[0][0])
        return (q, c, v, r) == (m.p_nonzero.shape[0], m.p_nonzero.shape[-1], *m.magnitudes.shape[-2:])


class PairFile:
    """Section 14.1: a pair file's arrays (as Python integers) and metadata, read from its bytes
    and checked against the doc; section 14.3's sums."""

    #: section 14.1's table: key -> safetensors dtype
    DTYPES = {key: {"uint16": "U16", "int16": "I16"}[dtype] for key, dtype in re.findall(
        r"^\| `(\w+)` \| (uint16|int16) \|", DOC.split("### 14.1", 1)[1].split("\n### ", 1)[0], flags=re.M)}

    def __init__(self, data: bytes) -> None:
        (length,) = struct.unpack_from("<Q", data)
        header = json.loads(data[8 : 8 + length])
        meta = header.pop("__metadata__")
        assert {key: entry["dtype"] for key, entry in header.items()} == self.DTYPES
        arrays = {key: a.astype(np.int64) for key, a in load_arrays(data).items()}
        self.batch, self.lowest = int(meta["batch"]), int(meta["lowest"])
        self.model_digest = bytes.fromhex(meta["model_digest"])
        self.classes_digest = bytes.fromhex(meta["classes_digest"])
        self.digest = hashlib.sha256(data).digest()[:8]
        q, k = arrays["bias"].shape
        for key in ("centre", "near", "far"):
            assert arrays[key].shape == (q, k, k) and np.abs(arrays[key]).max() <= K_["MAX_WEIGHT"]
        assert arrays["factor"].shape[0] == q and 1 <= arrays["factor"].min() and arrays["factor"].max() <= K_["MAX_SCALE"]
        assert self.batch >= 1 and k <= 256 and abs(self.lowest) <= K_["MAX_LOWEST"]
        assert np.abs(arrays["bias"]).max() <= K_["MAX_BIAS"]
        self.centre, self.near, self.far, self.bias, self.factor = (
            arrays[key].tolist() for key in ("centre", "near", "far", "bias", "factor"))

    def sum_of(self, q: int, k: int, at: tuple[int, int], x: np.ndarray, phase: np.ndarray, p: int,
               fired_this_step: dict) -> int:
        """s of atom k at position ``at`` in phase p: ``x`` holds the earlier steps' symbols,
        ``fired_this_step`` the flags decoded so far in this step, by (atom, position)."""
        atoms, (h, w) = x.shape[0], x.shape[1:]
        i, j = at
        s = self.bias[q][k]
        for other in range(atoms):
            if other // self.batch < k // self.batch and fired_this_step.get((other, at), x[other, i, j] != 0):
                s += self.centre[q][k][other]
        for weights, distance in ((self.near, 1), (self.far, 2)):
            for dy in range(-distance, distance + 1):
                for dx in range(-distance, distance + 1):
                    y, x_ = i + dy, j + dx
                    if max(abs(dy), abs(dx)) == distance and 0 <= y < h and 0 <= x_ < w and phase[y, x_] < p:
                        s += sum(weights[q][k][other] for other in range(atoms) if x[other, y, x_] != 0)
        return s

    def factor_of(self, q: int, s: int) -> int:
        factors = self.factor[q]
        shift = K_["BUCKET_SHIFT"]
        return factors[min(max(((s + (1 << (shift - 1))) >> shift) - self.lowest, 0), len(factors) - 1)]


def decode_class_map(coder: AnsDecoder, classes: ClassFile, q: int, h: int, w: int) -> list[list[int]]:
    """Section 13.2: the class of every block (a, b), column by column, each by its left neighbour's."""
    n, b = classes.classes, classes.block
    rows, cols = -(-h // b), -(-w // b)
    labels = [[0] * cols for _ in range(rows)]
    for j in range(cols):
        for i in range(rows):
            labels[i][j] = coder.decode(cdf_of(classes.class_frequencies[q][labels[i][j - 1] if j else n]))
    return labels


def factored(row: list[int], factor: list[int]) -> list[int]:
    """Section 13.3, magnitudes: the tilted row times the class's factors, normalised."""
    return normalise([((f - 1) * k) >> K_["FACTOR_SHIFT"] for f, k in zip(row, factor)])


def read_scv(data: bytes):
    """Section 1, just enough for the tests: header fields (the header CRC checked) and the TILE
    payloads."""
    version, name_len = data[8], data[11]
    name = data[12 : 12 + name_len].decode("ascii")
    digest, quality, width, height, _, _, tile = struct.unpack_from(">8sBIIBBH", data, 12 + name_len)
    pos = 33 + name_len
    classes_hash = data[pos : pos + 8] if version >= 6 else b""
    pos += len(classes_hash)
    pairs_hash = data[pos : pos + 8] if version >= 7 else b""
    pos += len(pairs_hash)
    assert struct.unpack_from(">I", data, pos)[0] == zlib.crc32(data[:pos]), "header CRC"
    pos, tiles = pos + 4, []
    while pos < len(data):
        kind, length = struct.unpack_from(">4sI", data, pos)
        if kind == b"TILE":
            tiles.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return version, name, digest, quality, width, height, tile, tiles, classes_hash, pairs_hash


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
    assert {v: (c.context, c.adaptive, c.integer, c.classes, c.pairs) for v, c in CODE_FORMATS.items()} == FORMATS
    assert bitstream.FORMAT_VERSIONS == tuple(FORMATS) and bitstream.CLASSES_FROM_VERSION == 6
    assert bitstream.PAIRS_FROM_VERSION == 7
    assert tuple(k / 16 for k in K_["FLAG_SCALE_SIXTEENTHS"]) == FLAG_SCALES
    assert tuple(k / 16 for k in K_["VALUE_TILT_SIXTEENTHS"]) == VALUE_TILTS
    assert (NEUTRAL_FLAG, NEUTRAL_TILT) == (13, 5)  # "index 13", "index 5" in sections 4 and 6
    assert K_["ESCAPE_CLASSES"] == ESCAPE_CLASSES
    assert K_["MAX_TILE"] == bitstream.MAX_TILE and K_["DEFAULT_MAX_PIXELS"] == bitstream.DEFAULT_MAX_PIXELS
    from sccodec.adaptation import FLAG_SIXTEENTHS, TILT_FRACTION_BITS, TILT_SIXTEENTHS
    from sccodec.frequencies import PRECISION, ROW_BITS
    assert (K_["ROW_BITS"], K_["TILT_FRACTION_BITS"], K_["PRECISION"]) == (ROW_BITS, TILT_FRACTION_BITS, PRECISION)
    assert (K_["FLAG_SCALE_SIXTEENTHS"], K_["VALUE_TILT_SIXTEENTHS"]) == (FLAG_SIXTEENTHS, TILT_SIXTEENTHS)
    from sccodec import block_classes
    for name in ("SCALE_BITS", "MAX_SCALE", "FACTOR_SHIFT", "MAX_FACTOR"):
        assert K_[name] == getattr(block_classes, name), name
    from sccodec import atom_pairs
    for name in ("SCALE_BITS", "MAX_SCALE", "BUCKET_SHIFT", "MAX_WEIGHT", "MAX_BIAS", "MAX_LOWEST"):
        assert K_[name] == getattr(atom_pairs, name), name


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


def test_class_arithmetic_in_the_doc():
    """Section 13.3's odds and factored rows against sccodec's, on random and hand-made entries."""
    from sccodec.block_classes import factored_rows
    from sccodec.frequencies import scale_odds_frequency

    rng = np.random.default_rng(13)
    f1 = [1, 2, 1000, TOTAL // 2, TOTAL - 2, TOTAL - 1, *rng.integers(1, TOTAL, 50).tolist()]
    assert [odds(f, 256, K_["SCALE_BITS"]) for f in f1] == f1  # 256/256 leaves a table as it is
    for m in (1, 100, 255, 257, 4095):
        assert [odds(f, m, K_["SCALE_BITS"]) for f in f1] == scale_odds_frequency(np.array(f1), m, 8).tolist()
    # the shift matters: without it the third and first entries differ by a unit
    assert factored([7590748, 4006512, 4571494, 608462], [1, 1, 3, 2]) == [4800528, 2533791, 8673293, 769604]
    for r in (1, 2, 5, 31):
        rows = np.stack([np.array(normalise(rng.integers(0, 1 << 20, r).tolist())) for _ in range(20)])
        factors = rng.integers(1, K_["MAX_FACTOR"] + 1, (20, r))
        expected = factored_rows(rows, factors).tolist()
        assert [factored(row, k) for row, k in zip(rows.tolist(), factors.tolist())] == expected


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
    version, model_name, digest, quality, width, height, tile, tiles, classes_hash, pairs_hash = read_scv(
        (CONFORMANCE / name).read_bytes())
    weights = find_model(model_name, digest)
    model, classes, pairs = Model(weights), None, None
    if FORMATS[version][3]:  # section 13.1: the class file beside the weights, of the header's hash
        classes = ClassFile(weights.with_name(weights.name.removesuffix(".safetensors") + ".classes.safetensors")
                            .read_bytes())
        assert (classes.digest, classes.model_digest) == (classes_hash, digest) and classes.fits(model)
    if FORMATS[version][4]:  # section 14.1: the pair file beside them
        pairs = PairFile(weights.with_name(weights.name.removesuffix(".safetensors") + ".pairs.safetensors")
                         .read_bytes())
        assert (pairs.digest, pairs.model_digest, pairs.classes_digest) == (pairs_hash, digest, classes_hash)
    boxes = [(min(tile, height - top), min(tile, width - left))
             for top in range(0, height, tile) for left in range(0, width, tile)]
    digest_of_symbols = hashlib.sha256()
    for payload, (th, tw) in zip(tiles, boxes, strict=True):
        words = np.frombuffer(payload, "<u4")
        symbols, _ = decode_tile(words, model, quality - 1, -(-th // K_["STRIDE"]), -(-tw // K_["STRIDE"]), version,
                                 classes, pairs)
        digest_of_symbols.update(symbols.astype("<i4").tobytes())
    assert digest_of_symbols.hexdigest() == entry["symbols_sha256"]


class _Stored(Model):
    """Random float16 tables, handed to this decoder as stored arrays."""

    def __init__(self, scheme: str, tables) -> None:
        self.scheme, self.groups, self.atoms, self.r = scheme, tables.groups, tables.atoms, tables.value_range
        stored = {k: np.asarray(v, np.float64) for k, v in tables.stored().items()}
        self.p_nonzero = stored["p_nonzero"]
        self.values, self.magnitudes, self.signs = stored.get("values"), stored.get("magnitudes"), stored.get("signs")


def class_file(tables, q_levels: int, n: int, block: int, seed: int) -> bytes:
    """A random but valid class file (section 13.1) for ``tables``, written by sccodec."""
    from sccodec.block_classes import ClassTables
    from sccodec.frequencies import normalise

    rng = np.random.default_rng(seed)
    x, v, r = tables.scheme.flag_contexts, tables.scheme.value_contexts, tables.value_range
    scales = lambda *shape: rng.integers(1, K_["MAX_SCALE"] + 1, (q_levels, n, *shape))  # noqa: E731
    return ClassTables(scales(x), scales(tables.scheme.sign_contexts),
                       rng.integers(1, K_["MAX_FACTOR"] + 1, (q_levels, n, v, r)),
                       normalise(rng.integers(0, 1000, (q_levels, n + 1, n))), block, rng.bytes(8)).to_bytes()


def pair_file(q_levels: int, atoms: int, batch: int, seed: int) -> bytes:
    """A random but valid pair file (section 14.1), written by sccodec: weights strong enough that
    the pairs move many flags' buckets."""
    from sccodec.atom_pairs import PairTables

    rng = np.random.default_rng(seed)
    weights = lambda *shape: rng.integers(-K_["MAX_WEIGHT"], K_["MAX_WEIGHT"] + 1, (q_levels, *shape)) // 4  # noqa: E731
    return PairTables(weights(atoms, atoms), weights(atoms, atoms), weights(atoms, atoms), weights(atoms),
                      rng.integers(1, K_["MAX_SCALE"] + 1, (q_levels, 60)), lowest=-30, batch=batch,
                      model_digest=rng.bytes(8), classes_digest=rng.bytes(8)).to_bytes()


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6, 7])
def test_independent_decoder_reads_sccodec_streams(version, tmp_path):
    """Every format version, with escapes (small R, large values), in 3 to 7 adaptation, in 6 and
    7 block classes (class files of 2 and 3 classes on blocks of 2 and 3, so partial blocks too)
    and in 7 pair weights (batches of 1 and 2 atoms)."""
    from sccodec.atom_pairs import read_pair_tables
    from sccodec.block_classes import read_class_tables
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
    files = []  # (sccodec's ClassTables, this decoder's ClassFile), version 6 only
    for n, block in [(3, 2), (2, 3)] if FORMATS[version][3] else []:
        path = tmp_path / f"classes{n}.classes.safetensors"
        path.write_bytes(class_file(tables, q_levels, n, block, seed=n))
        files.append((read_class_tables(path), ClassFile(path.read_bytes())))
        assert files[-1][1].fits(model) and files[-1][0].digest == files[-1][1].digest
    pair_files = []  # (sccodec's PairTables, this decoder's PairFile), version 7 only
    for batch in (1, 2) if FORMATS[version][4] else []:
        path = tmp_path / f"pairs{batch}.pairs.safetensors"
        path.write_bytes(pair_file(q_levels, k, batch, seed=batch))
        pair_files.append((read_pair_tables(path), PairFile(path.read_bytes())))
        assert pair_files[-1][0].digest == pair_files[-1][1].digest
    adapted, classes_used = False, set()
    for trial, (h, w) in enumerate([(5, 7), (1, 1), (8, 3), (2, 9)]):
        q = trial % q_levels
        density = (0.1, 0.9)[trial % 2]
        symbols = np.where(rng.random((k, h, w)) < density, rng.integers(1, 7, (k, h, w)), 0)
        symbols = symbols * rng.choice([-1, 1], symbols.shape)
        symbols.ravel()[rng.choice(symbols.size, 3)] = [40, -3000, 2**21 + r - 2]  # escapes, the largest too
        code_classes, classes = files[trial % 2] if files else (None, None)
        code_pairs, pairs = pair_files[trial % 2] if pair_files else (None, None)
        words = encode(symbols, tables, q, adaptive=FORMATS[version][1], integer=FORMATS[version][2],
                       classes=None if code_classes is None else code_classes.level(q, tables.frequencies(q)),
                       pairs=None if code_pairs is None else code_pairs.level(q))
        decoded, (flags, tilt, class_map) = decode_tile(words, model, q, h, w, version, classes, pairs)
        np.testing.assert_array_equal(decoded, symbols)
        adapted |= any(f != 13 for f in flags) or tilt != 5
        if classes is not None:
            assert (len(class_map), len(class_map[0])) == (-(-h // classes.block), -(-w // classes.block))
            classes_used |= {(trial, c) for row in class_map for c in row}
    assert adapted == FORMATS[version][1]
    if FORMATS[version][3]:  # the encoder chose several classes within a tile, in some tile
        assert len(classes_used) > len({t for t, _ in classes_used})


def test_version_6_header_carries_the_classes_hash():
    """Section 1: the classes hash sits after the tile field, the header CRC after it."""
    from sccodec import bitstream

    for version, classes_hash, pairs_hash in [(5, b"", b""), (6, bytes(range(1, 9)), b""),
                                              (7, bytes(range(1, 9)), bytes(range(9, 17)))]:
        header = bitstream.Header(model="toy", weights_hash=b"w" * 8, quality=3, width=40, height=20, tile=32,
                                  version=version, classes_hash=classes_hash, pairs_hash=pairs_hash)
        data = bitstream.pack(bitstream.Container(header, [b"\x01\x00\x00\x00"] * 2))
        assert len(data) == 33 + 3 + len(classes_hash) + len(pairs_hash) + 4 + 2 * 16
        assert read_scv(data) == (version, "toy", b"w" * 8, 3, 40, 20, 32, [b"\x01\x00\x00\x00"] * 2, classes_hash,
                                  pairs_hash)


def test_shipped_class_files_follow_the_doc():
    """Section 13.1 for every class file beside the shipped weights."""
    paths = sorted(MODELS.glob("*.classes.safetensors"))
    if not paths:
        pytest.skip("no class file is shipped")
    for path in paths:
        classes = ClassFile(path.read_bytes())
        weights = path.with_name(path.name.removesuffix(".classes.safetensors") + ".safetensors")
        assert classes.model_digest == hashlib.sha256(weights.read_bytes()).digest()[:8], path.name
        assert classes.fits(Model(weights)), path.name
        shipped = re.search(rf"`{re.escape(path.name)}` has N = (\d+) classes on blocks of B = (\d+)", DOC)
        assert (classes.classes, classes.block) == tuple(map(int, shipped.groups())), path.name
