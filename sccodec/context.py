"""Integer contexts for the sparse-code symbols: which probability table codes which symbol.

Principle 1 of docs/design.md: the table choice depends only on integers (already-decoded
symbols and the header), never on floating point, so a file decodes identically on any
device. A weights file names the scheme its tables were fitted for (``SCHEMES``); both
schemes split the positions into phases and the K atoms into G consecutive groups, and code
step ``(phase, group)`` in the order of ``steps``. A symbol's flag context picks its P(non-zero)
table, its value context the distribution of its value when non-zero; both read only
symbols of earlier steps.

``checkerboard`` (.scv format 1, sccodec <= 0.3; training's rate proxy): 2 phases ((i + j) even
first). Flag context ``S * NUM_ACTIVITY + A``:

    S  (same atom)   phase 1: how many of the 4 neighbours (all phase 0) are non-zero, 0..4;
                     phase 0: 5 ("unknown")
    A  (activity)    non-zero count over all atoms of earlier steps in the 3x3 window,
                     bucketed on a log2 scale into NUM_ACTIVITY levels
    value context = A

``quad`` (.scv formats 2 and 3, sccodec 0.4): 4 phases on the 2x2 lattice, (even, even),
(odd, odd), (even, odd), (odd, even), so that later phases see decoded neighbours on more
sides:

    A  as above, over the decoded part of the 3x3 window
    M  (same atom)   sum of |symbol| over the decoded 8-neighbours, bucketed (MAGNITUDE_EDGES)
    flag context  = row(phase, M) * NUM_ACTIVITY + A     (phase 0 has no M: one row)
    value context = phase 0: A // 2;  later phases: 4 + bucket(M)

Why quad: with the same network, Kodak files are 3.2% smaller (BD-rate) than with
checkerboard tables. With a
checkerboard half the symbols see no decoded neighbour of their own atom, with the 2x2 order
a quarter; and the magnitudes of those neighbours predict both whether the atom fires and
how large it is. The significance map costs most of the bits at low rates, the values at
high rates.

``nested`` (.scv formats 4 and 5, sccodec >= 0.5): the quad order, with its first phase (even, even)
coded in the quad order again at stride 2, so only 1/16 of the positions see no decoded
neighbour of their own atom (7 phases):

    phases 0-3   (i, j) = (0, 0), (2, 2), (0, 2), (2, 0) mod 4: neighbours at distance 2
    phases 4-6   quad's phases 1-3: neighbours at distance 1
    A  as quad's, over a 5x5 window in phases 0-3 (a 3x3 one holds nothing decoded there)
    M  as quad's, over the distance-2 ring in phases 1-3, finer buckets (NESTED_MAGNITUDE_EDGES)
    flag context  = row(phase, M) * NUM_ACTIVITY + A
    value context = row * SIGN_CONTEXTS + sign context; row = A // 2 in phase 0, else 4 + M;
                    sign context = 0 in phase 0, else 1 + sign(sum of the decoded neighbours'
                    values) + 1

Its value tables are symmetric in the sign (P(|v|) per row) and the sign has its own small
table per (atom, sign context) (``sccodec.entropy.SymbolTables.signs``): neighbouring codes of
an atom tend to share their sign. Same network, 8 held-out training photos: 5.2% (lowest
level) to 1.1% (top level) fewer bits than quad.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

ACTIVITY_EDGES = (1, 2, 4, 8, 16, 32, 64)
NUM_ACTIVITY = len(ACTIVITY_EDGES) + 1
NUM_SAME = 6
NUM_CONTEXTS = NUM_SAME * NUM_ACTIVITY  # checkerboard flag contexts (training's rate proxy)
MAGNITUDE_EDGES = (1, 2, 3, 5, 8, 13)
NUM_MAGNITUDE = len(MAGNITUDE_EDGES) + 1
NESTED_MAGNITUDE_EDGES = (1, 2, 3, 5, 8, 13, 21, 34)
NUM_NESTED_MAGNITUDE = len(NESTED_MAGNITUDE_EDGES) + 1
SIGN_CONTEXTS = 4  # nested: unknown (phase 0), neighbours' values sum < 0, = 0, > 0

_CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))
_DIAG_CENTRE = ((0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))
_RING = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
_WINDOW = ((0, 0),) + _RING
_RING2 = tuple((2 * dy, 2 * dx) for dy, dx in _RING)
_WINDOW5 = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3))


def _window_sum(x: np.ndarray, offsets: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Sum of x shifted by each (dy, dx) offset, zero outside the map, at every position."""
    return _window_sum_at(x, offsets, (0, 0, 1)).reshape(x.shape)


