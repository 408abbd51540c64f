"""Integer symbols <-> ANS words, with static tables from the weights file.

    symbols (K,h,w) ─contexts─▶ table index per symbol ─▶ constriction AnsCoder ─▶ uint32 words

No neural network is involved: the tables are data (computed at export and stored in the
weights file) and the contexts are integer functions of already-decoded symbols, so a file
parses identically on every device (docs/design.md, principle 1). Coding runs in
``phases·G`` steps of the tables' context scheme (``sccodec.context``); in each step one
vectorised call codes the significance flags and one codes the values of the non-zero symbols
(docs/design.md, principle 5). With ``adaptive=True`` (.scv formats 3 and 4) a tile's stream
starts with its ``sccodec.adaptation.Adaptation``, which adjusts the tables to the tile.

With ``integer=True`` (.scv format 5) every distribution is an integer frequency table
(``sccodec.frequencies``, adapted by integer arithmetic) that constriction is made to use
exactly (``coder_rows``), and a value is coded as its magnitude and then its sign: parsing
involves no float computation at all (docs/format.md, section 12). Format 6 changes every
frequency by its block's class (``sccodec.block_classes``), format 7 also each flag's by the
atoms already firing around it (``sccodec.atom_pairs``), whose step flags are then read in
batches of atoms.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import constriction
import numpy as np

from sccodec.adaptation import (FLAG_INDEX_FREQUENCIES, FLAG_INDEX_PROBS, TILT_INDEX_FREQUENCIES, TILT_INDEX_PROBS,
                                Adaptation, choose, choose_integer, flag_scale_bits)
from sccodec.context import (LEGACY_SCHEME, SCHEMES, PhaseSums, Scheme, phase_map, phase_positions, scheme_contexts,
                             steps, value_index)
from sccodec.atom_pairs import LevelPairs
from sccodec.block_classes import LevelClasses
from sccodec.frequencies import TOTAL, IntegerTables

CODER_VERSION = (0, 5)  # output is stable within a minor release of 0.x; recorded in every file


@dataclass(frozen=True)
class TileCoding:
    """How one .scv format version entropy-codes its tiles (docs/format.md)."""

    context: str  # the context scheme its tables must have (sccodec.context.SCHEMES)
    adaptive: bool  # whether each tile starts with its table adaptation (sccodec.adaptation)
    integer: bool = False  # integer frequencies and integer adaptation (sccodec.frequencies); implies adaptive
    classes: bool = False  # a block class map before the symbols (sccodec.block_classes); implies integer
    pairs: bool = False  # flags changed by the atoms already firing (sccodec.atom_pairs); implies classes


#: .scv format version -> tile coding. A writer uses the newest version for its tables' scheme;
#: every version stays readable.
FORMATS = {1: TileCoding("checkerboard", adaptive=False),
           2: TileCoding("quad", adaptive=False),
           3: TileCoding("quad", adaptive=True),
           4: TileCoding("nested", adaptive=True),
           5: TileCoding("nested", adaptive=True, integer=True),
           6: TileCoding("nested", adaptive=True, integer=True, classes=True),
           7: TileCoding("nested", adaptive=True, integer=True, classes=True, pairs=True)}


def newest_format(context: str, classes: bool = False, pairs: bool = False) -> int:
    """The format version a writer uses for tables of this context scheme, with or without block
    classes and pair weights (pairs need classes)."""
    return max(v for v, coding in FORMATS.items() if coding.context == context and (classes or not coding.classes)
               and (pairs and classes or not coding.pairs))


@dataclass(frozen=True)
class SymbolTables:
    """Probability tables for one model (all quality levels).

    A value context (``sccodec.context``) is ``row * S + sign context`` with S the scheme's
    ``sign_contexts``. With S = 1 the row alone gives the value's distribution; with S > 1
    the rows are symmetric (P(|v|)) and ``signs`` gives P(v > 0) per (atom, sign context).
    """

    p_nonzero: np.ndarray  # (Q, K, C): P(symbol != 0 | flag context)
    values: np.ndarray  # (Q, K, V, 2R): P(symbol = v | != 0, value row), v = -R..-1, 1..R
    groups: int
    context: str = LEGACY_SCHEME  # a key of sccodec.context.SCHEMES
    signs: np.ndarray | None = None  # (Q, K, S): P(v > 0 | sign context); schemes with S > 1 only

    def __post_init__(self) -> None:
        # constriction takes float64; convert once here rather than per coded step.
        object.__setattr__(self, "p_nonzero", np.ascontiguousarray(self.p_nonzero, np.float64))
        object.__setattr__(self, "values", np.ascontiguousarray(self.values, np.float64))
        if self.context not in SCHEMES:
            raise ValueError(f"unknown context scheme {self.context!r} (this sccodec knows {', '.join(SCHEMES)})")
        p, v = self.p_nonzero.shape, self.values.shape
        if len(p) != 3 or len(v) != 4 or p[:2] != v[:2] or v[-1] < 2 or v[-1] % 2 or p[1] % self.groups:
            raise ValueError(f"tables of shapes {p} and {v} are not (Q, K, C) and (Q, K, V, 2R) "
                             f"with K a multiple of {self.groups} groups")
        want = (self.scheme.flag_contexts, self.scheme.value_contexts)
        if (p[-1], v[-2]) != want:
            raise ValueError(f"tables have {p[-1]} flag and {v[-2]} value contexts; "
                             f"the {self.context} scheme has {want[0]} and {want[1]}")
        s = self.scheme.sign_contexts
        if s == 1:
            if self.signs is not None:
                raise ValueError(f"the {self.context} scheme has no sign table")
            return
        object.__setattr__(self, "signs", None if self.signs is None else np.ascontiguousarray(self.signs, np.float64))
        if self.signs is None or self.signs.shape != (*p[:2], s):
            raise ValueError(f"the {self.context} scheme needs a sign table of shape {(*p[:2], s)}")
        r = v[-1] // 2
        if not np.array_equal(self.values[..., :r], self.values[..., r:][..., ::-1]):
            raise ValueError(f"the {self.context} scheme's value rows must be symmetric (the sign has its own table)")

    @property
    def scheme(self) -> Scheme:
        return SCHEMES[self.context]

    @property
    def qualities(self) -> int:
        return self.p_nonzero.shape[0]

    @property
    def atoms(self) -> int:
        return self.p_nonzero.shape[1]

    @property
    def value_range(self) -> int:
        return self.values.shape[-1] // 2

    def value_table(self, quality_index: int) -> np.ndarray:
        """(K, V·S, 2R): one level's value distribution (not normalised: constriction does that)
        for every atom and value context. With a sign table, each row half is weighted by one
        exactly rounded float64 multiplication per entry, so every reader builds the same rows."""
        s = self.scheme.sign_contexts
        if s == 1:
            return self.values[quality_index]
        rows = self.values[quality_index].repeat(s, axis=1)  # (K, V·S, 2R): row ctx // S
        positive = np.tile(self.signs[quality_index], (1, self.values.shape[2]))[..., None]  # sign ctx % S
        r = self.value_range
        return np.concatenate([rows[..., :r] * (1.0 - positive), rows[..., r:] * positive], axis=-1)

    def frequencies(self, quality_index: int) -> IntegerTables:
        """One level's tables as integer frequencies (format 5), derived from the stored arrays
        on first use and kept: a parse needs only its file's level."""
        if self.signs is None:
            raise ValueError(f"the {self.context} scheme has no sign table: format 5 needs one")
        levels = self._frequency_levels
        q = quality_index
        if q not in levels:
            levels[q] = IntegerTables.from_stored(self.p_nonzero[q], self.values[q, ..., self.value_range:],
                                                  self.signs[q])
        return levels[q]

    @functools.cached_property
    def _frequency_levels(self) -> dict[int, IntegerTables]:
        return {}

    def stored(self) -> dict[str, np.ndarray]:
        """The arrays a weights file keeps (symmetric rows: only their positive half)."""
        if self.signs is None:
            return {"p_nonzero": self.p_nonzero, "values": self.values}
        return {"p_nonzero": self.p_nonzero, "magnitudes": self.values[..., self.value_range:], "signs": self.signs}

    @classmethod
    def from_stored(cls, arrays: dict[str, np.ndarray], groups: int, context: str) -> "SymbolTables":
        """Inverse of ``stored``."""
        if "magnitudes" in arrays:
            m = np.asarray(arrays["magnitudes"], np.float64)
            return cls(arrays["p_nonzero"], np.concatenate([m[..., ::-1], m], axis=-1), groups, context,
                       arrays["signs"])
        return cls(arrays["p_nonzero"], arrays["values"], groups, context)


