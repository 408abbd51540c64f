"""Per-tile adaptation of the static tables (.scv format 3): a few integers of side information
that fit the model's tables to one image.

    symbols ─scheme_contexts─▶ counts per table entry ─choose─▶ Adaptation(flags[step], tilt)
    P(non-zero) ─odds × FLAG_SCALES[flags[step]]─▶ P'      value row ─× VALUE_TILTS[tilt]^|v|─▶ row'

Why: the tables are averages over the training photos, but images differ in how many atoms
fire and how large the values run. Scaling the odds of every P(non-zero) of a coding step
(phase × atom group) and tilting the value distributions towards larger or smaller
magnitudes saves 0.2–1.1% of the file per level on held-out training photos
(``bench/adaptation.py``), at no cost to the network.

Formats 3 and 4: both transforms use only IEEE-754 multiplications, additions and divisions
of float64 (each rounded exactly the same way everywhere), on factors that are exact binary
fractions, so the decoder rebuilds bit-identical probabilities on any machine (docs/design.md,
principle 1); constriction normalises the tilted value rows itself.

Format 5: the same factors k/16 act on integer frequencies (``sccodec.frequencies``) with
int64 shifts and floor divisions only (``scale_odds_frequency``, ``tilt_frequencies``), once
per tile on the tables; the side indices have integer frequency tables too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sccodec.context import phase_map, scheme_contexts, steps, value_index
from sccodec.frequencies import PRECISION, TOTAL, bit_length, normalise, scale_odds_frequency

#: Odds factors of P(non-zero) in sixteenths, one chosen per coding step; index NEUTRAL_FLAG
#: leaves the table.
FLAG_SIXTEENTHS = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 28, 32)
FLAG_SCALES = tuple(k / 16 for k in FLAG_SIXTEENTHS)
NEUTRAL_FLAG = FLAG_SIXTEENTHS.index(16)
#: Value rows are multiplied by tilt^|v| (> 1: larger magnitudes), one tilt per tile.
TILT_SIXTEENTHS = (11, 12, 13, 14, 15, 16, 17, 18, 19)
VALUE_TILTS = tuple(k / 16 for k in TILT_SIXTEENTHS)
NEUTRAL_TILT = TILT_SIXTEENTHS.index(16)


def _side_probs(n: int, neutral: int) -> np.ndarray:
    """Fixed probabilities of a side-information index: half on 'no change', so a tile that
    gains nothing from adapting pays 1 bit per index."""
    p = np.full(n, 0.5 / (n - 1))
    p[neutral] = 0.5
    return p


FLAG_INDEX_PROBS = _side_probs(len(FLAG_SCALES), NEUTRAL_FLAG)
TILT_INDEX_PROBS = _side_probs(len(VALUE_TILTS), NEUTRAL_TILT)
_MIN_P = 2.0 ** -24  # the coder gives every symbol at least about this much (leaky quantisation)


@dataclass(frozen=True)
class Adaptation:
    flags: tuple[int, ...]  # an index into FLAG_SCALES per coding step, in coding order
    tilt: int = NEUTRAL_TILT  # an index into VALUE_TILTS

    @classmethod
    def neutral(cls, num_steps: int) -> "Adaptation":
        return cls((NEUTRAL_FLAG,) * num_steps)

    def flag_probs(self, p: np.ndarray, step: int) -> np.ndarray:
        """P(non-zero) of one coding step's symbols, with the step's odds scale applied."""
        i = self.flags[step]
        return p if i == NEUTRAL_FLAG else scale_odds(p, FLAG_SCALES[i])

    def flag_frequencies(self, f1: np.ndarray, step: int) -> np.ndarray:
        """Format 5: f(x != 0) (int64) of one coding step's symbols, the step's odds scale applied."""
        i = self.flags[step]
        return f1 if i == NEUTRAL_FLAG else scale_odds_frequency(f1, FLAG_SIXTEENTHS[i])

    def magnitude_frequencies(self, table: np.ndarray) -> np.ndarray:
        """Format 5: magnitude rows (..., R) (int64, each summing to 2^24), tilted."""
        return table if self.tilt == NEUTRAL_TILT else tilt_frequencies(table, TILT_SIXTEENTHS[self.tilt])

    def value_rows(self, rows: np.ndarray) -> np.ndarray:
        """Value distributions (n, 2R), tilted (not normalised: constriction does that)."""
        if self.tilt == NEUTRAL_TILT:
            return rows
        return rows * tilt_weights(VALUE_TILTS[self.tilt], rows.shape[-1] // 2)


def scale_odds(p: np.ndarray, c: float) -> np.ndarray:
    """p with its odds p / (1 - p) multiplied by c."""
    cp = c * p
    return cp / (cp + (1.0 - p))


def tilt_weights(t: float, r: int) -> np.ndarray:
    """t^|v| for v = -R..-1, 1..R, by repeated multiplication (exact rounding, no pow())."""
    powers = np.cumprod(np.full(r, t))  # t^1 .. t^R
    return np.concatenate([powers[::-1], powers])


@dataclass(frozen=True)
class _TileCounts:
    """What ``choose`` prices: symbol counts per table entry a tile uses."""

    entries: np.ndarray  # used flag-table entries ((atom·N + class)·C + flag context), grouped by coding step
    ones: np.ndarray  # non-zero symbols per used entry
    zeros: np.ndarray  # zero symbols per used entry
    step_ends: np.ndarray  # entries[step_ends[s]:step_ends[s + 1]] belong to coding step s
    rows: np.ndarray  # used value rows ((class·K + atom)·V + row, without the sign context)
    values: np.ndarray  # (used rows, 2R): counts per value index (sccodec.context.value_index)


def _tile_counts(symbols: np.ndarray, tables, contexts: tuple[np.ndarray, np.ndarray] | None,
                 position_class: np.ndarray | None = None, classes: int = 1, flags: bool = True) -> _TileCounts:
    """Counts per table entry (not per symbol), so pricing grows with the tables, not the image.
    ``position_class`` (h, w): each position's block class (format 6), of ``classes``.
    ``flags=False``: the value rows only (no flag entries; every step's range is empty)."""
    k, h, w = symbols.shape
    groups = tables.groups
    flag_ctx, value_ctx = contexts if contexts is not None else scheme_contexts(tables.scheme, symbols, groups)
    nz = symbols != 0
    atom = np.broadcast_to(np.arange(k, dtype=np.int64)[:, None, None], symbols.shape)
    cls = np.zeros((h, w), dtype=np.int64) if position_class is None else position_class.astype(np.int64)
    phase = phase_map(tables.scheme, h, w)
    c = tables.p_nonzero.shape[-1]
    n = classes
    if not flags:
        used = ones = total = np.zeros(0, dtype=np.int64)
        ends = np.zeros(len(steps(tables.scheme, groups)) + 1, dtype=np.int64)
    elif n == 1:
        # every symbol's table entry, per phase: (phase, atom, context). Sorted, the entries of one
        # coding step (phase, group of atoms) are one run, and the runs come in coding order.
        entry = ((phase * k + atom) * c + flag_ctx).ravel()
        ones = np.bincount(entry[nz.ravel()], minlength=tables.scheme.phases * k * c)
        total = np.bincount(entry, minlength=tables.scheme.phases * k * c)
        used = np.flatnonzero(total)
        ones, total = ones[used], total[used]
        step = used // (k * c) * groups + used % (k * c) // c // (k // groups)
        used = used % (k * c)
    else:
        # (phase, context) pairs are few (a scheme's context mostly implies its phase): number the
        # ones present, count per (pair, atom, class), then put the entries in coding-step order
        pair = phase * c + flag_ctx
        present = np.flatnonzero(np.bincount(pair.ravel(), minlength=tables.scheme.phases * c))
        number = np.zeros(tables.scheme.phases * c, dtype=np.int64)
        number[present] = np.arange(present.size)
        entry = ((number[pair] * k + atom) * n + cls).ravel()
        ones = np.bincount(entry[nz.ravel()], minlength=present.size * k * n)
        total = np.bincount(entry, minlength=present.size * k * n)
        used = np.flatnonzero(total)
        pair_of, atom_of, class_of = present[used // (k * n)], used // n % k, used % n
        step = pair_of // c * groups + atom_of // (k // groups)
        order = np.argsort(step, kind="stable")
        ones, total, step = ones[used][order], total[used][order], step[order]
        used = ((atom_of * n + class_of) * c + pair_of % c)[order]
    if flags:
        ends = np.searchsorted(step, np.arange(len(steps(tables.scheme, groups)) + 1))
    r = tables.value_range
    v = tables.values.shape[-2]
    # rows without the sign context: a sign scales a whole row half, which leaves the tilt's
    # effect on the code length unchanged (it separates out of -log2 P)
    row = (cls[None] * k + atom)[nz] * v + value_ctx[nz] // tables.scheme.sign_contexts
    # number the rows in use first: a count per (row, value) of every row would be megabytes
    rows = np.flatnonzero(np.bincount(row, minlength=n * k * v))
    number = np.zeros(n * k * v, dtype=np.int64)
    number[rows] = np.arange(rows.size)
    counts = np.bincount(number[row] * 2 * r + value_index(symbols[nz], r),
                         minlength=rows.size * 2 * r).reshape(rows.size, 2 * r)
    return _TileCounts(used, ones, total - ones, ends, rows, counts)


def _step_bits(counts: _TileCounts, flag_bits: np.ndarray) -> list[np.ndarray | None]:
    """Per coding step, the bits of its flags under each scale (``flag_bits``: scales × used
    entries, summed over the step's entries), or None for a step with no positions."""
    ends = counts.step_ends
    return [flag_bits[:, a:b].sum(1) if b > a else None for a, b in zip(ends[:-1], ends[1:])]


def _pick(step_bits: list[np.ndarray | None], flag_side_bits: np.ndarray,
          tilt_bits: np.ndarray | None, tilt_side_bits: np.ndarray) -> Adaptation:
    """The indices of least bits: ``step_bits`` (per step: bits under each scale, or None when
    the step has no positions), ``tilt_bits`` (tilts,) or None when the tile has no non-zero
    symbol; side bits per index value."""
    flags = [NEUTRAL_FLAG if bits is None else int(np.argmin(bits + flag_side_bits)) for bits in step_bits]
    tilt = NEUTRAL_TILT if tilt_bits is None else int(np.argmin(tilt_bits + tilt_side_bits))
    return Adaptation(tuple(flags), tilt)


def choose(symbols: np.ndarray, tables, quality_index: int,
           contexts: tuple[np.ndarray, np.ndarray] | None = None) -> Adaptation:
    """The adaptation that minimises the tile's ideal code length, side information included
    (formats 3 and 4: the float tables).

    Works on counts per table entry (not per symbol), so its cost grows with the tables, not
    with the image. ``contexts``: the symbols' ``scheme_contexts``, if the caller has them.
    """
    counts = _tile_counts(symbols, tables, contexts)
    q = quality_index
    prob = np.clip(tables.p_nonzero[q].reshape(-1)[counts.entries], _MIN_P, 1 - _MIN_P)
    n1, n0 = counts.ones, counts.zeros
    scaled = np.stack([scale_odds(prob, s) for s in FLAG_SCALES])
    flag_bits = -(n1 * np.log2(scaled) + n0 * np.log2(1 - scaled))  # (scales, used entries)
    tilt_bits = None
    if counts.rows.size:
        r = tables.value_range
        rows = np.maximum(tables.values[q].reshape(-1, 2 * r)[counts.rows], _MIN_P)
        n = counts.values
        tilt_bits = np.array([-(n * np.log2(rows * tilt_weights(t, r))).sum()
                              + (n.sum(1) * np.log2((rows * tilt_weights(t, r)).sum(1))).sum() for t in VALUE_TILTS])
    return _pick(_step_bits(counts, flag_bits), -np.log2(FLAG_INDEX_PROBS), tilt_bits, -np.log2(TILT_INDEX_PROBS))


# ---------------------------------------------------------------- format 5: integer arithmetic only


def side_frequencies(n: int, neutral: int) -> np.ndarray:
    """Integer frequencies of a side-information index: each of the n − 1 changes gets
    floor(2^23 / (n − 1)), 'no change' the rest (at least half)."""
    f = np.full(n, (TOTAL >> 1) // (n - 1), dtype=np.int64)
    f[neutral] = TOTAL - (n - 1) * f[0]
    return f


FLAG_INDEX_FREQUENCIES = side_frequencies(len(FLAG_SIXTEENTHS), NEUTRAL_FLAG)
TILT_INDEX_FREQUENCIES = side_frequencies(len(TILT_SIXTEENTHS), NEUTRAL_TILT)
TILT_FRACTION_BITS = 15  # tilt weights keep 15 significant bits before they multiply a row


def tilt_factors(k: int, r: int) -> np.ndarray:
    """(k/16)^j for j = 1 … R in fixed point with 24 fraction bits, rounded half up at every
    step: τ_0 = 2^24, τ_j = max(1, (k·τ_{j−1} + 8) >> 4) (int64)."""
    tau = [TOTAL]
    for _ in range(r):
        tau.append(max(1, (k * tau[-1] + 8) >> 4))
    return np.array(tau[1:], dtype=np.int64)


def tilt_frequencies(f: np.ndarray, k: int) -> np.ndarray:
    """Magnitude rows f (..., R), each summing to 2^24, tilted by (k/16)^|v|: with
    sh = max(0, bit_length(max τ) − 15), a_j = ((f_j − 1)·τ_j) >> sh (< 2^39), then
    ``normalise`` (each >= 1, summing to 2^24)."""
    f = np.asarray(f, dtype=np.int64)
    tau = tilt_factors(k, f.shape[-1])
    shift = max(0, int(bit_length(tau.max())) - TILT_FRACTION_BITS)
    return normalise(((f - 1) * tau) >> shift)


def choose_integer(symbols: np.ndarray, tables, quality_index: int,
                   contexts: tuple[np.ndarray, np.ndarray] | None = None,
                   classes=None, position_class: np.ndarray | None = None,  # noqa: ANN001
                   step_bits: list[np.ndarray | None] | None = None) -> Adaptation:
    """``choose`` for formats 5 to 7: prices every flag scale with the integer frequencies it
    would code with (``tables.frequencies``, changed by each position's block class when
    ``classes`` (a ``sccodec.block_classes.LevelClasses``) and ``position_class`` are given, then
    ``Adaptation.flag_frequencies``), the exact ideal code length, and every tilt by
    ``_tilt_bits`` (an estimate within the rounding of the tilted rows). ``step_bits``: the
    flags' bits per step and scale when the caller priced them (format 7: ``flag_scale_bits`` on
    the frequencies the pairs change); then only the tilt is priced here. Encoder only: the
    float log2 decides what is written, never how it is read."""
    n = 1 if classes is None else classes.classes
    counts = _tile_counts(symbols, tables, contexts, position_class, n, flags=step_bits is None)
    integer = tables.frequencies(quality_index)
    k, c = integer.nonzero.shape
    if step_bits is None:
        atom, ctx = counts.entries // (n * c), counts.entries % c
        f1 = integer.nonzero[atom, ctx]
        if classes is not None:
            f1 = classes.nonzero(f1, counts.entries // c % n, ctx)
        scaled = np.stack([scale_odds_frequency(f1, m) for m in FLAG_SIXTEENTHS])
        flag_bits = -(counts.ones * np.log2(scaled) + counts.zeros * np.log2(TOTAL - scaled)) \
            + PRECISION * (counts.ones + counts.zeros)
        step_bits = _step_bits(counts, flag_bits)
    tilt_bits = None
    if counts.rows.size:
        r = tables.value_range
        n_v = counts.values[:, r:] + counts.values[:, :r][:, ::-1]  # per |v| = 1 … R
        v = integer.magnitudes.shape[-2]
        weights = (integer.magnitudes.reshape(-1, r)[counts.rows % (k * v)] - 1).astype(np.float64)
        if classes is not None:
            weights *= classes.magnitude_factor[counts.rows // (k * v), counts.rows % v]
        tilt_bits = _tilt_bits(weights, n_v)
    return _pick(step_bits, PRECISION - np.log2(FLAG_INDEX_FREQUENCIES), tilt_bits,
                 PRECISION - np.log2(TILT_INDEX_FREQUENCIES))


def _tilt_bits(weights: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(tilts,): the code length, up to a constant shared by all tilts, of magnitudes counted
    ``counts`` (rows, R) in rows whose frequencies before the tilt are proportional to
    ``weights`` (rows, R; f − 1, times the class factors). A tilt t multiplies the weight of
    |v| = j by t^j, so with W_t = weights · (t^1 … t^R) per row, bits(t) = Σ_rows n·log2 W_t −
    log2 t · Σ counts·j: one small matrix product for all tilts. The integer rounding of the
    tilted rows is left out: on held-out tiles the price differences between tilts moved by at
    most about 1e-4 bit per symbol, by up to a few thousandths where counts fall on a row's
    smallest entries (frequencies 1–2)."""
    r = weights.shape[-1]
    tilts = np.array(VALUE_TILTS)
    magnitude = np.arange(1, r + 1)
    totals = weights @ (tilts[None, :] ** magnitude[:, None])  # (rows, tilts)
    return counts.sum(1) @ np.log2(totals) - np.log2(tilts) * float((counts @ magnitude).sum())


#: Pricing from frequencies: log2-odds histogram bins per bit of log2-odds (format 7's flags)
LOG_ODDS_BINS_PER_BIT = 16


def flag_scale_bits(frequencies: list[np.ndarray], flags: list[np.ndarray]) -> list[np.ndarray | None]:
    """Per coding step, the estimated bits of its flags under each odds scale of
    ``FLAG_SIXTEENTHS``, from each flag's frequency f(x != 0) before the adaptation
    (``frequencies``, int64, one array per step) and its value (``flags``, bool, same shapes);
    None for a step with no flags. Encoder only (format 7, whose frequencies differ flag by flag).

    Scaling the odds by k/16 adds log2(k/16) to every flag's log2-odds x, so each step's flags
    are counted in bins of x 1/16 bit wide (ones, zeros, and their mean x) and each bin is priced
    at its mean: a few thousand bins per tile instead of a price per flag and scale. The coder's
    clamp to [1, 2^24 − 1] is kept (a scaled log2-odds stops at ±log2(2^24 − 1)); its rounding to
    integers is left out, which moves a price by a few millionths of a bit per flag, and by up
    to about a hundredth for frequencies within a few units of the clamp."""
    sizes = [f.size for f in frequencies]
    if not sum(sizes):
        return [None] * len(sizes)
    f1 = np.concatenate([f.ravel() for f in frequencies]).astype(np.float64)
    ones = np.concatenate([f.ravel() for f in flags])
    x = np.log2(f1) - np.log2(TOTAL - f1)  # in (-24, 24)
    width = 2 * PRECISION * LOG_ODDS_BINS_PER_BIT + 1
    step = np.repeat(np.arange(len(sizes)), sizes)
    cell = step * width + np.rint((x + PRECISION) * LOG_ODDS_BINS_PER_BIT).astype(np.int64)
    total = np.bincount(cell, minlength=len(sizes) * width)
    used = np.flatnonzero(total)
    n1 = np.bincount(cell[ones], minlength=total.size)[used]
    n = total[used]
    mean = np.bincount(cell, weights=x, minlength=total.size)[used] / n
    limit = np.log2(TOTAL - 1)
    shifted = np.clip(mean[None, :] + np.log2(np.array(FLAG_SIXTEENTHS) / 16)[:, None], -limit, limit)  # (scales, bins)
    bits = n1 * np.logaddexp2(0, -shifted) + (n - n1) * np.logaddexp2(0, shifted)
    owner = used // width
    sums = np.stack([np.bincount(owner, weights=row, minlength=len(sizes)) for row in bits], axis=1)
    return [sums[i] if size else None for i, size in enumerate(sizes)]
