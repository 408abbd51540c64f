"""Oracle test of forward-adaptive block classes (issue #33): would C table classes, one chosen
per block of latent positions by the encoder, save at least 1.5% of the bits?

    python bench/block_classes.py [--train-images 100] [--blocks 1,2,4,8,16] [--classes 2,4,8,16]
                                  [--kinds full,flags,pooled] [--iterations 6]
                                  [--cache /tmp/block_classes_symbols.npz]

Symbols: the encoder's own (``Codec().network`` in ONNX Runtime, ``codec.coder.quantize`` at its
default effort) for 512×768 crops (cut to multiples of 16) of ``--train-images`` photos spread
over the training split of ``split_holdout`` (fitting) and of its 8 held-out photos
(evaluation), at every level; each crop is one tile. Cached in ``--cache``.

Ideal code lengths (−log2 p, probabilities clamped to at least 2^−24 as the encoder's estimates
are; no ANS) of the held-out symbols, split into significance flags, magnitudes, signs, escapes
(exact: an escape's class n costs n + 1 bits and its n extra bits 1 each, as the fixed escape
models give) and side information:

- ``shipped`` (a): the model's tables;
- ``shipped+adapt`` (b): the same with the per-tile adaptation (``sccodec.adaptation.choose``,
  its ``Adaptation.flag_probs``/``value_rows``; the side information at FLAG_INDEX_PROBS /
  TILT_INDEX_PROBS, as the coder codes it);
- ``refit`` (c): one class of this script's pipeline, fitted on the training symbols: the fair
  baseline of the class gain (same counts, same smoothing);
- ``classes`` (d): C table classes per block size B (B×B latent positions), learned on the
  training blocks by alternation: blocks start in C activity quantiles (non-zero symbols per
  position), tables are fitted per class from counts, each block moves to its cheapest class
  (side information included), ``--iterations`` times, then the tables are fitted once more. On
  a held-out photo each block takes its cheapest class (the encoder's rate search);
- ``+adapt`` of ``refit`` and ``classes``: the per-tile adaptation on top (the same search as
  ``choose``, over the class tables; checked against ``choose`` on the shipped tables).

What a class holds (``--kinds``): ``full``: its own P(non-zero), magnitude and sign tables;
``flags``: its own P(non-zero), magnitudes and signs shared; ``values``: its own magnitudes and
signs; ``pooled``: the one-class tables times factors shared by all atoms (an odds scale per
flag context and per sign context, a factor per magnitude row and |v|): 847 numbers per class
and level instead of 217,856; ``scaled`` / ``scaled-phase``: one odds scale (per phase) and one
magnitude tilt per class.

Side information, each block's class index: ``frequencies`` (static class frequencies of the
training assignment), ``left`` (P(class | the left block's class), learned on the training
assignment; the encoder chooses greedily in raster order), ``uniform`` (log2 C bits) and
``free`` (none: not a real code, the bound).

Tables: the shipped recipe's smoothing (``sccodec.train.tables._smoothed``: each atom's counts
pulled towards all atoms' with the same priors) gives the one-class table T; class c's table is
(counts_c + α·T) / (n_c + α) per distribution, α = ``--alpha-flags`` / ``--alpha-values`` /
``--alpha-signs`` pseudo-counts, so rare contexts fall back to T. For C = 1 this is the refit.

Writes bench/results/block_classes.json and .md (and prints progress).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sccodec import entropy
from sccodec.adaptation import (FLAG_INDEX_PROBS, FLAG_SCALES, NEUTRAL_FLAG, TILT_INDEX_PROBS, VALUE_TILTS,
                                choose, scale_odds, tilt_weights)
from sccodec.api import Codec
from sccodec.context import NUM_ACTIVITY, NUM_NESTED_MAGNITUDE, phase_map, scheme_contexts, value_index
from sccodec.image_io import to_planes
from sccodec.train.block_classes import scaling_factors
from sccodec.train.cli import evenly_spaced
from sccodec.train.data import list_images, load_rgb, split_holdout
from sccodec.train.tables import FLAG_PRIOR, SIGN_PRIOR, VALUE_PRIOR, _smoothed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import cpu_model  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "train"
MIN_P = 2.0 ** -24  # as sccodec.adaptation's estimates: the coder gives every symbol about this much
WEIGHTS_BUDGET = 20_000_000  # bytes per weights file
TABLE_BYTES = 2  # float16 or 16-bit integer frequencies per table entry


# ---------------------------------------------------------------- symbols


def crop(path: Path) -> np.ndarray:
    """(H, W, 3) uint8: the photo's top-left 512×768, cut to multiples of 16."""
    pixels = load_rgb(path)[:, :512, :768].permute(1, 2, 0).numpy()
    h, w = pixels.shape[:2]
    return np.ascontiguousarray(pixels[: h - h % 16, : w - w % 16])


def encoder_symbols(codec: Codec, pixels: np.ndarray) -> np.ndarray:
    """(Q, K, h, w) int32: the symbols the encoder codes at every level (one tile)."""
    y = codec.network.analyze(to_planes(pixels))
    return np.stack([codec.coder.quantize(codec.network.scaled_symbols(y, q), q) for q in range(codec.coder.qualities)])


def cached_symbols(codec: Codec, train: list[Path], held: list[Path], cache: Path) -> tuple[list, list]:
    """(training symbols, held-out symbols), each a list of (Q, K, h, w) arrays; computed once."""
    names = np.array([f"train:{p.name}" for p in train] + [f"held:{p.name}" for p in held])
    if cache.exists():
        with np.load(cache) as z:
            if np.array_equal(z["names"], names) and str(z["weights"]) == codec.model_file.digest.hex():
                arrays = [z[f"s{i}"] for i in range(len(names))]
                return arrays[: len(train)], arrays[len(train):]
    arrays = []
    for i, p in enumerate(train + held):
        t = time.time()
        arrays.append(encoder_symbols(codec, crop(p)).astype(np.int16))
        print(f"symbols {i + 1}/{len(names)} {p.name} {arrays[-1].shape} {time.time() - t:.1f}s", flush=True)
    np.savez_compressed(cache, names=names, weights=codec.model_file.digest.hex(),
                        **{f"s{i}": a for i, a in enumerate(arrays)})
    return arrays[: len(train)], arrays[len(train):]


# ---------------------------------------------------------------- counts per block and table entry


@dataclass(frozen=True)
class Kind:
    """One kind of coded symbol: distributions of ``outcomes`` entries, one per (atom, context)."""

    name: str
    contexts: int  # per atom
    outcomes: int
    prior: float  # the shipped recipe's pseudo-counts towards all atoms' distribution
    floor: float


