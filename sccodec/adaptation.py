"""Per-tile adaptation of the static tables (.scv format 3): a few integers of side information
that fit the model's tables to one image.

    symbols ─scheme_contexts─▶ counts per table entry ─choose─▶ Adaptation(flags[step], tilt)
    P(non-zero) ─odds × FLAG_SCALES[flags[step]]─▶ P'      value row ─× VALUE_TILTS[tilt]^|v|─▶ row'

Why: the tables are averages over the training photos, but images differ in how many atoms
fire and how large the values run. Scaling the odds of every P(non-zero) of a coding step
(phase × atom group) and tilting the value distributions towards larger or smaller
magnitudes saves 0.2–1.1% of the file per level on held-out training photos
(``bench/adaptation.py``), at no cost to the network.

Both transforms use only IEEE-754 multiplications, additions and divisions of float64 (each
rounded exactly the same way everywhere), on factors that are exact binary fractions, so the
decoder rebuilds bit-identical probabilities on any machine (docs/design.md, principle 1);
constriction normalises the tilted value rows itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sccodec.context import phase_map, scheme_contexts, steps, value_index

#: Odds factors of P(non-zero), one chosen per coding step; index NEUTRAL_FLAG leaves the table.
FLAG_SCALES = tuple(k / 16 for k in (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 28, 32))
NEUTRAL_FLAG = FLAG_SCALES.index(1.0)
#: Value rows are multiplied by tilt^|v| (> 1: larger magnitudes), one tilt per tile.
VALUE_TILTS = tuple(k / 16 for k in (11, 12, 13, 14, 15, 16, 17, 18, 19))
NEUTRAL_TILT = VALUE_TILTS.index(1.0)


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


def choose(symbols: np.ndarray, tables, quality_index: int,
           contexts: tuple[np.ndarray, np.ndarray] | None = None) -> Adaptation:
    """The adaptation that minimises the tile's ideal code length, side information included.

    Works on counts per table entry (not per symbol), so its cost grows with the tables, not
    with the image. ``contexts``: the symbols' ``scheme_contexts``, if the caller has them.
    """
    k, h, w = symbols.shape
    groups, q = tables.groups, quality_index
    flag_ctx, value_ctx = contexts if contexts is not None else scheme_contexts(tables.scheme, symbols, groups)
    nz = symbols != 0
    atom = np.broadcast_to(np.arange(k)[:, None, None], symbols.shape)
    phase = phase_map(tables.scheme, h, w)
    c = tables.p_nonzero.shape[-1]
    # every symbol's table entry, per phase: (phase, atom, context). Sorted, the entries of one
    # coding step (phase, group of atoms) are one run, and the runs come in coding order.
    entry = ((phase * k + atom) * c + flag_ctx).ravel()
    ones = np.bincount(entry[nz.ravel()], minlength=tables.scheme.phases * k * c)
    total = np.bincount(entry, minlength=tables.scheme.phases * k * c)
    used = np.flatnonzero(total)
    prob = np.clip(tables.p_nonzero[q].reshape(-1)[used % (k * c)], _MIN_P, 1 - _MIN_P)
    n1, n0 = ones[used], total[used] - ones[used]
    scaled = np.stack([scale_odds(prob, s) for s in FLAG_SCALES])
    cost = -(n1 * np.log2(scaled) + n0 * np.log2(1 - scaled))  # (scales, used entries)
    step = used // (k * c) * groups + used % (k * c) // c // (k // groups)
    ends = np.searchsorted(step, np.arange(len(steps(tables.scheme, groups)) + 1))
    side_flag = -np.log2(FLAG_INDEX_PROBS)
    flags = [int(np.argmin(cost[:, a:b].sum(1) + side_flag)) if b > a else NEUTRAL_FLAG  # no positions
             for a, b in zip(ends[:-1], ends[1:])]
    tilt = NEUTRAL_TILT
    if nz.any():
        r = tables.value_range
        v = tables.values.shape[-2]
        # rows without the sign factor: a sign table scales a whole row half, which leaves the
        # tilt's effect on the code length unchanged (it separates out of -log2 P)
        row = atom[nz] * v + value_ctx[nz] // tables.scheme.sign_contexts
        counts = np.bincount(row * 2 * r + value_index(symbols[nz], r), minlength=k * v * 2 * r).reshape(k * v, 2 * r)
        used = np.flatnonzero(counts.sum(1))
        rows = np.maximum(tables.values[q].reshape(k * v, 2 * r)[used], _MIN_P)
        n = counts[used]
        bits = [-(n * np.log2(rows * tilt_weights(t, r))).sum()
                + (n.sum(1) * np.log2((rows * tilt_weights(t, r)).sum(1))).sum() for t in VALUE_TILTS]
        tilt = int(np.argmin(np.array(bits) - np.log2(TILT_INDEX_PROBS)))
    return Adaptation(tuple(flags), tilt)
