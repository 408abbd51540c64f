"""Integer frequencies from a model file's stored tables (.scv format 5): no float arithmetic.

    stored float (any IEEE binary width) ─bit fields─▶ exact m·2^e ─shifts, floor division─▶
        frequencies (int64) summing to TOTAL = 2^24, every one >= 1

Why: the decoder of format 5 must not depend on float computation, neither its own nor the
entropy coder's. Every probability it codes with is an integer derived here from the exact
value of a stored table entry by integer shifts and floor divisions (docs/format.md,
section 12). The derivation reads the bit pattern (sign, exponent, mantissa) of each stored
number, so it is the same on every machine and for every float width the file may use.

    binary table (P(x != 0), P(v > 0)):  f1 = clamp(floor(p·2^24 + 1/2), 1, 2^24 − 1)
    magnitude row (R weights):           A_j = floor(m_j·2^(30 − E)), E = floor(log2 max_j m_j)
                                         then ``normalise``: floor shares of 2^24 − R, each + 1,
                                         the remainder to the first largest entry
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRECISION = 24  # bits of every frequency table: the entropy coder's precision
TOTAL = 1 << PRECISION
#: Magnitude rows are scaled so that their largest entry has this many bits before
#: normalisation: every product in ``normalise`` stays below 2^63.
ROW_BITS = 31
MAX_WEIGHT = 1 << 39  # ``normalise`` needs weights below this (times TOTAL: below 2^63)

#: (mantissa bits, exponent bits) of the IEEE binary formats by item size in bytes
_LAYOUTS = {2: (10, 5), 4: (23, 8), 8: (52, 11)}
_ZERO_EXPONENT = -(1 << 20)  # floor(log2 0): below every float's exponent


@dataclass(frozen=True)
class ExactValues:
    """Non-negative floats as exact integers: value = mantissa · 2^exponent (int64 arrays).
    ``order``: the bit patterns, which order non-negative floats as their values do."""

    mantissa: np.ndarray
    exponent: np.ndarray
    order: np.ndarray

    @property
    def log2_floor(self) -> np.ndarray:
        """floor(log2 value) per entry; ``_ZERO_EXPONENT`` for zeros."""
        return np.where(self.mantissa > 0, self.exponent + bit_length(self.mantissa) - 1, _ZERO_EXPONENT)

    def scaled_floor(self, shift: np.ndarray, cap: int) -> np.ndarray:
        """min(floor(value · 2^shift), cap) for a cap of at most 2^31 (no intermediate reaches 2^63)."""
        up = self.exponent + shift
        left = np.minimum(np.left_shift(np.minimum(self.mantissa, cap), np.clip(up, 0, 31)), cap)
        return np.where(up >= 0, left, np.minimum(np.right_shift(self.mantissa, np.clip(-up, 0, 63)), cap))


def exact_values(x: np.ndarray) -> ExactValues:
    """Decode IEEE-754 binary16/32/64 bit patterns into exact ``ExactValues``; ValueError for
    negative, infinite or NaN entries (no table may hold them)."""
    x = np.ascontiguousarray(x)
    if x.dtype.kind != "f" or x.dtype.itemsize not in _LAYOUTS:
        raise ValueError(f"table entries must be IEEE binary16, 32 or 64 floats, not {x.dtype}")
    mantissa_bits, exponent_bits = _LAYOUTS[x.dtype.itemsize]
    bits = x.view(f"{'<' if x.dtype.byteorder in '<=|' else '>'}u{x.dtype.itemsize}")
    bits = bits.view(np.int64) if x.dtype.itemsize == 8 else bits.astype(np.int64)
    biased = (bits >> mantissa_bits) & ((1 << exponent_bits) - 1)
    fraction = bits & ((1 << mantissa_bits) - 1)
    negative = ((bits >> (mantissa_bits + exponent_bits)) & 1) == 1
    if np.any(negative & ((biased > 0) | (fraction > 0))) or np.any(biased == (1 << exponent_bits) - 1):
        raise ValueError("table entries must be finite and not negative")
    bias = (1 << (exponent_bits - 1)) - 1
    normal = biased > 0
    mantissa = np.where(normal, fraction | (1 << mantissa_bits), fraction)
    exponent = np.where(normal, biased, 1) - bias - mantissa_bits
    return ExactValues(mantissa, exponent, np.where(negative, 0, bits))


def bit_length(x: np.ndarray) -> np.ndarray:
    """Bits of each non-negative int64 (0 for 0), by a binary search of shifts."""
    x = np.asarray(x, dtype=np.int64)
    n = np.zeros(x.shape, dtype=np.int64)
    for step in (32, 16, 8, 4, 2, 1):
        big = (x >> step) > 0
        n += np.where(big, step, 0)
        x = np.where(big, x >> step, x)
    return n + (x > 0)


def binary_frequencies(p: np.ndarray) -> np.ndarray:
    """P(1) per entry -> f1 = clamp(floor(p·2^24 + 1/2), 1, 2^24 − 1) (int64); symbol 0 then
    has TOTAL − f1."""
    doubled = exact_values(p).scaled_floor(PRECISION + 1, 2 * TOTAL)  # floor(2p·2^24), at most 2^25
    return np.clip((doubled + 1) >> 1, 1, TOTAL - 1)


def row_weights(m: np.ndarray) -> np.ndarray:
    """Non-negative row entries (..., R) -> int64 weights floor(m_j · 2^(30 − E)), E = floor(log2)
    of the row's largest entry: the largest weight lies in [2^30, 2^31)."""
    v = exact_values(m)
    largest = np.argmax(v.order, axis=-1)[..., None]
    top = ExactValues(*(np.take_along_axis(a, largest, -1) for a in (v.mantissa, v.exponent, v.order))).log2_floor
    return v.scaled_floor(ROW_BITS - 1 - top, 1 << ROW_BITS)