ESCAPE_CLASSES = 21  # an escaped magnitude |v| >= R is coded as R + (m - 1), 1 <= m < 2**21
MAX_MAGNITUDE_OVER_RANGE = (1 << ESCAPE_CLASSES) - 2
_ESCAPE_CLASS_PROBS = 0.5 ** np.arange(1, ESCAPE_CLASSES + 1)  # fixed: escapes are rare
_POWERS = 1 << np.arange(ESCAPE_CLASSES, dtype=np.int64)
#: Format 5: f(n) = 2^(23 − n) for escape classes n = 1 … 20, class 0 the rest (2^23 + 8);
#: extra bits ½ each.
_RARER_CLASSES = TOTAL >> (np.arange(1, ESCAPE_CLASSES, dtype=np.int64) + 1)
ESCAPE_CLASS_FREQUENCIES = np.concatenate([[TOTAL - _RARER_CLASSES.sum()], _RARER_CLASSES])
ESCAPE_BIT_FREQUENCIES = np.array([TOTAL >> 1, TOTAL >> 1], dtype=np.int64)


def _escape_parts(magnitudes: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes >= R -> (class n with m = |v| - R + 1 in [2^n, 2^(n+1)), the n low bits of m)."""
    m = magnitudes.astype(np.int64) - r + 1
    n = (m[:, None] >= _POWERS[None, 1:]).sum(1)
    bits = (m[:, None] >> np.arange(ESCAPE_CLASSES - 1)[None, :]) & 1
    return n.astype(np.int32), bits[np.arange(ESCAPE_CLASSES - 1)[None, :] < n[:, None]].astype(np.int32)


def _escape_magnitudes(n: np.ndarray, bits: np.ndarray, r: int) -> np.ndarray:
    owner = np.repeat(np.arange(n.size), n)
    position = np.arange(bits.size) - np.repeat(np.cumsum(n) - n, n)
    m = _POWERS[n].copy()
    np.add.at(m, owner, bits.astype(np.int64) << position)
    return (m + r - 1).astype(np.int32)


def _value_from_index(i: np.ndarray, r: int) -> np.ndarray:
    return np.where(i < r, i - r, i - r + 1)


class _Walk:
    """Walks the coding steps over a (G, K/G, h, w) symbol array, tracking significance counts.

    Subclasses give the probabilities of one tile coding: ``_FloatWalk`` (formats 1–4),
    ``_IntegerWalk`` (format 5)."""

    def __init__(self, symbols: np.ndarray, tables: SymbolTables, quality_index: int,
                 adaptation: Adaptation | None = None,
                 known_contexts: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """``known_contexts``: every symbol's (flag, value) context from ``scheme_contexts``, when
        all symbols are known up front (the encoder): then no step recomputes them."""
        k, h, w = symbols.shape
        g = tables.groups
        self.tables, self.q, self.scheme = tables, quality_index, tables.scheme
        self.adaptation = adaptation or Adaptation.neutral(tables.scheme.phases * g)
        self.grouped = symbols.reshape(g, k // g, h, w)
        self.per_group = (self.grouped != 0).sum(1, dtype=np.int32)
        self.phase = phase_map(self.scheme, h, w)
        self.at = phase_positions(self.scheme, h, w)  # each phase's positions
        atoms = np.arange(k).reshape(g, k // g)
        self.atoms = [atoms[i][:, None] for i in range(g)]
        self.known = None if known_contexts is None else [c.reshape(self.grouped.shape) for c in known_contexts]
        self._sums: tuple[int, PhaseSums | None] = (-1, None)  # the decoder's ``phase_sums`` of the phase

    def contexts(self, p: int, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flag context, value context, atom index) of the step's symbols, each (K/G, n) in coding order."""
        if self.known is None:
            if self._sums[0] != p:  # every step of a phase reads the same sums of earlier phases
                self._sums = (p, self.scheme.phase_sums(self.grouped, self.per_group, p))
            flag, value = self.scheme.step_contexts(self.grouped, self.per_group, p, g, self._sums[1])
        else:
            flag, value = self.at[p].take(self.known[0][g]), self.at[p].take(self.known[1][g])
        return flag, value, np.broadcast_to(self.atoms[g], flag.shape)

    def store(self, p: int, g: int, values: np.ndarray) -> None:
        self.at[p].put(self.grouped[g], values)
        self.at[p].put(self.per_group[g], (values != 0).sum(0, dtype=np.int32))  # only the phase's positions change

    def decode_flags(self, coder, models: "_Models", ctx: np.ndarray, atom: np.ndarray, step: int) -> np.ndarray:  # noqa: ANN001
        """The step's significance flags (K/G, n), bool: one call for the whole step."""
        return coder.decode(models.flag, self.flag_params(ctx, atom, step)).astype(bool).reshape(ctx.shape)


class _FloatWalk(_Walk):
    """Formats 1–4: float64 probabilities, quantised by constriction (docs/format.md, section 4)."""

    def __init__(self, symbols: np.ndarray, tables: SymbolTables, quality_index: int,
                 adaptation: Adaptation | None = None,
                 known_contexts: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        super().__init__(symbols, tables, quality_index, adaptation, known_contexts)
        self.value_table = tables.value_table(quality_index)

    def flag_params(self, ctx: np.ndarray, atom: np.ndarray, step: int) -> np.ndarray:
        return self.adaptation.flag_probs(self.tables.p_nonzero[self.q, atom, ctx], step).ravel()

    def value_rows(self, ctx: np.ndarray, atom: np.ndarray) -> np.ndarray:
        return self.adaptation.value_rows(self.value_table[atom, ctx])

    def encode_values(self, coder, models: "_Models", values: np.ndarray, ctx: np.ndarray, atom: np.ndarray) -> None:
        """The non-zero values of a step (escapes as ±R): one symbol over 2R value indices each."""
        coder.encode_reverse(value_index(values, self.tables.value_range), models.value, self.value_rows(ctx, atom))

    def decode_values(self, coder, models: "_Models", ctx: np.ndarray, atom: np.ndarray) -> np.ndarray:
        return _value_from_index(coder.decode(models.value, self.value_rows(ctx, atom)), self.tables.value_range)


class _IntegerWalk(_Walk):
    """Format 5: integer frequencies (``sccodec.frequencies``), handed to constriction as rows of
    f − 1 that it quantises to exactly f; a non-zero value is its magnitude, then its sign."""

    def __init__(self, symbols: np.ndarray, tables: SymbolTables, quality_index: int,
                 adaptation: Adaptation | None = None,
                 known_contexts: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        super().__init__(symbols, tables, quality_index, adaptation, known_contexts)
        integer = tables.frequencies(quality_index)
        self.nonzero = integer.nonzero  # (K, C): f(x != 0)
        self.positive = integer.positive  # (K, S): f(v > 0)
        self.adapt(self.adaptation)

    def adapt(self, adaptation: Adaptation) -> None:
        """Use ``adaptation`` from here on (the encoder's, once it has chosen it)."""
        self.adaptation = adaptation
        # adapted once per tile, then gathered per symbol: (K, V, R) frequencies
        self.magnitudes = adaptation.magnitude_frequencies(self.tables.frequencies(self.q).magnitudes)

    def flag_params(self, ctx: np.ndarray, atom: np.ndarray, step: int) -> np.ndarray:
        return binary_rows(self.adaptation.flag_frequencies(self.nonzero[atom, ctx], step).ravel())

    def _rows(self, ctx: np.ndarray, atom: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.scheme.sign_contexts
        return coder_rows(self.magnitudes[atom, ctx // s]), binary_rows(self.positive[atom, ctx % s])

    def encode_values(self, coder, models: "_Models", values: np.ndarray, ctx: np.ndarray, atom: np.ndarray) -> None:
        """The non-zero values of a step (escapes as ±R): all magnitudes min(|v|, R) (symbol
        |v| − 1 over R columns), then all signs (1 = positive)."""
        magnitude_rows, sign_rows = self._rows(ctx, atom)
        coder.encode_reverse((values > 0).astype(np.int32), models.value, sign_rows)
        coder.encode_reverse(np.minimum(np.abs(values), self.tables.value_range).astype(np.int32) - 1,
                             models.value, magnitude_rows)

    def decode_values(self, coder, models: "_Models", ctx: np.ndarray, atom: np.ndarray) -> np.ndarray:
        magnitude_rows, sign_rows = self._rows(ctx, atom)
        magnitude = coder.decode(models.value, magnitude_rows) + 1
        return np.where(coder.decode(models.value, sign_rows) == 1, magnitude, -magnitude).astype(np.int32)


class _ClassWalk(_IntegerWalk):
    """Format 6: format 5's frequencies changed per block by its class (``sccodec.block_classes``)
    before the tile's adaptation. ``contexts`` hands out class·K + atom in place of the atom, so
    every step's symbols carry their class."""

    def __init__(self, symbols: np.ndarray, tables: SymbolTables, quality_index: int,
                 adaptation: Adaptation, classes: LevelClasses, position_class: np.ndarray,
                 known_contexts: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        super().__init__(symbols, tables, quality_index, adaptation, known_contexts)
        if classes.base.positive is not self.positive and not np.array_equal(classes.base.positive, self.positive):
            raise ValueError("the block classes were built on other tables than this level's")  # positive_table
        self.classes, self.position_class = classes, position_class

    def contexts(self, p: int, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flag, value, atom = super().contexts(p, g)
        return flag, value, atom + self.tables.atoms * self.at[p].take(self.position_class)[None, :]

    def class_nonzero(self, ctx: np.ndarray, step: int) -> np.ndarray:
        """f(x != 0) of a step's symbols (flag contexts ``ctx``, (K/G, n)), scaled by their
        positions' classes, before the tile's adaptation. Gathers on flat indices, cheaper than
        indexing by (atom, context) pairs."""
        p, g = divmod(step, self.tables.groups)
        cls = self.at[p].take(self.position_class)[None, :]
        # flat indices: ``ctx`` lies within the table's width, which the scheme fixed when the tables were read
        return self.classes.nonzero(np.take(self.nonzero, self.atoms[g] * self.nonzero.shape[-1] + ctx), cls, ctx)

    def flag_params(self, ctx: np.ndarray, atom: np.ndarray, step: int) -> np.ndarray:
        return binary_rows(self.adaptation.flag_frequencies(self.class_nonzero(ctx, step), step).ravel())

    def adapt(self, adaptation: Adaptation) -> None:
        super().adapt(adaptation)
        self._magnitude_rows = _MagnitudeRows(self.tables.atoms, self.magnitudes)

    def _rows(self, ctx: np.ndarray, atom: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As format 5's, each (class, atom, row) scaled by its class and normalised once per tile."""
        s = self.scheme.sign_contexts
        magnitudes = self._magnitude_rows(self.classes, atom, ctx // s)
        return magnitudes, binary_rows(self.classes.positive_table[atom, ctx % s])


class _MagnitudeRows:
    """The class-scaled magnitude rows of one tile coding as constriction rows (``coder_rows``),
    each (class, atom, value row) computed on first use and kept: a tile's steps share most of
    them, and normalising a row costs more than gathering it."""

    def __init__(self, atoms: int, magnitudes: np.ndarray) -> None:
        self.atoms, self.magnitudes = atoms, magnitudes  # (K, V, R): the tile's adapted rows
        self._slot: np.ndarray | None = None  # per (class·K + atom)·V + row: its row in _table, or -1
        self._table: np.ndarray | None = None  # the rows computed so far (and room for more)
        self._size = 0

    def __call__(self, classes: LevelClasses, atom: np.ndarray, row: np.ndarray) -> np.ndarray:
        """(n, R) rows of n values, ``atom`` class·K + atom and ``row`` their value rows."""
        k, v = self.atoms, self.magnitudes.shape[1]
        if self._slot is None:
            self._slot = np.full(classes.classes * k * v, -1, dtype=np.int64)
            self._table = coder_rows(self.magnitudes[:0, 0])  # no rows yet, in the rows' type
        keys = atom * v + row
        slots = self._slot[keys]
        if (slots < 0).any():
            new = np.unique(keys[slots < 0])
            a, r = new // v, new % v
            self._store(new, coder_rows(classes.magnitudes(self.magnitudes[a % k, r], a // k, r)))
            slots = self._slot[keys]
        return self._table[slots]

    def _store(self, keys: np.ndarray, rows: np.ndarray) -> None:
        end = self._size + len(keys)
        if end > len(self._table):  # grown by doubling: copies stay within twice the final size
            grown = np.empty((max(end, 2 * len(self._table)), self._table.shape[1]), dtype=rows.dtype)
            grown[: self._size] = self._table[: self._size]
            self._table = grown
        self._table[self._size : end] = rows
        self._slot[keys] = np.arange(self._size, end)
        self._size = end


class _PairWalk(_ClassWalk):
    """Format 7: format 6's flag frequencies changed by the pair weights (``sccodec.atom_pairs``)
    of the atoms already firing at and around each position, before the tile's adaptation. A
    step's flags are read in batches of atoms: each batch's frequencies depend on the earlier
    batches' flags at the same positions."""

    def __init__(self, symbols: np.ndarray, tables: SymbolTables, quality_index: int,
                 adaptation: Adaptation | None, classes: LevelClasses, position_class: np.ndarray, pairs: LevelPairs,
                 known_contexts: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        super().__init__(symbols, tables, quality_index, adaptation, classes, position_class, known_contexts)
        if (tables.atoms // tables.groups) % pairs.batch:
            raise ValueError(f"batches of {pairs.batch} atoms do not divide groups of {tables.atoms // tables.groups}")
        self.pairs = pairs
        self._ring: tuple[int, np.ndarray | None] = (-1, None)
        self._paired: dict[int, np.ndarray] = {}  # the encoder's flag frequencies before the adaptation, per step
        self._fired: tuple[int, np.ndarray | None] = (-1, None)  # the decoder's ``_fired_here`` of the phase

    def _ring_sums(self, p: int) -> np.ndarray:
        """The phase's neighbour terms (K, n), once per phase: its neighbours' phases are all decoded."""
        if self._ring[0] != p:
            nonzero = self.grouped.reshape(-1, *self.phase.shape) != 0
            self._ring = (p, self.pairs.ring_sums(nonzero, self.phase < p, self.scheme.lattices[p]))
        return self._ring[1]

    def _fired_here(self, p: int) -> np.ndarray:
        """(K, n), 1 where an atom fires at the phase's positions, as far as it is known."""
        return self.pairs.indicators(self.at[p].take(self.grouped.reshape(-1, *self.phase.shape)) != 0)

    def _frequencies(self, own: np.ndarray, step: int, rows: slice, fired: np.ndarray) -> np.ndarray:
        """f(x != 0) of the step's atoms ``rows`` (a run of its K/G) at every position, from their
        class-scaled frequencies ``own``, changed by the pairs (before the tile's adaptation)."""
        p, g = divmod(step, self.tables.groups)
        first = g * len(fired) // self.tables.groups
        factors = self.pairs.factors(self._ring_sums(p), fired, slice(first + rows.start, first + rows.stop))
        return self.pairs.flag_frequencies(own, factors)

    def paired_frequencies(self, ctx: np.ndarray, atom: np.ndarray, step: int) -> np.ndarray:
        """The encoder's: f(x != 0) of the step's flags before the tile's adaptation (what it is
        chosen on), kept per step for ``flag_params`` (so ``ctx`` and ``atom`` must be the step's). Every flag is known, so every batch's frequencies
        at once (the centre weights of later batches are zero: the same sums as batch by batch)."""
        if step not in self._paired:
            fired = self._fired_here(step // self.tables.groups)
            self._paired[step] = self._frequencies(self.class_nonzero(ctx, step), step, slice(0, ctx.shape[0]), fired)
        return self._paired[step]

    def flag_params(self, ctx: np.ndarray, atom: np.ndarray, step: int) -> np.ndarray:
        """The encoder's (cached per step by ``paired_frequencies``): the step's frequencies after
        the pairs, with the tile's adaptation."""
        return binary_rows(self.adaptation.flag_frequencies(self.paired_frequencies(ctx, atom, step), step).ravel())

    def paired_flags(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The encoder's: every step's ``paired_frequencies`` and flags, in coding order."""
        frequencies, flags = [], []
        for i, (p, g) in enumerate(steps(self.scheme, self.tables.groups)):
            ctx, _, atom = self.contexts(p, g)
            frequencies.append(self.paired_frequencies(ctx, atom, i))
            flags.append(self.at[p].take(self.grouped[g]) != 0)
        return frequencies, flags

    def decode_flags(self, coder, models: "_Models", ctx: np.ndarray, atom: np.ndarray, step: int) -> np.ndarray:  # noqa: ANN001
        p, g = divmod(step, self.tables.groups)
        if self._fired[0] != p:  # kept through the phase's steps: each batch's flags go in as decoded
            self._fired = (p, self._fired_here(p))  # this step's atoms are not stored yet: zero until decoded below
        fired = self._fired[1]
        first = g * ctx.shape[0]
        own = self.class_nonzero(ctx, step)
        flags = np.empty(ctx.shape, dtype=bool)
        for b in range(ctx.shape[0] // self.pairs.batch):
            rows = slice(b * self.pairs.batch, (b + 1) * self.pairs.batch)
            f1 = self.adaptation.flag_frequencies(self._frequencies(own[rows], step, rows, fired), step)
            flags[rows] = coder.decode(models.flag, binary_rows(f1.ravel())).astype(bool).reshape(f1.shape)
            fired[first + rows.start : first + rows.stop] = flags[rows]
        return flags


def coder_rows(frequencies: np.ndarray) -> np.ndarray:
    """Integer frequencies (..., n), each row summing to 2^24 -> the float64 rows f − 1 that
    constriction's leaky quantiser turns into exactly those frequencies (the rows sum to
    2^24 − n, so its scale is exactly 1: docs/format.md, "Format 5"). The one float conversion
    of format 5, and an exact one."""
    return (np.asarray(frequencies, dtype=np.int64) - 1).astype(np.float64)


def binary_rows(f1: np.ndarray) -> np.ndarray:
    """f(1) of binary symbols (int64) -> constriction rows (..., 2) for f(0) = 2^24 − f(1), f(1)."""
    pair = np.empty((*np.shape(f1), 2), dtype=np.int64)
    np.subtract(TOTAL, f1, out=pair[..., 0])
    pair[..., 1] = f1
    return coder_rows(pair)


@dataclass(frozen=True)
class _Models:
    """The constriction models of one tile coding."""

    flag: object  # significance flags, with per-symbol parameters
    value: object  # values (and format 5's signs), with per-symbol rows
    escape_class: object
    escape_bit: object
    flag_index: object  # side information: a flag-scale index per step
    tilt_index: object  # side information: the tilt index

    @classmethod
    def of(cls, integer: bool) -> "_Models":
        categorical = constriction.stream.model.Categorical
        if integer:
            rows = categorical(perfect=False)
            fixed = [categorical(coder_rows(f), perfect=False) for f in
                     (ESCAPE_CLASS_FREQUENCIES, ESCAPE_BIT_FREQUENCIES, FLAG_INDEX_FREQUENCIES, TILT_INDEX_FREQUENCIES)]
            return cls(rows, rows, *fixed)
        bernoulli = constriction.stream.model.Bernoulli
        return cls(bernoulli(perfect=False), categorical(perfect=False),
                   categorical(_ESCAPE_CLASS_PROBS, perfect=False), bernoulli(0.5, perfect=False),
                   categorical(FLAG_INDEX_PROBS, perfect=False), categorical(TILT_INDEX_PROBS, perfect=False))


def _encode_class_map(coder, model, labels: np.ndarray, classes: LevelClasses) -> None:  # noqa: ANN001
    """The class map, column by column (each block's row of frequencies is its left block's class)."""
    rows, cols = labels.shape
    for j in reversed(range(cols)):
        left = labels[:, j - 1] if j else np.full(rows, classes.classes)
        coder.encode_reverse(labels[:, j].astype(np.int32), model, coder_rows(classes.map_rows(left)))


def _decode_class_map(coder, model, classes: LevelClasses, h: int, w: int) -> np.ndarray:  # noqa: ANN001
    rows, cols = classes.grid(h, w)
    labels = np.zeros((rows, cols), dtype=np.int64)
    left = np.full(rows, classes.classes)
    for j in range(cols):
        labels[:, j] = coder.decode(model, coder_rows(classes.map_rows(left)))
        left = labels[:, j]
    return labels


def encode(symbols: np.ndarray, tables: SymbolTables, quality_index: int, adaptive: bool = False,
           integer: bool = False, classes: LevelClasses | None = None, pairs: LevelPairs | None = None) -> np.ndarray:
    """Integer symbols (K,h,w), |s| <= R + MAX_MAGNITUDE_OVER_RANGE (escapes) -> uint32 words.

    ``adaptive`` and ``integer``: the tile coding (``TileCoding``; ``integer`` implies adaptive).
    ``classes``: format 6, this level's block classes (implies integer): the encoder picks each
    block's class (``LevelClasses.choose``) and codes the class map before the symbols.
    ``pairs``: format 7, this level's pair weights (with ``classes``); the class map is chosen
    on format 6's frequencies, the flags' odds scales on the frequencies the pairs give them."""
    r = tables.value_range
    if np.abs(symbols).max(initial=0) > r + MAX_MAGNITUDE_OVER_RANGE:
        raise ValueError(f"symbol magnitude above the codable range {r + MAX_MAGNITUDE_OVER_RANGE}")
    symbols = np.array(symbols, dtype=np.int32)
    known = scheme_contexts(tables.scheme, symbols, tables.groups)
    labels = None
    if classes is not None:
        labels = classes.choose(classes.block_bits(symbols, *known, tables.scheme.sign_contexts))
        position_class = classes.position_classes(labels, *symbols.shape[1:])
        if pairs is None:
            adaptation = choose_integer(symbols, tables, quality_index, known, classes, position_class)
            walk = _ClassWalk(symbols, tables, quality_index, adaptation, classes, position_class, known)
        else:  # the flags' scales priced on the frequencies the pairs change
            walk = _PairWalk(symbols, tables, quality_index, None, classes, position_class, pairs, known)
            adaptation = choose_integer(symbols, tables, quality_index, known, classes, position_class,
                                        flag_scale_bits(*walk.paired_flags()))
            walk.adapt(adaptation)
    elif integer:
        adaptation = choose_integer(symbols, tables, quality_index, known)
        walk = _IntegerWalk(symbols, tables, quality_index, adaptation, known)
    else:
        adaptation = choose(symbols, tables, quality_index, known) if adaptive else None
        walk = _FloatWalk(symbols, tables, quality_index, adaptation, known)
    integer = integer or classes is not None
    models = _Models.of(integer)
    coder = constriction.stream.stack.AnsCoder()
    # ANS is a stack: encode the steps in reverse so the decoder reads them forwards.
    order = steps(tables.scheme, tables.groups)
    for i, (p, g) in reversed(list(enumerate(order))):
        ctx, vctx, atom = walk.contexts(p, g)
        s = walk.at[p].take(walk.grouped[g])
        nz = s != 0
        if nz.any():
            escaped = np.abs(s[nz])[np.abs(s[nz]) >= r]
            if escaped.size:
                n, bits = _escape_parts(escaped, r)
                if bits.size:
                    coder.encode_reverse(bits, models.escape_bit)
                coder.encode_reverse(n, models.escape_class)
            walk.encode_values(coder, models, s[nz], vctx[nz], atom[nz])
        if s.size:
            coder.encode_reverse(nz.ravel().astype(np.int32), models.flag, walk.flag_params(ctx, atom, i))
    if labels is not None:  # read after the adaptation, before the steps
        _encode_class_map(coder, models.value, labels, classes)
    if adaptation is not None:  # read first: the tables of every step depend on it
        coder.encode_reverse(np.array([adaptation.tilt], dtype=np.int32), models.tilt_index)
        coder.encode_reverse(np.array(adaptation.flags, dtype=np.int32), models.flag_index)
    return coder.get_compressed()


def decode(words: np.ndarray, tables: SymbolTables, quality_index: int,
           shape: tuple[int, int, int], adaptive: bool = False, integer: bool = False,
           classes: LevelClasses | None = None, pairs: LevelPairs | None = None) -> np.ndarray:
    """Inverse of ``encode``. Garbage words give garbage symbols or a ValueError, never a hang."""
    integer = integer or classes is not None
    r = tables.value_range
    order = steps(tables.scheme, tables.groups)
    coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
    models = _Models.of(integer)
    adaptation = None
    if adaptive or integer:
        flags = coder.decode(models.flag_index, len(order))
        adaptation = Adaptation(tuple(int(f) for f in flags), int(coder.decode(models.tilt_index, 1)[0]))
    empty = np.zeros(shape, dtype=np.int32)
    if classes is not None:
        position_class = classes.position_classes(_decode_class_map(coder, models.value, classes, *shape[1:]),
                                                  *shape[1:])
        walk = (_ClassWalk(empty, tables, quality_index, adaptation, classes, position_class) if pairs is None
                else _PairWalk(empty, tables, quality_index, adaptation, classes, position_class, pairs))
    else:
        walk = (_IntegerWalk if integer else _FloatWalk)(empty, tables, quality_index, adaptation)
    for i, (p, g) in enumerate(order):
        ctx, vctx, atom = walk.contexts(p, g)
        if ctx.size == 0:
            continue
        nz = walk.decode_flags(coder, models, ctx, atom, i)
        values = np.zeros(ctx.shape, dtype=np.int32)
        if nz.any():
            v = walk.decode_values(coder, models, vctx[nz], atom[nz])
            escaped = np.abs(v) == r
            if escaped.any():
                n = coder.decode(models.escape_class, int(escaped.sum()))
                bits = coder.decode(models.escape_bit, int(n.sum())) if n.sum() else np.zeros(0, np.int32)
                v[escaped] = np.sign(v[escaped]) * _escape_magnitudes(n, bits, r)
            values[nz] = v
        walk.store(p, g, values)
    if not coder.is_empty():
        # A valid stream ends exactly after its last symbol; this catches damaged data (and
        # wrong header fields) before the expensive synthesis runs on garbage.
        raise ValueError("data left over after the last symbol")
    return walk.grouped.reshape(shape)