def _window_sum_at(x: np.ndarray, offsets: tuple[tuple[int, int], ...], lattice: tuple[int, int, int]
                   ) -> np.ndarray:
    """Sum of x shifted by each (dy, dx) offset (zero outside the map), read only at the positions
    of a lattice (first row, first column, stride): (..., n) in row-major order. Why: a coding
    step's positions are a sixteenth or a quarter of the map, and the decoder needs its contexts
    nowhere else."""
    h, w = x.shape[-2:]
    oy, ox, stride = lattice
    rows, cols = len(range(oy, h, stride)), len(range(ox, w, stride))
    m = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    padded = np.zeros((*x.shape[:-2], h + 2 * m, w + 2 * m), dtype=np.int32)
    padded[..., m : m + h, m : m + w] = x
    out = np.zeros((*x.shape[:-2], rows, cols), dtype=np.int32)
    for dy, dx in offsets:
        y, x0 = m + oy + dy, m + ox + dx
        out += padded[..., y : y + stride * rows : stride, x0 : x0 + stride * cols : stride]
    return out.reshape(*x.shape[:-2], rows * cols)


def _earlier_sum(x: np.ndarray, phases: np.ndarray, offsets: tuple[tuple[int, int], ...],
                 same_phase: np.ndarray | None = None) -> np.ndarray:
    """Sum over the offsets of x at each neighbour whose phase comes before the position's own,
    plus ``same_phase`` (same shape as x) at neighbours in the same phase; zero outside the map.
    Every position at once: what the coding steps would read there, one step at a time."""
    h, w = x.shape[-2:]
    m = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    padded_phase = np.full((h + 2 * m, w + 2 * m), np.iinfo(np.int32).max, dtype=np.int32)
    padded_phase[m : m + h, m : m + w] = phases
    padded = np.zeros((*x.shape[:-2], h + 2 * m, w + 2 * m), dtype=np.int32)
    padded[..., m : m + h, m : m + w] = x
    if same_phase is not None:
        padded_same = np.zeros_like(padded)
        padded_same[..., m : m + h, m : m + w] = same_phase
    out = np.zeros(x.shape, dtype=np.int32)
    for dy, dx in offsets:
        rows, cols = slice(m + dy, m + dy + h), slice(m + dx, m + dx + w)
        neighbour = padded_phase[rows, cols]
        out += padded[..., rows, cols] * (neighbour < phases)
        if same_phase is not None:
            out += padded_same[..., rows, cols] * (neighbour == phases)
    return out


