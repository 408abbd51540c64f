"""Rate-aware quantisation: whether a code value near ±1 is worth its bits, asked in its context.

    s (real, K×h×w) ─round─▶ symbols ─scheme_contexts─▶ bits a ±1 costs over a 0 there (Δbits)
        ─▶ zero every |s| < min(0.5 + w·Δbits, 1) ─▶ symbols for the coder     (w: a bits weight)

Why: rounding sends |s| ≥ 0.5 to ±1, but a ±1 where the tables expect a zero (a rare atom, no
active neighbours) costs many bits, and one where its neighbours fire costs few. A fixed dead
zone (``ZERO_THRESHOLD``) treats both alike; here the threshold rises with the bits the ±1 would
cost under the model's own tables and contexts (one extra context pass per tile). Encoder-side
only: decoders and files are unchanged. The weight per quality level is a per-model encoder
setting, kept in the model file's sidecar (``sccodec.weights.EncoderSettings``), chosen on
held-out training photos with ``bench/dead_zone.py``.

The bit cost is the static tables' (before the tile's adaptation, ``sccodec.adaptation``), read in
the contexts of the previous pass's symbols: an estimate (zeroing one value changes its
neighbours' contexts, so the decisions interact) that the measurement, not a derivation,
vouches for.
"""
from __future__ import annotations

import numpy as np

from sccodec.context import scheme_contexts
from sccodec.entropy import MAX_MAGNITUDE_OVER_RANGE, SymbolTables

#: The fixed dead zone: |s| below it is coded as 0 (plain rounding would be 0.5). A ±1 near the
#: rounding boundary costs more bits than the error it removes; 0.58 saved about 1–2% of the bits
#: at equal PSNR on held-out photos against plain rounding (docs/training.md).
ZERO_THRESHOLD = 0.58
MAX_ZERO_THRESHOLD = 1.0  # never zero a value that rounds to ±2 or more
#: Each pass re-reads the contexts of the previous pass's symbols (the first: of the rounded
#: code) and decides every ±1 again from the rounded code; a second pass saves about a third
#: more than one alone.
PASSES = 2
_MIN_P = 2.0 ** -24  # as the coder's floor: keeps the logarithms finite


def dead_zone_round(s: np.ndarray, zero_threshold: float = ZERO_THRESHOLD) -> np.ndarray:
    """Round to the nearest integer (halves to even), except that |s| < zero_threshold becomes 0."""
    s = np.asarray(s, dtype=np.float32)
    return np.where(np.abs(s) < zero_threshold, np.float32(0), np.rint(s))


def fixed_dead_zone(s: np.ndarray, value_range: int, zero_threshold: float = ZERO_THRESHOLD) -> np.ndarray:
    """Real-valued symbols -> int32 symbols with a fixed dead zone, clamped to what escapes can code."""
    limit = value_range + MAX_MAGNITUDE_OVER_RANGE
    return np.clip(dead_zone_round(s, zero_threshold), -limit, limit).astype(np.int32)


def one_bits(symbols: np.ndarray, where: np.ndarray, negative: np.ndarray, tables: SymbolTables,
             quality_index: int, value_table: np.ndarray | None = None) -> np.ndarray:
    """Bits a ±1 (its sign from ``negative``) costs over a 0 at the positions ``where`` (a 0/1
    mask over ``symbols``, (K,h,w)), in the contexts of ``symbols`` under the static tables of
    level ``quality_index``; one value per position of ``where``, in its flat order.
    ``value_table``: ``tables.value_table(quality_index)``, if the caller has it."""
    p, atom, value, rows = _contexts(symbols, where, tables, quality_index, value_table)
    r = tables.value_range
    p_one = rows[atom, value, np.where(negative[where], r - 1, r)] / rows.sum(-1)[atom, value]  # columns of ∓1
    return np.log2(1 - p) - np.log2(p) - np.log2(np.maximum(p_one, _MIN_P))


def value_bits(symbols: np.ndarray, where: np.ndarray, tables: SymbolTables, quality_index: int,
               candidates: tuple[np.ndarray, ...], value_table: np.ndarray | None = None) -> list[np.ndarray]:
    """Bits each candidate value would cost at the positions ``where`` (one array per candidate,
    each in the flat order of ``where``), in the contexts of ``symbols`` under the static tables
    of level ``quality_index``: a position's own context does not depend on its own value.
    Magnitudes past the tables' range are priced as the range's edge (their escape bits are left out)."""
    p, atom, value, rows = _contexts(symbols, where, tables, quality_index, value_table)
    r = tables.value_range
    totals = rows.sum(-1)[atom, value]
    out = []
    for v in candidates:
        column = np.clip(np.where(v < 0, v + r, v + r - 1), 0, 2 * r - 1)
        p_value = np.maximum(rows[atom, value, column] / totals, _MIN_P)
        out.append(np.where(v == 0, -np.log2(1 - p), -np.log2(p) - np.log2(p_value)))
    return out


def _contexts(symbols: np.ndarray, where: np.ndarray, tables: SymbolTables, quality_index: int,
              value_table: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """At the positions ``where``: P(nonzero) in each flag context, the atom, the value context,
    and the level's value rows (atom, value context, column)."""
    flag, value = scheme_contexts(tables.scheme, symbols, tables.groups)
    atom = np.broadcast_to(np.arange(symbols.shape[0])[:, None, None], symbols.shape)[where]
    p = np.clip(tables.p_nonzero[quality_index, atom, flag[where]], _MIN_P, 1 - _MIN_P)
    rows = tables.value_table(quality_index) if value_table is None else value_table
    return p, atom, value[where], rows


def quantize(s: np.ndarray, tables: SymbolTables, quality_index: int, bits_weight: float | None,
             passes: int = PASSES) -> np.ndarray:
    """Real-valued symbols (K,h,w) -> int32 symbols for ``sccodec.entropy.encode``.

    ``bits_weight`` None: the fixed dead zone (|s| < ZERO_THRESHOLD -> 0); 0: plain rounding."""
    s = np.asarray(s, dtype=np.float32)
    if bits_weight is None:
        return fixed_dead_zone(s, tables.value_range)
    limit = tables.value_range + MAX_MAGNITUDE_OVER_RANGE  # beyond: escape codes run out
    rounded = np.clip(np.rint(s), -limit, limit).astype(np.int32)
    candidates = (np.abs(rounded) == 1) & (np.abs(s) < MAX_ZERO_THRESHOLD)
    if bits_weight == 0 or not candidates.any():
        return rounded
    symbols, magnitude, negative = rounded, np.abs(s[candidates]), s < 0
    rows = tables.value_table(quality_index)
    for _ in range(passes):
        threshold = 0.5 + bits_weight * one_bits(symbols, candidates, negative, tables, quality_index, rows)
        zeroed = np.zeros_like(candidates)
        zeroed[candidates] = magnitude < threshold
        symbols = np.where(zeroed, 0, rounded).astype(np.int32)
    return symbols
