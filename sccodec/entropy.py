"""Integer symbols <-> ANS words, with static tables from the weights file.

    symbols (K,h,w) ─contexts─▶ table index per symbol ─▶ constriction AnsCoder ─▶ uint32 words

No neural network is involved: the tables are data (computed at export and stored in the
weights file) and the contexts are integer functions of already-decoded symbols, so a file
parses identically on every device (docs/design.md, principle 1). Coding runs in
``phases·G`` steps of the tables' context scheme (``sccodec.context``); in each step one
vectorised call codes the significance flags and one codes the values of the non-zero symbols
(docs/design.md, principle 5). With ``adaptive=True`` (.scv format 3) a tile's stream
starts with its ``sccodec.adaptation.Adaptation``, which adjusts the tables to the tile.
"""
from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np

from sccodec.adaptation import FLAG_INDEX_PROBS, TILT_INDEX_PROBS, Adaptation, choose
from sccodec.context import LEGACY_SCHEME, SCHEMES, Scheme, phase_map, scheme_contexts, steps, value_index

CODER_VERSION = (0, 5)  # output is stable within a minor release of 0.x; recorded in every file


@dataclass(frozen=True)
class TileCoding:
    """How one .scv format version entropy-codes its tiles (docs/format.md)."""

    context: str  # the context scheme its tables must have (sccodec.context.SCHEMES)
    adaptive: bool  # whether each tile starts with its table adaptation (sccodec.adaptation)


#: .scv format version -> tile coding. A writer uses the newest version for its tables' scheme;
#: every version stays readable.
FORMATS = {1: TileCoding("checkerboard", adaptive=False),
           2: TileCoding("quad", adaptive=False),
           3: TileCoding("quad", adaptive=True),
           4: TileCoding("nested", adaptive=True)}