def _bucket(x: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    """Bucket of each count x >= 0 (x >= edges[i] -> past bucket i); a table lookup, several
    times faster than searchsorted on the coder's maps."""
    top = edges[-1]
    table = np.searchsorted(np.array(edges), np.arange(top + 1), side="right").astype(np.int32)
    return table[np.minimum(x, top)]


def value_index(v: np.ndarray, r: int) -> np.ndarray:
    """A value's column in its table row: -R..-1, 1..R -> 0..2R-1 (clipped: the ±R bins
    double as escape symbols)."""
    v = np.clip(v, -r, r)
    return np.where(v < 0, v + r, v + r - 1).astype(np.int32)


def parity(h: int, w: int) -> np.ndarray:
    """(h, w) int map: 0 for anchors (coded first), 1 for the rest."""
    return (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2


def activity_bucket(count: np.ndarray) -> np.ndarray:
    return _bucket(count, ACTIVITY_EDGES)


def group_contexts(per_group: np.ndarray, group_nz: np.ndarray, group: int) -> np.ndarray:
    """Checkerboard flag contexts of one group, (..., K/G, h, w) int32, at both parities.

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
    """Checkerboard flag context (same shape, int32) of every symbol in a (..., K, h, w) array.

    Vectorised over a batch: training's rate proxy calls it on every batch.
    """
    *lead, k, h, w = symbols.shape
    nz = (symbols != 0).astype(np.int32).reshape(*lead, groups, k // groups, h, w)
    per_group = nz.sum(-3)
    per_atom = [group_contexts(per_group, nz[..., g, :, :, :], g) for g in range(groups)]
    return np.concatenate(per_atom, axis=-3)


def lattice_phases(lattices: tuple[tuple[int, int, int], ...], h: int, w: int) -> np.ndarray:
    """(h, w) phase map: phase p at the positions of ``lattices[p]`` (first row, first column,
    stride); the lattices of a scheme cover every position once."""
    phases = np.full((h, w), -1, dtype=np.int64)
    for p, (row, col, stride) in enumerate(lattices):
        phases[row::stride, col::stride] = p
    return phases


@dataclass(frozen=True, eq=False)
class PhaseSums:
    """What every step of one phase reads from the earlier phases, at the phase's n positions (the
    lattice schemes), kept by the decoder through the phase's steps."""

    done: np.ndarray  # (h, w) bool: the positions of earlier phases
    activity: np.ndarray  # (n,) non-zero count over the activity window, earlier phases only


def _phase_sums(scheme: "Quad | Nested", per_group: np.ndarray, phase: int, window: tuple[tuple[int, int], ...]
                ) -> PhaseSums:
    done = phase_map(scheme, *per_group.shape[-2:]) < phase
    return PhaseSums(done, _window_sum_at(per_group.sum(0, dtype=np.int32) * done, window, scheme.lattices[phase]))


def _step_activity(scheme: "Quad | Nested", sums: PhaseSums, per_group: np.ndarray, phase: int, group: int
                   ) -> np.ndarray:
    """(1, n) activity buckets of step (phase, group): the phase's count from earlier phases plus
    the earlier groups' count at the centre. Exact because no window holds another position of
    its own phase (lattice strides 2 and 4 against window half-widths 1 and 2)."""
    centre = per_group[:group].sum(0, dtype=np.int32)
    return activity_bucket(sums.activity + phase_positions(scheme, *centre.shape)[phase].take(centre))[None]


@dataclass(frozen=True)
class Checkerboard:
    name: ClassVar[str] = "checkerboard"
    phases: ClassVar[int] = 2
    flag_contexts: ClassVar[int] = NUM_CONTEXTS
    value_contexts: ClassVar[int] = NUM_ACTIVITY  # rows of the value table per atom
    sign_contexts: ClassVar[int] = 1  # 1: the value rows carry the sign, no sign table

    def phase(self, h: int, w: int) -> np.ndarray:
        return parity(h, w)

    def phase_sums(self, grouped: np.ndarray, per_group: np.ndarray, phase: int) -> None:
        """The checkerboard keeps no sums per phase (``Quad.phase_sums``)."""
        return None

    def step_contexts(self, grouped: np.ndarray, per_group: np.ndarray, phase: int, group: int,
                      sums: PhaseSums | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(flag, value) contexts (K/G, n) of ``group``'s symbols at the n positions of ``phase``,
        in row-major order (the order the coder reads them).

        grouped: (G, K/G, h, w) symbols, per_group: (G, h, w) their non-zero counts; entries of
        later steps may hold anything (the encoder's full array, the decoder's zeros). ``sums``:
        the phase's ``phase_sums`` where the caller keeps them (computed here otherwise).
        """
        flag = group_contexts(per_group, (grouped[group] != 0).astype(np.int32), group)
        flag = flag[:, phase_map(self, *grouped.shape[-2:]) == phase]
        return flag, flag % NUM_ACTIVITY

    def all_contexts(self, grouped: np.ndarray, per_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``step_contexts`` of every step at once, each at its own positions: (G, K/G, h, w) each."""
        nz = (grouped != 0).astype(np.int32)
        flag = np.stack([group_contexts(per_group, nz[g], g) for g in range(grouped.shape[0])])
        return flag, flag % NUM_ACTIVITY


@dataclass(frozen=True)
class Quad:
    name: ClassVar[str] = "quad"
    phases: ClassVar[int] = 4
    flag_contexts: ClassVar[int] = (1 + 3 * NUM_MAGNITUDE) * NUM_ACTIVITY
    value_contexts: ClassVar[int] = 4 + NUM_MAGNITUDE
    sign_contexts: ClassVar[int] = 1

    #: each phase's positions (first row, first column, stride): (even, even), (odd, odd),
    #: (even, odd), (odd, even)
    lattices: ClassVar[tuple[tuple[int, int, int], ...]] = ((0, 0, 2), (1, 1, 2), (0, 1, 2), (1, 0, 2))

    def phase(self, h: int, w: int) -> np.ndarray:
        return lattice_phases(self.lattices, h, w)

    def phase_sums(self, grouped: np.ndarray, per_group: np.ndarray, phase: int) -> PhaseSums:
        """The earlier phases' positions and activity counts that ``phase``'s steps read."""
        return _phase_sums(self, per_group, phase, _WINDOW)

    def step_contexts(self, grouped: np.ndarray, per_group: np.ndarray, phase: int, group: int,
                      sums: PhaseSums | None = None) -> tuple[np.ndarray, np.ndarray]:
        """As ``Checkerboard.step_contexts``. The 8 neighbours of a position all lie in other
        phases, so 'decoded' is: earlier phases anywhere, plus earlier groups at the centre."""
        sums = self.phase_sums(grouped, per_group, phase) if sums is None else sums
        activity = _step_activity(self, sums, per_group, phase, group)
        shape = (grouped.shape[1], activity.size)
        if phase == 0:
            return np.broadcast_to(activity, shape), np.broadcast_to(activity // 2, shape)
        decoded = np.abs(grouped[group]) * sums.done
        magnitude = _bucket(_window_sum_at(decoded, _RING, self.lattices[phase]), MAGNITUDE_EDGES)
        row = 1 + (phase - 1) * NUM_MAGNITUDE + magnitude
        return row * NUM_ACTIVITY + activity, 4 + magnitude

    def all_contexts(self, grouped: np.ndarray, per_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``step_contexts`` of every step at once, each at its own positions: (G, K/G, h, w) each."""
        phases = phase_map(self, *grouped.shape[-2:])
        activity = activity_bucket(_activity_counts(per_group, phases, _WINDOW))[:, None]
        magnitude = _bucket(_earlier_sum(np.abs(grouped), phases, _RING), MAGNITUDE_EDGES)
        row = 1 + (phases - 1) * NUM_MAGNITUDE + magnitude
        first = phases == 0
        return (np.where(first, activity, row * NUM_ACTIVITY + activity),
                np.where(first, activity // 2, 4 + magnitude))


@dataclass(frozen=True)
class Nested:
    name: ClassVar[str] = "nested"
    phases: ClassVar[int] = 7
    flag_contexts: ClassVar[int] = (1 + 6 * NUM_NESTED_MAGNITUDE) * NUM_ACTIVITY
    value_contexts: ClassVar[int] = 4 + NUM_NESTED_MAGNITUDE
    sign_contexts: ClassVar[int] = SIGN_CONTEXTS

    #: quad's first phase in quad order at stride 2, then quad's later phases
    lattices: ClassVar[tuple[tuple[int, int, int], ...]] = (
        (0, 0, 4), (2, 2, 4), (0, 2, 4), (2, 0, 4)) + Quad.lattices[1:]

    def phase(self, h: int, w: int) -> np.ndarray:
        return lattice_phases(self.lattices, h, w)

    def phase_sums(self, grouped: np.ndarray, per_group: np.ndarray, phase: int) -> PhaseSums:
        """As ``Quad.phase_sums``; phases 0-3 (stride-4 lattices that together make the (even,
        even) positions, whose decoded neighbours lie 2 apart) count over the 5x5 window."""
        return _phase_sums(self, per_group, phase, _WINDOW5 if phase < 4 else _WINDOW)

    def step_contexts(self, grouped: np.ndarray, per_group: np.ndarray, phase: int, group: int,
                      sums: PhaseSums | None = None) -> tuple[np.ndarray, np.ndarray]:
        """As ``Quad.step_contexts``; the value context also holds the sign context."""
        sums = self.phase_sums(grouped, per_group, phase) if sums is None else sums
        activity = _step_activity(self, sums, per_group, phase, group)
        shape = (grouped.shape[1], activity.size)
        if phase == 0:
            return np.broadcast_to(activity, shape), np.broadcast_to(activity // 2 * SIGN_CONTEXTS, shape)
        ring, lattice = _RING2 if phase < 4 else _RING, self.lattices[phase]  # phases 0-3: neighbours 2 apart
        decoded = grouped[group] * sums.done
        magnitude = _bucket(_window_sum_at(np.abs(decoded), ring, lattice), NESTED_MAGNITUDE_EDGES)
        sign = 2 + np.sign(_window_sum_at(decoded, ring, lattice))
        row = 1 + (phase - 1) * NUM_NESTED_MAGNITUDE + magnitude
        return row * NUM_ACTIVITY + activity, (4 + magnitude) * SIGN_CONTEXTS + sign

    def all_contexts(self, grouped: np.ndarray, per_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``step_contexts`` of every step at once, each at its own positions: (G, K/G, h, w) each."""
        phases = phase_map(self, *grouped.shape[-2:])

        def by_lattice(count, x: np.ndarray, window: tuple[tuple[int, int], ...]) -> np.ndarray:
            """``count`` over the fine lattice's neighbourhoods, then over the stride-2 lattice's
            (phases 0-3, the (even, even) positions): there only even offsets can reach an earlier
            phase (odd positions are in phases 4-6), so its 5x5 window and distance-2 ring are
            the 3x3 window and ring of the subsampled map, at a quarter of the positions."""
            out = count(x, phases, window)
            out[..., ::2, ::2] = count(x[..., ::2, ::2], phases[::2, ::2], window)
            return out

        activity = activity_bucket(by_lattice(_activity_counts, per_group, _WINDOW))[:, None]
        magnitude = _bucket(by_lattice(_earlier_sum, np.abs(grouped), _RING), NESTED_MAGNITUDE_EDGES)
        sign = 2 + np.sign(by_lattice(_earlier_sum, grouped, _RING))
        row = 1 + (phases - 1) * NUM_NESTED_MAGNITUDE + magnitude
        first = phases == 0
        return (np.where(first, activity, row * NUM_ACTIVITY + activity),
                np.where(first, activity // 2 * SIGN_CONTEXTS, (4 + magnitude) * SIGN_CONTEXTS + sign))


def _activity_counts(per_group: np.ndarray, phases: np.ndarray, window: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(G, h, w): the non-zero count over ``window`` that each group's coding step reads at
    every position: all atoms of earlier phases, the earlier groups of the position's own phase."""
    earlier_groups = np.cumsum(per_group, axis=0, dtype=np.int32) - per_group
    total = per_group.sum(0, dtype=np.int32)
    return np.stack([_earlier_sum(total, phases, window, earlier_groups[g]) for g in range(per_group.shape[0])])


Scheme = Checkerboard | Quad | Nested
SCHEMES: dict[str, Scheme] = {s.name: s for s in (Checkerboard(), Quad(), Nested())}
LEGACY_SCHEME = "checkerboard"  # weights files that name no scheme


@functools.lru_cache(maxsize=16)
def phase_map(scheme: Scheme, h: int, w: int) -> np.ndarray:
    """``scheme.phase(h, w)``, read-only and computed once per tile shape: every coding step of a
    tile asks for it."""
    phases = scheme.phase(h, w)
    phases.setflags(write=False)
    return phases


@dataclass(frozen=True, eq=False)
class PhasePositions:
    """Where one phase's symbols lie in an (h, w) map, to read and write them in coding order
    (row-major). On a lattice scheme the positions are a strided slice, read and written
    through a view, which is cheaper than the boolean mask the checkerboard keeps."""

    mask: np.ndarray  # (h, w) bool
    window: tuple[slice, slice] | None  # the lattice's slice, None for the checkerboard
    grid: tuple[int, int]  # (rows, columns) of the lattice

    def take(self, a: np.ndarray) -> np.ndarray:
        """(..., n): ``a`` (..., h, w) at the phase's positions (a copy, or a view where the
        lattice is one row or column: not to be written)."""
        if self.window is None:
            return a[..., self.mask]
        return a[(..., *self.window)].reshape(*a.shape[:-2], -1)

    def put(self, a: np.ndarray, values: np.ndarray) -> None:
        """Write ``values`` (..., n) into ``a`` (..., h, w) at the phase's positions."""
        if self.window is None:
            a[..., self.mask] = values
        else:
            a[(..., *self.window)] = values.reshape(*values.shape[:-1], *self.grid)


@functools.lru_cache(maxsize=16)
def phase_positions(scheme: Scheme, h: int, w: int) -> tuple[PhasePositions, ...]:
    """Each phase's ``PhasePositions`` on an h × w tile, computed once per tile shape."""
    phases = phase_map(scheme, h, w)
    lattices = getattr(scheme, "lattices", None)
    out = []
    for p in range(scheme.phases):
        mask = phases == p
        mask.setflags(write=False)
        if lattices is None:
            out.append(PhasePositions(mask, None, (0, 0)))
            continue
        row, col, stride = lattices[p]
        out.append(PhasePositions(mask, (slice(row, None, stride), slice(col, None, stride)),
                                  (len(range(row, h, stride)), len(range(col, w, stride)))))
    return tuple(out)


def steps(scheme: Scheme, groups: int) -> list[tuple[int, int]]:
    """(phase, group) in coding order: phase by phase, group by group within a phase."""
    return [(p, g) for p in range(scheme.phases) for g in range(groups)]


def scheme_contexts(scheme: Scheme, symbols: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(flag, value) context of every symbol of a (K, h, w) array, as the coder sees them.

    All steps at once (the encoder, rate-aware rounding and table fitting know every symbol);
    ``stepwise_contexts`` computes the same the decoder's way, and the tests hold them equal.
    Why: the step loop re-read each step's neighbourhoods, 3.5x the time (kodim01 at level 6).
    """
    k, h, w = symbols.shape
    grouped = symbols.reshape(groups, k // groups, h, w)
    per_group = (grouped != 0).sum(1, dtype=np.int32)
    flag, value = scheme.all_contexts(grouped, per_group)
    return (flag.reshape(symbols.shape).astype(np.int32, copy=False),
            value.reshape(symbols.shape).astype(np.int32, copy=False))


def stepwise_contexts(scheme: Scheme, symbols: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """``scheme_contexts`` one coding step at a time, as the decoder computes them."""
    k, h, w = symbols.shape
    grouped = symbols.reshape(groups, k // groups, h, w)
    per_group = (grouped != 0).sum(1, dtype=np.int32)
    at = phase_positions(scheme, h, w)
    flag = np.zeros(grouped.shape, dtype=np.int32)
    value = np.zeros(grouped.shape, dtype=np.int32)
    sums = None
    for p, g in steps(scheme, groups):
        sums = scheme.phase_sums(grouped, per_group, p) if g == 0 else sums  # as the decoder: once per phase
        for out, contexts in zip((flag, value), scheme.step_contexts(grouped, per_group, p, g, sums)):
            at[p].put(out[g], contexts)
    return flag.reshape(symbols.shape), value.reshape(symbols.shape)