def normalise(weights: np.ndarray) -> np.ndarray:
    """Integer weights (..., n), each in [0, 2^39) -> frequencies (..., n) summing to TOTAL,
    each >= 1: w_j = floor(a_j·(TOTAL − n) / Σa), f_j = w_j + 1, and the remainder
    (TOTAL − n) − Σw (< n) added to the first largest w_j. A row of zeros counts as uniform."""
    a = np.asarray(weights, dtype=np.int64)
    if a.size and (a.min() < 0 or a.max() >= MAX_WEIGHT):
        raise ValueError(f"weights must lie in [0, 2^39) to be normalised in int64, not [{a.min()}, {a.max()}]")
    n = a.shape[-1]
    total = a.sum(-1, keepdims=True)
    if a.size and not total.all():  # rows of zeros count as uniform
        a = np.where(total > 0, a, 1)
        total = np.where(total > 0, total, n)
    free = TOTAL - n
    w = a * free // total
    first_max = np.argmax(w, axis=-1)[..., None]
    np.put_along_axis(w, first_max, np.take_along_axis(w, first_max, -1) + free - w.sum(-1, keepdims=True), -1)
    return w + 1


def scale_odds_frequency(f1: np.ndarray, k: np.ndarray | int, shift: int = 4) -> np.ndarray:
    """f1 = f(1) of binary tables (int64, in [1, 2^24 − 1]) with the odds multiplied by k / 2^shift
    (sixteenths by default: the per-tile adaptation), rounded half up and clamped:
    clamp(floor(T·k·f1 / D + 1/2), 1, T − 1) with D = k·f1 + 2^shift·(T − f1), evaluated as
    floor((2·T·k·f1 + D) / (2·D)); no product reaches 2^63 for k < 2^13. In place on two
    buffers: every coded flag passes through here two or three times, and fresh temporaries
    (page faults included) cost more than the arithmetic."""
    f1 = np.asarray(f1, dtype=np.int64)
    kf = np.asarray(np.multiply(k, f1, dtype=np.int64))
    d = ((TOTAL - f1) << shift) + kf
    kf *= 2 * TOTAL
    kf += d
    d <<= 1
    kf //= d
    np.maximum(kf, 1, out=kf)
    np.minimum(kf, TOTAL - 1, out=kf)
    return kf if kf.ndim else kf[()]


@dataclass(frozen=True)
class IntegerTables:
    """Tables as integer frequencies (int64), derived from stored arrays (one quality level's,
    as ``SymbolTables.frequencies`` uses it, or several).

    ``nonzero``: f(x != 0) per (…, K, C) flag context; ``magnitudes``: f(|v| = 1 … R) per
    (…, K, V, R) value row, each row summing to TOTAL; ``positive``: f(v > 0) per (…, K, S)
    sign context.
    """

    nonzero: np.ndarray
    magnitudes: np.ndarray
    positive: np.ndarray

    @classmethod
    def from_stored(cls, p_nonzero: np.ndarray, magnitudes: np.ndarray, signs: np.ndarray) -> "IntegerTables":
        """From the arrays a model file stores (``SymbolTables.stored``: P(x != 0), the
        positive half of the symmetric value rows, P(v > 0))."""
        return cls(binary_frequencies(p_nonzero), normalise(row_weights(magnitudes)), binary_frequencies(signs))
