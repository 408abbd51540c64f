"""Integer contexts for the sparse-code symbols: which probability table codes which symbol.

Principle 1 of ../shared/DESIGN.md: the table choice depends only on integers (already-decoded
symbols and the header), never on floating point, so a file decodes identically on any
device. One NumPy implementation serves the entropy coder and training (which moves the small
integer array to the host: cheaper than keeping two implementations in step).

Coding order: ``2 * G`` steps. Positions are split in a checkerboard (pass 0: anchors with
``(i + j)`` even, pass 1: the rest) and the K atoms in G consecutive groups; step
``pass * G + g`` codes group g at the positions of that pass. Every symbol's context reads
only symbols of earlier steps:

    S  (same atom)   pass 1: how many of the 4 neighbours (all anchors) are non-zero, 0..4;
                     pass 0: 5 ("unknown")
    A  (activity)    non-zero count over all atoms of earlier steps in the 3x3 window,
                     bucketed on a log2 scale into NUM_ACTIVITY levels
    ctx = S * NUM_ACTIVITY + A          (NUM_CONTEXTS values)

The significance map (which atoms are non-zero) costs most of the bits of a sparse code
(BENCHMARK.md calibration); S and A are what makes it cheap.
"""
from __future__ import annotations

import numpy as np

ACTIVITY_EDGES = (1, 2, 4, 8, 16, 32, 64)
NUM_ACTIVITY = len(ACTIVITY_EDGES) + 1
NUM_SAME = 6
NUM_CONTEXTS = NUM_SAME * NUM_ACTIVITY

_CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DIAG_CENTRE = ((0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))


def _window_sum(x: np.ndarray, offsets: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Sum of x shifted by each (dy, dx) offset, zero outside the map."""
    h, w = x.shape[-2:]
    padded = np.zeros((*x.shape[:-2], h + 2, w + 2), dtype=np.int32)
    padded[..., 1:-1, 1:-1] = x
    out = np.zeros(x.shape, dtype=np.int32)
    for dy, dx in offsets:
        out += padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    return out


def parity(h: int, w: int) -> np.ndarray:
    """(h, w) int map: 0 for anchors (coded first), 1 for the rest."""
    return (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2


def activity_bucket(count: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.array(ACTIVITY_EDGES), count, side="right").astype(np.int32)


def group_contexts(per_group: np.ndarray, group_nz: np.ndarray, group: int) -> np.ndarray:
    """Contexts of the atoms of one group, (..., K/G, h, w) int32, at both parities.

    per_group: (..., G, h, w) non-zero counts per atom group; group_nz: (..., K/G, h, w) the
    group's own 0/1 significance map. Only entries of earlier coding steps are read.
    """
    h, w = per_group.shape[-2:]
    par = parity(h, w)
    earlier = per_group[..., :group, :, :].sum(-3)
    anchors_done = per_group.sum(-3) * (1 - par)
    activity = activity_bucket(_window_sum(earlier, _DIAG_CENTRE) + par * _window_sum(anchors_done, _CROSS))
    same = np.where(par == 1, _window_sum(group_nz, _CROSS), NUM_SAME - 1)
    return (same * NUM_ACTIVITY + activity[..., None, :, :]).astype(np.int32)


def contexts(symbols: np.ndarray, groups: int) -> np.ndarray:
    """Context index (same shape, int32) of every symbol in a (..., K, h, w) integer array."""
    *lead, k, h, w = symbols.shape
    nz = (symbols != 0).astype(np.int32).reshape(*lead, groups, k // groups, h, w)
    per_group = nz.sum(-3)
    per_atom = [group_contexts(per_group, nz[..., g, :, :, :], g) for g in range(groups)]
    return np.concatenate(per_atom, axis=-3)


def coding_steps(groups: int) -> list[tuple[int, int]]:
    """(pass, group) in coding order: all anchors group by group, then the rest."""
    return [(p, g) for p in (0, 1) for g in range(groups)]