def newest_format(context: str) -> int:
    """The format version a writer uses for tables of this context scheme."""
    return max(v for v, coding in FORMATS.items() if coding.context == context)


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
    """Walks the coding steps over a (G, K/G, h, w) symbol array, tracking significance counts."""

    def __init__(self, symbols: np.ndarray, tables: SymbolTables, quality_index: int,
                 adaptation: Adaptation | None = None,
                 known_contexts: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """``known_contexts``: every symbol's (flag, value) context from ``scheme_contexts``, when
        all symbols are known up front (the encoder): then no step recomputes them."""
        k, h, w = symbols.shape
        g = tables.groups
        self.tables, self.q, self.scheme = tables, quality_index, tables.scheme
        self.value_table = tables.value_table(quality_index)
        self.adaptation = adaptation or Adaptation.neutral(tables.scheme.phases * g)
        self.grouped = symbols.reshape(g, k // g, h, w)
        self.per_group = (self.grouped != 0).sum(1, dtype=np.int32)
        self.phase = phase_map(self.scheme, h, w)
        atoms = np.arange(k).reshape(g, k // g)
        self.atoms = [atoms[i][:, None] for i in range(g)]
        self.known = None if known_contexts is None else [c.reshape(self.grouped.shape) for c in known_contexts]

    def contexts(self, p: int, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flag context, value context, atom index) of the step's symbols, each (K/G, n) in coding order."""
        here = self.phase == p
        if self.known is None:
            flag, value = self.scheme.step_contexts(self.grouped, self.per_group, p, g)
        else:
            flag, value = self.known[0][g], self.known[1][g]
        flag, value = flag[:, here], value[:, here]
        return flag, value, np.broadcast_to(self.atoms[g], flag.shape)

    def flag_probs(self, ctx: np.ndarray, atom: np.ndarray, step: int) -> np.ndarray:
        return self.adaptation.flag_probs(self.tables.p_nonzero[self.q, atom, ctx], step)

    def value_rows(self, ctx: np.ndarray, atom: np.ndarray) -> np.ndarray:
        return self.adaptation.value_rows(self.value_table[atom, ctx])

    def store(self, p: int, g: int, values: np.ndarray) -> None:
        self.grouped[g][:, self.phase == p] = values
        self.per_group[g] = (self.grouped[g] != 0).sum(0, dtype=np.int32)


def _escape_models():
    return (constriction.stream.model.Categorical(_ESCAPE_CLASS_PROBS, perfect=False),
            constriction.stream.model.Bernoulli(0.5, perfect=False))


def _models():
    return (constriction.stream.model.Bernoulli(perfect=False),
            constriction.stream.model.Categorical(perfect=False))


def _side_models():
    return (constriction.stream.model.Categorical(FLAG_INDEX_PROBS, perfect=False),
            constriction.stream.model.Categorical(TILT_INDEX_PROBS, perfect=False))


def encode(symbols: np.ndarray, tables: SymbolTables, quality_index: int, adaptive: bool = False) -> np.ndarray:
    """Integer symbols (K,h,w), |s| <= R + MAX_MAGNITUDE_OVER_RANGE (escapes) -> uint32 words."""
    r = tables.value_range
    if np.abs(symbols).max(initial=0) > r + MAX_MAGNITUDE_OVER_RANGE:
        raise ValueError(f"symbol magnitude above the codable range {r + MAX_MAGNITUDE_OVER_RANGE}")
    symbols = np.array(symbols, dtype=np.int32)
    known = scheme_contexts(tables.scheme, symbols, tables.groups)
    adaptation = choose(symbols, tables, quality_index, known) if adaptive else None
    walk = _Walk(symbols, tables, quality_index, adaptation, known)
    flag_model, value_model = _models()
    class_model, bit_model = _escape_models()
    coder = constriction.stream.stack.AnsCoder()
    # ANS is a stack: encode the steps in reverse so the decoder reads them forwards.
    order = steps(tables.scheme, tables.groups)
    for i, (p, g) in reversed(list(enumerate(order))):
        ctx, vctx, atom = walk.contexts(p, g)
        s = walk.grouped[g][:, walk.phase == p]
        nz = s != 0
        if nz.any():
            escaped = np.abs(s[nz])[np.abs(s[nz]) >= r]
            if escaped.size:
                n, bits = _escape_parts(escaped, r)
                if bits.size:
                    coder.encode_reverse(bits, bit_model)
                coder.encode_reverse(n, class_model)
            coder.encode_reverse(value_index(s[nz], r), value_model, walk.value_rows(vctx[nz], atom[nz]))
        if s.size:
            coder.encode_reverse(nz.ravel().astype(np.int32), flag_model, walk.flag_probs(ctx, atom, i).ravel())
    if adaptation is not None:  # read first: the tables of every step depend on it
        flag_index_model, tilt_model = _side_models()
        coder.encode_reverse(np.array([adaptation.tilt], dtype=np.int32), tilt_model)
        coder.encode_reverse(np.array(adaptation.flags, dtype=np.int32), flag_index_model)
    return coder.get_compressed()


def decode(words: np.ndarray, tables: SymbolTables, quality_index: int,
           shape: tuple[int, int, int], adaptive: bool = False) -> np.ndarray:
    """Inverse of ``encode``. Garbage words give garbage symbols or a ValueError, never a hang."""
    r = tables.value_range
    order = steps(tables.scheme, tables.groups)
    coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
    adaptation = None
    if adaptive:
        flag_index_model, tilt_model = _side_models()
        flags = coder.decode(flag_index_model, len(order))
        adaptation = Adaptation(tuple(int(f) for f in flags), int(coder.decode(tilt_model, 1)[0]))
    walk = _Walk(np.zeros(shape, dtype=np.int32), tables, quality_index, adaptation)
    flag_model, value_model = _models()
    class_model, bit_model = _escape_models()
    for i, (p, g) in enumerate(order):
        ctx, vctx, atom = walk.contexts(p, g)
        if ctx.size == 0:
            continue
        nz = coder.decode(flag_model, walk.flag_probs(ctx, atom, i).ravel()).astype(bool).reshape(ctx.shape)
        values = np.zeros(ctx.shape, dtype=np.int32)
        if nz.any():
            v = _value_from_index(coder.decode(value_model, walk.value_rows(vctx[nz], atom[nz])), r)
            escaped = np.abs(v) == r
            if escaped.any():
                n = coder.decode(class_model, int(escaped.sum()))
                bits = coder.decode(bit_model, int(n.sum())) if n.sum() else np.zeros(0, np.int32)
                v[escaped] = np.sign(v[escaped]) * _escape_magnitudes(n, bits, r)
            values[nz] = v
        walk.store(p, g, values)
    if not coder.is_empty():
        # A valid stream ends exactly after its last symbol; this catches damaged data (and
        # wrong header fields) before the expensive synthesis runs on garbage.
        raise ValueError("data left over after the last symbol")
    return walk.grouped.reshape(shape)