@dataclass
class Records:
    """Counts of one kind per (block, table index), index = distribution · outcomes + outcome."""

    block: np.ndarray
    index: np.ndarray
    count: np.ndarray

    @staticmethod
    def of(block: np.ndarray, index: np.ndarray, entries: int) -> "Records":
        key, count = np.unique(block.astype(np.int64) * entries + index, return_counts=True)
        return Records((key // entries).astype(np.int32), (key % entries).astype(np.int32), count.astype(np.float64))

    @staticmethod
    def joined(parts: list["Records"], offsets: list[int]) -> "Records":
        return Records(np.concatenate([r.block + o for r, o in zip(parts, offsets)]),
                       np.concatenate([r.index for r in parts]), np.concatenate([r.count for r in parts]))

    def matrix(self, blocks: int, entries: int):  # noqa: ANN201 (a scipy.sparse.csr_matrix)
        """(blocks, entries) sparse counts: costs of every class at once are one product with it."""
        if not hasattr(self, "_matrix"):
            from scipy.sparse import csr_matrix

            self._matrix = csr_matrix((self.count, (self.block, self.index)), shape=(blocks, entries))
        return self._matrix


@dataclass
class Blocks:
    """One or more tiles' symbols of one level, counted per block and table entry."""

    records: dict[str, Records]
    escape_bits: np.ndarray  # per block
    activity: np.ndarray  # per block: non-zero symbols per position
    blocks: int
    left: np.ndarray  # per block: the block to its left in the same tile, -1 in the first column
    column: np.ndarray  # per block: its column in its tile


def escape_bits(magnitudes: np.ndarray, r: int) -> np.ndarray:
    """Bits of each escape's class and extra bits (0 below R): class n costs n + 1, extra bits n."""
    m = magnitudes.astype(np.int64) - r + 1
    n = np.frexp(np.maximum(m, 1).astype(np.float64))[1] - 1  # 2^n <= m < 2^(n+1)
    return np.where(m >= 1, 2 * n + 1, 0).astype(np.float64)


class Layout:
    """The table layout of a model: kinds, sizes and each flag entry's coding step."""

    def __init__(self, tables: entropy.SymbolTables) -> None:
        self.tables, self.scheme = tables, tables.scheme
        self.k, self.r, self.groups = tables.atoms, tables.value_range, tables.groups
        s = self.scheme
        self.kinds = {"flag": Kind("flag", s.flag_contexts, 2, FLAG_PRIOR, 1.0),
                      "magnitude": Kind("magnitude", s.value_contexts, self.r, VALUE_PRIOR, 0.1),
                      "sign": Kind("sign", s.sign_contexts, 2, SIGN_PRIOR, 1.0)}
        fc = np.arange(s.flag_contexts)
        row = fc // NUM_ACTIVITY
        phase = np.where(row == 0, 0, 1 + (row - 1) // NUM_NESTED_MAGNITUDE)  # nested: row(phase, M)
        atom = np.arange(self.k)
        #: coding step (phase · G + group) of each flag distribution (atom, flag context)
        self.flag_step = (phase[None, :] * self.groups + (atom // (self.k // self.groups))[:, None]).ravel()

    def entries(self, kind: str) -> int:
        c = self.kinds[kind]
        return self.k * c.contexts * c.outcomes

    def blocks(self, symbols: np.ndarray, block: int) -> Blocks:
        """One tile's symbols (K, h, w) counted per ``block``×``block`` block of positions."""
        k, h, w = symbols.shape
        s = symbols.astype(np.int32)
        flag, value = scheme_contexts(self.scheme, s, self.groups)
        across = -(-w // block)
        bid = (np.arange(h)[:, None] // block) * across + np.arange(w)[None, :] // block
        n_blocks = -(-h // block) * across
        every = np.broadcast_to(bid, s.shape)
        atom = np.broadcast_to(np.arange(k)[:, None, None], s.shape)
        nz = s != 0
        v, a, b, vc = s[nz], atom[nz], every[nz], value[nz]
        sign_contexts = self.scheme.sign_contexts
        records = {
            "flag": Records.of(every.ravel(), ((atom * self.scheme.flag_contexts + flag) * 2 + nz).ravel(),
                               self.entries("flag")),
            "magnitude": Records.of(b, (a * self.scheme.value_contexts + vc // sign_contexts) * self.r
                                    + np.minimum(np.abs(v), self.r) - 1, self.entries("magnitude")),
            "sign": Records.of(b, (a * sign_contexts + vc % sign_contexts) * 2 + (v > 0), self.entries("sign"))}
        positions = np.bincount(bid.ravel(), minlength=n_blocks)
        active = np.bincount(bid.ravel(), weights=nz.sum(0).ravel(), minlength=n_blocks)
        column = np.arange(n_blocks) % across
        return Blocks(records, np.bincount(b, weights=escape_bits(np.abs(v), self.r), minlength=n_blocks),
                      active / positions, n_blocks, np.where(column > 0, np.arange(n_blocks) - 1, -1), column)

    def joined(self, parts: list[Blocks]) -> Blocks:
        offsets = list(np.cumsum([0] + [p.blocks for p in parts])[:-1])
        return Blocks({kind: Records.joined([p.records[kind] for p in parts], offsets) for kind in self.kinds},
                      np.concatenate([p.escape_bits for p in parts]), np.concatenate([p.activity for p in parts]),
                      sum(p.blocks for p in parts),
                      np.concatenate([np.where(p.left >= 0, p.left + o, -1) for p, o in zip(parts, offsets)]),
                      np.concatenate([p.column for p in parts]))

    def counts(self, records: Records, kind: str, labels: np.ndarray, classes: int) -> np.ndarray:
        """(classes, K, contexts, outcomes) counts of the records, by their block's label."""
        c, n = self.kinds[kind], self.entries(kind)
        one_hot = np.eye(classes)[labels]  # (blocks, classes)
        flat = np.asarray(records.matrix(len(labels), n).T @ one_hot).T
        return flat.reshape(classes, self.k, c.contexts, c.outcomes)

    def one_table(self, counts: np.ndarray, kind: str) -> np.ndarray:
        """(K, contexts, outcomes) probabilities by the shipped recipe (``train.tables._smoothed``):
        magnitudes in its layout, both signs of |v| counted in a symmetric row of 2R."""
        c = self.kinds[kind]
        if kind != "magnitude":
            return _smoothed(counts[None], c.prior, c.floor)[0]
        symmetric = np.concatenate([counts[..., ::-1], counts], axis=-1)
        half = _smoothed(symmetric[None], c.prior, c.floor)[0][..., self.r:]
        return half / half.sum(-1, keepdims=True)

    def shipped(self, q: int) -> dict[str, np.ndarray]:
        """The model's tables of level q as (K, contexts, outcomes) probabilities."""
        t = self.tables
        p = np.clip(t.p_nonzero[q], MIN_P, 1 - MIN_P)
        m = t.values[q][..., self.r:]
        return {"flag": np.stack([1 - p, p], -1), "magnitude": m / m.sum(-1, keepdims=True),
                "sign": np.stack([1 - t.signs[q], t.signs[q]], -1)}


def bits_table(probs: np.ndarray) -> np.ndarray:
    """−log2 of probabilities, clamped to at least MIN_P, flattened per class."""
    return -np.log2(np.maximum(probs, MIN_P)).reshape(probs.shape[0], -1)


def block_costs(blocks: Blocks, tables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bits per (class, block) of each kind; tables: (classes, K, contexts, outcomes) per kind."""
    out = {}
    for kind, table in tables.items():
        nlog = bits_table(table)
        out[kind] = np.asarray(blocks.records[kind].matrix(blocks.blocks, nlog.shape[1]) @ nlog.T).T
    return out


# ---------------------------------------------------------------- learning the classes


@dataclass
class ClassModel:
    tables: dict[str, np.ndarray]  # (C, K, contexts, outcomes) per kind
    frequencies: np.ndarray  # (C,) static class probabilities (the side information's code)
    training_bits: list[float] = field(default_factory=list)  # per alternation, side information included
    after_left: np.ndarray | None = None  # (C + 1, C): P(class | the left block's class, or C: none)


#: parametric classes: odds scales of P(non-zero) and magnitude tilts tried per class
SCALE_GRID = 2.0 ** np.linspace(-2.5, 2.5, 41)
TILT_GRID = np.linspace(0.5, 1.6, 45)


POOLED_SCALE_GRID = 2.0 ** np.linspace(-3, 3, 61)


@dataclass(frozen=True)
class ClassKind:
    """What a class changes. Tables: a table per class and kind in ``classed``, fitted from the
    class's counts. Parametric: the one-class tables with an odds scale of P(non-zero) per class
    (and per phase with ``per_phase``) and a magnitude tilt per class: a few numbers per class.
    Pooled: the one-class tables changed by factors shared by all atoms: an odds scale of
    P(non-zero) per (class, flag context), a factor per (class, value row, |v|) on the magnitude
    rows and an odds scale of P(v > 0) per (class, sign context)."""

    classed: tuple[str, ...]
    parametric: bool = False
    per_phase: bool = False
    pooled: bool = False


def class_tables(layout: Layout, train: Blocks, labels: np.ndarray, classes: int, kind: ClassKind,
                 one: dict[str, np.ndarray], alpha: dict[str, float]) -> dict[str, np.ndarray]:
    """Per class: (counts + α·one-class table) / (n + α), or the parametric fit; kinds not
    classed share the one-class table."""
    out = {}
    for name in layout.kinds:
        if name not in kind.classed:
            out[name] = one[name][None]
            continue
        counts = layout.counts(train.records[name], name, labels, classes)
        if kind.pooled:
            out[name] = (pooled_magnitudes(counts, one[name]) if name == "magnitude"
                         else pooled_odds(counts, one[name][..., 1]))
        elif not kind.parametric:
            out[name] = (counts + alpha[name] * one[name]) / (counts.sum(-1, keepdims=True) + alpha[name])
        elif name == "flag":
            out[name] = scaled_flags(layout, counts, one[name][..., 1], kind.per_phase)
        else:
            out[name] = tilted_magnitudes(counts, one[name])
    return out


def scaled_flags(layout: Layout, counts: np.ndarray, p: np.ndarray, per_phase: bool) -> np.ndarray:
    """(C, K, contexts, 2): P(non-zero) with each class's best odds scale from SCALE_GRID."""
    classes = counts.shape[0]
    group = (layout.flag_step // layout.groups if per_phase else np.zeros_like(layout.flag_step))
    groups = group.max() + 1
    n0, n1 = counts[..., 0].reshape(classes, -1), counts[..., 1].reshape(classes, -1)
    p = np.clip(p.reshape(-1), MIN_P, 1 - MIN_P)
    cost = np.empty((len(SCALE_GRID), classes, groups))
    for i, c in enumerate(SCALE_GRID):
        scaled = scale_odds(p, c)
        per_entry = -(n1 * np.log2(scaled) + n0 * np.log2(1 - scaled))
        cost[i] = np.stack([np.bincount(group, weights=e, minlength=groups) for e in per_entry])
    best = SCALE_GRID[cost.argmin(0)]  # (C, groups)
    scaled = scale_odds(p[None], best[:, group])
    return np.stack([1 - scaled, scaled], -1).reshape(counts.shape)


def pooled_odds(counts: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(C, K, contexts, 2): P(outcome 1) with the best odds scale per (class, context) from
    POOLED_SCALE_GRID, shared by all atoms."""
    n0, n1 = counts[..., 0], counts[..., 1]
    p = np.clip(p, MIN_P, 1 - MIN_P)
    cost = np.empty((len(POOLED_SCALE_GRID), counts.shape[0], counts.shape[2]))
    for i, c in enumerate(POOLED_SCALE_GRID):
        scaled = scale_odds(p, c)[None]
        cost[i] = -(n1 * np.log2(scaled) + n0 * np.log2(1 - scaled)).sum(1)  # (C, contexts)
    best = POOLED_SCALE_GRID[cost.argmin(0)]  # (C, contexts)
    scaled = scale_odds(p[None], best[:, None, :])
    return np.stack([1 - scaled, scaled], -1)


def pooled_magnitudes(counts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(C, K, rows, R): magnitude rows times a factor per (class, row, |v|) shared by all atoms,
    fitted by iterative scaling (``sccodec.train.block_classes.scaling_factors``)."""
    rows = m[None] * scaling_factors(counts, m)[:, None]
    return rows / rows.sum(-1, keepdims=True)


def tilted_magnitudes(counts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(C, K, rows, R): magnitude rows with each class's best tilt from TILT_GRID."""
    r = m.shape[-1]
    powers = TILT_GRID[:, None] ** np.arange(1, r + 1)[None]
    rows = m[None] * powers[:, None, None, :]  # (tilts, K, rows, R)
    nlog = -np.log2(np.maximum(rows / rows.sum(-1, keepdims=True), MIN_P)).reshape(len(TILT_GRID), -1)
    best = (counts.reshape(counts.shape[0], -1) @ nlog.T).argmin(1)
    tilted = m[None] * powers[best][:, None, None, :]
    return tilted / tilted.sum(-1, keepdims=True)


def learn_classes(layout: Layout, train: Blocks, classes: int, kind: ClassKind, iterations: int,
                  one: dict[str, np.ndarray], alpha: dict[str, float]) -> ClassModel:
    """Alternate: fit tables per class, move every block to its cheapest class."""
    classed = kind.classed
    edges = np.quantile(train.activity, np.linspace(0, 1, classes + 1)[1:-1])
    labels = np.searchsorted(edges, train.activity, side="right")
    history = []
    shared = sum(c[0].sum() for c in block_costs(train, {k: one[k][None] for k in layout.kinds
                                                          if k not in classed}).values())
    for _ in range(iterations + 1):
        tables = class_tables(layout, train, labels, classes, kind, one, alpha)
        frequencies = (np.bincount(labels, minlength=classes) + 1) / (train.blocks + classes)
        costs = block_costs(train, {k: tables[k] for k in classed})
        total = sum(costs.values()) - np.log2(frequencies)[:, None]
        labels = total.argmin(0)
        history.append(float(total.min(0).sum() + shared + train.escape_bits.sum()))
    tables = class_tables(layout, train, labels, classes, kind, one, alpha)
    frequencies = (np.bincount(labels, minlength=classes) + 1) / (train.blocks + classes)
    left = np.where(train.left >= 0, labels[train.left], classes)
    pairs = np.bincount(left * classes + labels, minlength=(classes + 1) * classes).reshape(classes + 1, classes) + 1.0
    return ClassModel(tables, frequencies, history, pairs / pairs.sum(1, keepdims=True))


# ---------------------------------------------------------------- coding a held-out tile


@dataclass
class Bits:
    flag: float = 0.0
    magnitude: float = 0.0
    sign: float = 0.0
    escape: float = 0.0
    side: float = 0.0

    @property
    def total(self) -> float:
        return self.flag + self.magnitude + self.sign + self.escape + self.side

    def __add__(self, other: "Bits") -> "Bits":
        return Bits(*(getattr(self, f) + getattr(other, f) for f in ("flag", "magnitude", "sign", "escape", "side")))

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 1) for k, v in (("flag", self.flag), ("magnitude", self.magnitude),
                ("sign", self.sign), ("escape", self.escape), ("side", self.side), ("total", self.total))}


def chosen_classes(blocks: Blocks, model: ClassModel, side: str) -> tuple[np.ndarray, dict[str, np.ndarray], float]:
    """(each block's cheapest class, the bits per kind and block there, side bits) for one tile.
    side: 'frequencies' (static class code), 'uniform' (log2 C per block), 'left' (coded with
    P(class | the left block's class), chosen greedily in raster order) or 'free'."""
    costs = block_costs(blocks, model.tables)
    classes = len(model.frequencies)
    total = sum(c if c.shape[0] == classes else np.repeat(c, classes, 0) for c in costs.values())
    if side == "left":
        side_bits = -np.log2(model.after_left)  # (C + 1, C)
        labels = np.zeros(blocks.blocks, dtype=np.int64)
        spent = 0.0
        for column in range(blocks.column.max(initial=-1) + 1):
            here = np.flatnonzero(blocks.column == column)
            before = np.where(blocks.left[here] >= 0, labels[blocks.left[here]], classes)
            labels[here] = (total[:, here] + side_bits[before].T).argmin(0)
            spent += side_bits[before, labels[here]].sum()
    else:
        per_class = {"frequencies": -np.log2(model.frequencies), "uniform": np.full(classes, math.log2(classes)),
                     "free": np.zeros(classes)}[side]
        labels = (total + per_class[:, None]).argmin(0)
        spent = per_class[labels].sum()
    chosen = {k: c[labels if c.shape[0] == classes else 0, np.arange(blocks.blocks)] for k, c in costs.items()}
    return labels, chosen, float(spent)


def coded(blocks: Blocks, model: ClassModel, side: str) -> Bits:
    _, chosen, side_bits = chosen_classes(blocks, model, side)
    return Bits(chosen["flag"].sum(), chosen["magnitude"].sum(), chosen["sign"].sum(),
                blocks.escape_bits.sum(), side_bits)


def adapted(layout: Layout, blocks: Blocks, labels: np.ndarray, tables: dict[str, np.ndarray]
            ) -> tuple[Bits, tuple[int, ...], int]:
    """One tile coded with per-block tables and the per-tile adaptation chosen as
    ``sccodec.adaptation.choose`` does (odds scale per coding step, one magnitude tilt)."""
    steps = layout.scheme.phases * layout.groups
    # flags: counts per (class, atom, context), each distribution's P(non-zero) and coding step
    f = blocks.records["flag"]
    classes_f = tables["flag"].shape[0]
    per_class = layout.entries("flag") // 2  # distributions (atom, flag context) per class
    key = (labels[f.block].astype(np.int64) * per_class if classes_f > 1 else 0) + f.index // 2
    n = per_class * classes_f
    ones = np.bincount(key, weights=f.count * (f.index % 2), minlength=n)
    total = np.bincount(key, weights=f.count, minlength=n)
    used = np.flatnonzero(total)
    p = np.clip(tables["flag"][..., 1].reshape(-1)[used], MIN_P, 1 - MIN_P)
    n1, n0 = ones[used], total[used] - ones[used]
    step = layout.flag_step[used % per_class]
    scaled = np.stack([scale_odds(p, s) for s in FLAG_SCALES])
    cost = -(n1 * np.log2(scaled) + n0 * np.log2(1 - scaled))
    per_step = np.stack([np.bincount(step, weights=c, minlength=steps) for c in cost])  # (scales, steps)
    side_flag = -np.log2(FLAG_INDEX_PROBS)
    flags = (per_step + side_flag[:, None]).argmin(0)
    flags = np.where(np.bincount(step, minlength=steps) > 0, flags, NEUTRAL_FLAG)
    flag_bits = per_step[flags, np.arange(steps)].sum()
    side = side_flag[flags].sum()
    # magnitudes: counts per (class, atom, row) and |v|, one tilt for the tile
    m = blocks.records["magnitude"]
    classes_m = tables["magnitude"].shape[0]
    rows_n = layout.entries("magnitude") // layout.r
    row = (labels[m.block] * rows_n if classes_m > 1 else 0) + m.index // layout.r
    counts = np.bincount(row.astype(np.int64) * layout.r + m.index % layout.r, weights=m.count,
                         minlength=classes_m * rows_n * layout.r).reshape(-1, layout.r)
    used = np.flatnonzero(counts.sum(1))
    rows, c = np.maximum(tables["magnitude"].reshape(-1, layout.r)[used], MIN_P), counts[used]
    bits = []
    for t in VALUE_TILTS:
        w = rows * tilt_weights(t, layout.r)[layout.r:]
        bits.append(-(c * np.log2(w)).sum() + (c.sum(1) * np.log2(w.sum(1))).sum())
    side_tilt = -np.log2(TILT_INDEX_PROBS)
    tilt = int(np.argmin(np.array(bits) + side_tilt)) if used.size else VALUE_TILTS.index(1.0)
    magnitude_bits = bits[tilt] if used.size else 0.0
    sign = blocks.records["sign"]
    sign_nlog = bits_table(tables["sign"])
    sign_class = labels[sign.block] if tables["sign"].shape[0] > 1 else np.zeros_like(sign.block)
    sign_bits = (sign.count * sign_nlog[sign_class, sign.index]).sum()
    return (Bits(flag_bits, magnitude_bits, sign_bits, blocks.escape_bits.sum(), side + side_tilt[tilt]),
            tuple(int(i) for i in flags), tilt)


def shipped_adapted(layout: Layout, symbols: np.ndarray, q: int) -> tuple[Bits, tuple[int, ...], int]:
    """The coder's own per-tile adaptation (``choose``) on the shipped tables, symbol by symbol."""
    tables, r = layout.tables, layout.r
    s = symbols.astype(np.int32)
    contexts = scheme_contexts(layout.scheme, s, layout.groups)
    adaptation = choose(s, tables, q, contexts)
    flag, value = contexts
    k, h, w = s.shape
    atom = np.broadcast_to(np.arange(k)[:, None, None], s.shape)
    step = phase_map(layout.scheme, h, w)[None] * layout.groups + atom // (k // layout.groups)
    nz = s != 0
    flag_bits = 0.0
    for i in range(layout.scheme.phases * layout.groups):
        here = step == i
        p = np.clip(adaptation.flag_probs(tables.p_nonzero[q, atom[here], flag[here]], i), MIN_P, 1 - MIN_P)
        flag_bits += -np.log2(np.where(nz[here], p, 1 - p)).sum()
    rows = adaptation.value_rows(tables.value_table(q)[atom[nz], value[nz]])
    v = s[nz]
    p_value = rows[np.arange(v.size), value_index(v, r)] / rows.sum(1)
    value_bits = -np.log2(np.maximum(p_value, MIN_P)).sum()
    sign_p = tables.signs[q][atom[nz], value[nz] % layout.scheme.sign_contexts]
    sign_bits = -np.log2(np.maximum(np.where(v > 0, sign_p, 1 - sign_p), MIN_P)).sum()
    side = -np.log2(FLAG_INDEX_PROBS[list(adaptation.flags)]).sum() - np.log2(TILT_INDEX_PROBS[adaptation.tilt])
    escapes = escape_bits(np.abs(v), r).sum()
    return Bits(flag_bits, value_bits - sign_bits, sign_bits, escapes, side), adaptation.flags, adaptation.tilt


# ---------------------------------------------------------------- the experiment


def percent(new: float, old: float) -> float:
    return 100.0 * (new / old - 1.0)


def table_sizes(layout: Layout, model_file) -> dict[str, object]:  # noqa: ANN001 (a sccodec.weights.ModelFile)
    """Bytes the class tables add to a weights file (class 0 replaces the shipped tables), and
    whether C classes fit the budget as the file is and with its transforms in float16."""
    from sccodec.train.export import is_transform_weight

    t, q = layout.tables, layout.tables.qualities
    s = layout.scheme
    per = {"p_nonzero": t.p_nonzero.size * TABLE_BYTES, "magnitudes": t.values[..., layout.r:].size * TABLE_BYTES,
           "signs": t.signs.size * TABLE_BYTES}
    pooled = q * (s.flag_contexts + s.value_contexts * layout.r + s.sign_contexts) * TABLE_BYTES
    each = {"full": sum(per.values()), "flags": per["p_nonzero"], "values": per["magnitudes"] + per["signs"],
            "pooled": pooled, "scaled": q * 2 * TABLE_BYTES, "scaled-phase": q * (s.phases + 1) * TABLE_BYTES}
    factors = ("pooled", "scaled", "scaled-phase")  # every class is factors on the one-class tables
    size = model_file.path.stat().st_size
    transforms = sum(v.size * 4 for k, v in model_file.tensors.items() if is_transform_weight(k))
    out: dict[str, object] = {"bytes_per_class": per, "pooled_bytes_per_class": pooled, "model_file_bytes": size,
                              "budget_bytes": WEIGHTS_BUDGET, "headroom_bytes": WEIGHTS_BUDGET - size,
                              "float16_transforms_save_bytes": transforms // 2, "extra_bytes": {}}
    for kind, bytes_per_class in each.items():
        for classes in (2, 4, 8, 16):
            # the class code's tables: frequencies and P(class | left class), per level
            extra = (classes - 1) * bytes_per_class + q * (classes + (classes + 1) * classes) * TABLE_BYTES
            if kind in factors:
                extra = classes * bytes_per_class + q * (classes + (classes + 1) * classes) * TABLE_BYTES
            out["extra_bytes"][f"C{classes} {kind}"] = {
                "extra": extra, "file": size + extra, "fits": size + extra <= WEIGHTS_BUDGET,
                "fits_with_float16_transforms": size + extra - transforms // 2 <= WEIGHTS_BUDGET}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", default="scvae-gdn")
    ap.add_argument("--train-images", type=int, default=100)
    ap.add_argument("--levels", default="", help="quality indices 0..Q-1, comma-separated (default: all)")
    ap.add_argument("--blocks", default="1,2,4,8,16")
    ap.add_argument("--classes", default="2,4,8,16")
    ap.add_argument("--kinds", default="full,flags,pooled",
                    help="full: all tables classed; flags: P(non-zero) only; values: magnitudes and signs "
                         "only; scaled: an odds scale and a tilt per class; scaled-phase: a scale per phase; "
                         "pooled: factors per (class, context) shared by all atoms")
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--alpha-flags", type=float, default=FLAG_PRIOR)
    ap.add_argument("--alpha-values", type=float, default=VALUE_PRIOR)
    ap.add_argument("--alpha-signs", type=float, default=SIGN_PRIOR)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/block_classes_symbols.npz"))
    ap.add_argument("--ans-check", type=int, default=2, help="held-out photos also coded with real ANS (all levels)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "block_classes.json")
    ap.add_argument("--report-only", action="store_true", help="only rewrite the .md summary from --out")
    args = ap.parse_args()
    if args.report_only:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.out.read_text())))
        return
    started = time.time()
    codec = Codec(args.model, device="cpu", threads=args.threads)
    layout = Layout(codec.coder.tables)
    train_paths, held_paths = split_holdout(list_images(args.data))
    train_paths = evenly_spaced(train_paths, args.train_images)
    train, held = cached_symbols(codec, train_paths, held_paths, args.cache)
    levels = [int(q) for q in args.levels.split(",")] if args.levels else list(range(layout.tables.qualities))
    block_sizes = [int(b) for b in args.blocks.split(",")]
    class_counts = [int(c) for c in args.classes.split(",")]
    kinds = {"full": ClassKind(("flag", "magnitude", "sign")), "flags": ClassKind(("flag",)),
             "values": ClassKind(("magnitude", "sign")),
             "scaled": ClassKind(("flag", "magnitude"), parametric=True),
             "scaled-phase": ClassKind(("flag", "magnitude"), parametric=True, per_phase=True),
             "pooled": ClassKind(("flag", "magnitude", "sign"), pooled=True)}
    kinds = {k: kinds[k] for k in args.kinds.split(",")}
    alpha = {"flag": args.alpha_flags, "magnitude": args.alpha_values, "sign": args.alpha_signs}
    sides = ("frequencies", "uniform", "left", "free")
    results: dict[str, dict] = {}
    checks = []
    for q in levels:
        t0 = time.time()
        level: dict[str, object] = {}
        shipped_tables = {k: v[None] for k, v in layout.shipped(q).items()}
        shipped_model = ClassModel(shipped_tables, np.ones(1))
        adapt_bits = Bits()
        for i, s in enumerate(held):
            bits, flags, tilt = shipped_adapted(layout, s[q], q)
            adapt_bits += bits
            mine, my_flags, my_tilt = adapted(layout, layout.blocks(s[q], 16), np.zeros(1, int), shipped_tables)
            checks.append({"level": q, "photo": i, "same_choice": (flags, tilt) == (my_flags, my_tilt),
                           "bits_choose": round(bits.total, 3), "bits_generic": round(mine.total, 3)})
            if i < args.ans_check:
                words = entropy.encode(s[q], layout.tables, q, adaptive=True)
                checks[-1]["ans_bits"] = 32 * len(words)
        level["shipped+adapt"] = adapt_bits.as_dict()
        for block in block_sizes:
            train_blocks = layout.joined([layout.blocks(s[q], block) for s in train])
            held_blocks = [layout.blocks(s[q], block) for s in held]
            if block == block_sizes[0]:
                level["shipped"] = sum((coded(b, shipped_model, "free") for b in held_blocks), Bits()).as_dict()
            totals = {kind: layout.counts(train_blocks.records[kind], kind, np.zeros(train_blocks.blocks, int), 1)[0]
                      for kind in layout.kinds}
            one = {kind: layout.one_table(c, kind) for kind, c in totals.items()}
            refit = learn_classes(layout, train_blocks, 1, ClassKind(tuple(layout.kinds)), 0, one, alpha)
            if block == block_sizes[0]:
                level["refit"] = sum((coded(b, refit, "free") for b in held_blocks), Bits()).as_dict()
                level["refit+adapt"] = sum((adapted(layout, b, np.zeros(b.blocks, int), refit.tables)[0]
                                            for b in held_blocks), Bits()).as_dict()
            for kind_name, kind in kinds.items():
                for classes in class_counts:
                    model = learn_classes(layout, train_blocks, classes, kind, args.iterations, one, alpha)
                    name = f"classes C{classes} B{block} {kind_name}"
                    entry = {side: sum((coded(b, model, side) for b in held_blocks), Bits()).as_dict()
                             for side in sides}
                    for side in ("uniform", "free"):  # secondary codes: their totals only
                        entry[side] = {"total": entry[side]["total"]}
                    used = np.zeros(classes)
                    for side in ("frequencies", "left"):
                        with_adapt = Bits()
                        for b in held_blocks:
                            labels, _, side_bits = chosen_classes(b, model, side)
                            used += np.bincount(labels, minlength=classes) if side == "frequencies" else 0
                            bits = adapted(layout, b, labels, model.tables)[0]
                            bits.side += side_bits
                            with_adapt += bits
                        entry[f"{side}+adapt"] = with_adapt.as_dict()
                    entry["class_frequencies"] = [round(float(f), 4) for f in model.frequencies]
                    entry["held_out_class_use"] = [int(u) for u in used]
                    entry["training_bits_per_alternation"] = [round(b) for b in model.training_bits]
                    level[name] = entry
                    print(f"q{q + 1} {name}: {percent(entry['frequencies']['total'], level['refit']['total']):+.2f}% "
                          f"vs refit ({percent(entry['left']['total'], level['refit']['total']):+.2f}% left), "
                          f"{percent(entry['frequencies+adapt']['total'], level['refit+adapt']['total']):+.2f}% "
                          f"adapted ({time.time() - t0:.0f}s)", flush=True)
        results[str(q + 1)] = level
        print(f"q{q + 1}: shipped {level['shipped']['total']:.0f}  +adapt {level['shipped+adapt']['total']:.0f}  "
              f"refit {level['refit']['total']:.0f}  refit+adapt {level['refit+adapt']['total']:.0f} bits "
              f"({time.time() - t0:.0f}s)", flush=True)
    out = {"model": args.model, "weights_hash": codec.model_file.digest.hex(),
           "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
           "command": " ".join(["python", "bench/block_classes.py", *sys.argv[1:]]),
           "train_photos": len(train), "held_out_photos": [p.name for p in held_paths],
           "held_out_positions": int(sum(s.shape[2] * s.shape[3] for s in held)),
           "levels": [q + 1 for q in levels], "iterations": args.iterations, "alpha": alpha,
           "side_information": {"frequencies": "each block's class coded with the static class frequencies of the "
                                               "training assignment (C numbers per level in the model)",
                                "left": "each block's class coded with P(class | the left block's class), learned "
                                        "on the training assignment; chosen greedily in raster order",
                                "uniform": "log2 C bits per block", "free": "no side information (oracle bound)"},
           "tables": table_sizes(layout, codec.model_file),
           "per_level": results, "checks": checks, "seconds": round(time.time() - started)}
    out["summary"] = summary(out)
    args.out.write_text(dumped(out))
    args.out.with_suffix(".md").write_text(markdown(out))


def dumped(out: dict) -> str:
    """JSON with one line per top-level key, per level and configuration, and per summary row."""
    def nested(value: dict, indent: str) -> str:
        return "{\n" + ",\n".join(f"{indent}{json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}"
                                   for k, v in value.items()) + "}"

    lines = []
    for key, value in out.items():
        if key == "per_level":
            text = "{\n" + ",\n".join(f"  {json.dumps(q)}: {nested(v, '   ')}" for q, v in value.items()) + "}"
        elif key == "summary":
            text = nested(value, "  ")
        else:
            text = json.dumps(value)
        lines.append(f" {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def summary(out: dict) -> dict:
    """Per configuration: % of bits per level and over the sum of all levels, against each baseline."""
    levels = out["per_level"]
    first = next(iter(levels.values()))
    names = [n for n in first if n.startswith("classes")]
    total = {base: sum(levels[q][base]["total"] for q in levels) for base in ("shipped", "shipped+adapt", "refit",
                                                                               "refit+adapt")}
    rows = {"b vs a (shipped+adapt vs shipped)": {
        "per_level": [round(percent(levels[q]["shipped+adapt"]["total"], levels[q]["shipped"]["total"]), 3)
                      for q in levels],
        "sum": round(percent(total["shipped+adapt"], total["shipped"]), 3)},
        "c vs a (refit vs shipped)": {
        "per_level": [round(percent(levels[q]["refit"]["total"], levels[q]["shipped"]["total"]), 3) for q in levels],
        "sum": round(percent(total["refit"], total["shipped"]), 3)}}
    for name in names:
        for side in ("frequencies", "uniform", "left", "free", "frequencies+adapt", "left+adapt"):
            bits = {q: levels[q][name][side]["total"] for q in levels}
            mine = sum(bits.values())
            bases = (("refit+adapt", "shipped+adapt") if side.endswith("adapt")
                     else ("refit", "shipped", "shipped+adapt"))
            rows[f"{name} [{side}]"] = {
                f"vs {base}": {"per_level": [round(percent(bits[q], levels[q][base]["total"]), 3) for q in levels],
                               "mean_per_level": round(float(np.mean([percent(bits[q], levels[q][base]["total"])
                                                                      for q in levels])), 3),
                               "sum": round(percent(mine, total[base]), 3)} for base in bases}
    return rows


GOAL = -1.5  # % of bits a new format feature must save


def markdown(out: dict) -> str:
    """The summary page: baselines, every configuration, table sizes, checks, the conclusion."""
    levels, rows = out["per_level"], out["summary"]
    q = list(levels)
    lines = [f"# Block classes: oracle test (`{out['command']}`)", "",
             f"{out['model']} ({out['weights_hash']}), {out['train_photos']} training photos for fitting, "
             f"{len(out['held_out_photos'])} held-out photos ({out['held_out_positions']} latent positions) for "
             f"evaluation, levels {', '.join(q)}, ideal code lengths; {out['machine']['cpu']}, "
             f"{out['seconds']} s. Negative % = fewer bits.", "",
             "## Baselines (held-out bits, all 8 photos)", "",
             "| level | (a) shipped | (b) shipped+adapt | (c) refit | (c)+adapt | b vs a | c vs a |",
             "|---|---|---|---|---|---|---|"]
    for i, level in enumerate(q):
        v = levels[level]
        lines.append(f"| {level} | {v['shipped']['total']:.0f} | {v['shipped+adapt']['total']:.0f} | "
                     f"{v['refit']['total']:.0f} | {v['refit+adapt']['total']:.0f} | "
                     f"{rows['b vs a (shipped+adapt vs shipped)']['per_level'][i]:+.2f}% | "
                     f"{rows['c vs a (refit vs shipped)']['per_level'][i]:+.2f}% |")
    lines += ["", "## Class configurations", "",
              "% of bits; *mean* = mean of the per-level % (same symbols, so equal distortion at each level: the "
              "BD-rate's counterpart), *sum* = over the bits of all levels. Side information: *freq* = static "
              "class frequencies, *left* = P(class | left block's class), *unif* = log2 C per block, *free* = none "
              "(not a real code: with free side information small blocks pick the best of C tables for nothing). "
              "(c) = the refit, (a) = shipped tables, (b) = shipped + per-tile adaptation.", "",
              "| config | (d) vs (c) mean: freq | left | unif | free | sum: freq | left | "
              "(d)+adapt vs (c)+adapt mean: freq | left | sum: left | (d) vs (a): left | (d) vs (b): left | "
              "(d)+adapt vs (b): left |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    names = [n for n in next(iter(levels.values())) if n.startswith("classes")]
    for name in names:
        r = {side: rows[f"{name} [{side}]"] for side in ("frequencies", "left", "uniform", "free",
                                                         "frequencies+adapt", "left+adapt")}
        cells = [r["frequencies"]["vs refit"]["mean_per_level"], r["left"]["vs refit"]["mean_per_level"],
                 r["uniform"]["vs refit"]["mean_per_level"], r["free"]["vs refit"]["mean_per_level"],
                 r["frequencies"]["vs refit"]["sum"], r["left"]["vs refit"]["sum"],
                 r["frequencies+adapt"]["vs refit+adapt"]["mean_per_level"],
                 r["left+adapt"]["vs refit+adapt"]["mean_per_level"], r["left+adapt"]["vs refit+adapt"]["sum"],
                 r["left"]["vs shipped"]["mean_per_level"], r["left"]["vs shipped+adapt"]["mean_per_level"],
                 r["left+adapt"]["vs shipped+adapt"]["mean_per_level"]]
        lines.append(f"| {name[8:]} | " + " | ".join(f"{c:+.2f}" for c in cells) + " |")
    best = min(names, key=lambda n: rows[f"{n} [left]"]["vs refit"]["mean_per_level"])
    best_adapted = min(names, key=lambda n: rows[f"{n} [left+adapt]"]["vs refit+adapt"]["mean_per_level"])

    def fits(name: str) -> bool:
        classes, _, kind = name[8:].split()
        return out["tables"]["extra_bytes"][f"{classes} {kind}"]["fits"]

    fitting = [n for n in names if fits(n)]
    best_fitting = min(fitting, key=lambda n: rows[f"{n} [left+adapt]"]["vs refit+adapt"]["mean_per_level"],
                       default=None)
    lines += ["", "## Per level: the best configurations (side information: left)", ""]
    shown = [("(d) vs (c)", best, "left", "vs refit"),
             ("(d)+adapt vs (c)+adapt", best_adapted, "left+adapt", "vs refit+adapt")]
    if best_fitting:
        shown += [("(d)+adapt vs (c)+adapt, best that fits the weights budget", best_fitting, "left+adapt",
                   "vs refit+adapt"),
                  ("the same vs (b) shipped+adapt", best_fitting, "left+adapt", "vs shipped+adapt")]
    for title, name, side, base in shown:
        per = rows[f"{name} [{side}]"][base]["per_level"]
        lines.append(f"- {title}, {name[8:]}: " + ", ".join(f"q{level} {p:+.2f}%" for level, p in zip(q, per)))
    lines += ["", "If each level took its own best configuration (picked on these same 8 photos, so slightly "
              "optimistic), (d)+adapt vs (c)+adapt, side information left:", "",
              "| level | configuration | change | (c)+adapt bits |", "|---|---|---|---|"]
    chosen_bits, base_bits = 0.0, 0.0
    for i, level in enumerate(q):
        name = min(names, key=lambda n: rows[f"{n} [left+adapt]"]["vs refit+adapt"]["per_level"][i])
        chosen_bits += levels[level][name]["left+adapt"]["total"]
        base_bits += levels[level]["refit+adapt"]["total"]
        lines.append(f"| {level} | {name[8:]} | "
                     f"{rows[f'{name} [left+adapt]']['vs refit+adapt']['per_level'][i]:+.2f}% | "
                     f"{levels[level]['refit+adapt']['total']:.0f} |")
    lines.append(f"| sum | | {percent(chosen_bits, base_bits):+.2f}% | {base_bits:.0f} |")
    for name in sorted({best, best_adapted}):
        lines += ["", f"Bits by part, {name[8:]} (side information: left) vs (c) refit, sum over levels:", "",
                  "| part | (c) refit | (d) | change |", "|---|---|---|---|"]
        for part in ("flag", "magnitude", "sign", "escape", "side", "total"):
            a = sum(levels[level]["refit"][part] for level in q)
            b = sum(levels[level][name]["left"][part] for level in q)
            lines.append(f"| {part} | {a:.0f} | {b:.0f} | {b - a:+.0f} ({percent(b, a) if a else 0:+.2f}%) |")
    t = out["tables"]
    lines += ["", "## Size in the weights file", "",
              f"One class of tables at {TABLE_BYTES} bytes an entry (float16 or 16-bit frequencies): "
              + ", ".join(f"{k} {v:,} B" for k, v in t["bytes_per_class"].items())
              + f"; a pooled class (factors per context shared by all atoms, all levels) "
              f"{t['pooled_bytes_per_class']:,} B. The model file is {t['model_file_bytes']:,} B of a "
              f"{t['budget_bytes']:,} B budget ({t['headroom_bytes']:,} B free); storing the transforms' kernels "
              f"in float16 (`sccodec export --float16-transforms`) would free {t['float16_transforms_save_bytes']:,} B "
              "more. Extra bytes include the class code's tables (frequencies and P(class | left class) per level).",
              "", "| classes | extra bytes | file | fits | fits with float16 transforms |", "|---|---|---|---|---|"]
    for name, v in t["extra_bytes"].items():
        lines.append(f"| {name} | {v['extra']:,} | {v['file']:,} | {'yes' if v['fits'] else 'no'} | "
                     f"{'yes' if v['fits_with_float16_transforms'] else 'no'} |")
    checks = out["checks"]
    same = sum(c["same_choice"] for c in checks)
    worst = max(abs(c["bits_generic"] / c["bits_choose"] - 1) for c in checks)
    ans = [c for c in checks if "ans_bits" in c]
    over = sum(c["ans_bits"] for c in ans) / sum(c["bits_choose"] for c in ans) - 1
    lines += ["", "## Checks", "",
              f"- This script's adaptation search (used for `+adapt` on class tables) picks the same indices as "
              f"`sccodec.adaptation.choose` on the shipped tables in {same}/{len(checks)} tiles; its bits differ by "
              f"at most {100 * worst:.3f}%.",
              f"- Real ANS (`sccodec.entropy.encode`, adaptive) vs the ideal (b) on {len(ans)} tiles: "
              f"{100 * over:+.2f}% (words of 32 bits, so small tiles round up)."]
    lines += ["", "## Limits of the oracle", "",
              "- The held-out symbols are those the shipped encoder rounds against the shipped tables; an encoder "
              "with classes would round against its class tables (not modelled).",
              "- Each block's class is chosen before the per-tile adaptation, not jointly; the class map greedily in "
              "raster order. A joint search could only lower the (d) numbers.",
              "- 8 held-out photos (each one tile); picking the best configuration on them is slightly optimistic.",
              "- Other kinds the script can test (`--kinds values,scaled,scaled-phase`: magnitudes and signs only; "
              "one odds scale (per phase) and one tilt per class) are not in this run."]
    verdict = rows[f"{best} [left]"]["vs refit"]["mean_per_level"]
    verdict_adapted = rows[f"{best_adapted} [left+adapt]"]["vs refit+adapt"]["mean_per_level"]
    lines += ["", "## Conclusion", "",
              f"Best without adaptation: {best[8:]}, {verdict:+.2f}% vs the refit (mean per level; sum "
              f"{rows[f'{best} [left]']['vs refit']['sum']:+.2f}%). Best with the per-tile adaptation on both "
              f"sides: {best_adapted[8:]}, {verdict_adapted:+.2f}% (sum "
              f"{rows[f'{best_adapted} [left+adapt]']['vs refit+adapt']['sum']:+.2f}%). "
              f"Threshold {GOAL:+.1f}%: {'met' if min(verdict, verdict_adapted) <= GOAL else 'not met'}."]
    if best_fitting:
        r = rows[f"{best_fitting} [left+adapt]"]
        lines[-1] += (f" Best that fits the weights budget: {best_fitting[8:]}, with adaptation "
                      f"{r['vs refit+adapt']['mean_per_level']:+.2f}% vs (c)+adapt (sum {r['vs refit+adapt']['sum']:+.2f}%), "
                      f"{r['vs shipped+adapt']['mean_per_level']:+.2f}% vs (b) (sum {r['vs shipped+adapt']['sum']:+.2f}%): "
                      f"threshold {'met' if r['vs refit+adapt']['mean_per_level'] <= GOAL else 'not met'}.")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
