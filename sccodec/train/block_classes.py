"""Fitting a model's block classes (.scv format 6, ``sccodec.block_classes``) on the symbols the
encoder writes for training photos.

    photos ─encoder─▶ symbols per level ─▶ blocks start in C activity quantiles
        ┌▶ fit each class's factors from its blocks' counts (pooled over the atoms)
        └─ move every block to its cheapest class (the encoder's own choice, class code included)

Each class's factors are fitted with the other parts fixed: an odds scale per flag context and
per sign context (the grid of multipliers k / 256 with the fewest bits), a factor per
(value row, |v|) by iterative scaling (observed over expected counts), and the class code as
P(class | left block's class) from the assignment. Float arithmetic is fine here: what ships
are the rounded integers, and the encoder prices with those.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from sccodec.api import Codec
from sccodec.block_classes import MAX_FACTOR, SCALE_BITS, ClassTables, LevelClasses, class_file_path
from sccodec.context import scheme_contexts
from sccodec.entropy import SymbolTables
from sccodec.frequencies import TOTAL, IntegerTables, normalise
from sccodec.train.cli import evenly_spaced
from sccodec.train.companions import write_companion
from sccodec.train.data import list_images, photos_symbols, split_holdout
from sccodec.weights import DEFAULT_MODEL

#: Odds multipliers tried per context: k / 256 with k = round(256 · 2^(i/8)), 1/8 … 8.
SCALE_GRID = np.unique(np.round(256 * 2.0 ** (np.arange(-24, 25) / 8)).astype(np.int64))
SCALING_ROUNDS = 12
_FLOOR = 1.0 / TOTAL


@dataclass
class _LevelSymbols:
    """One level's training symbols, flattened for counting: every symbol's flag entry, and
    the table entries of every non-zero one, with the position each belongs to."""

    tiles: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (symbols, flag ctx, value ctx) per tile
    flag_entry: np.ndarray  # (atom·X + ctx)·2 + non-zero, per symbol
    flag_position: np.ndarray  # global position index per symbol
    magnitude_entry: np.ndarray  # (atom·V + row)·R + |v| − 1, per non-zero
    sign_entry: np.ndarray  # (atom·S + sign ctx)·2 + (v > 0), per non-zero
    value_position: np.ndarray
    block_of_position: np.ndarray  # global block index per global position
    blocks: int
    left: np.ndarray  # per global block: the block to its left, −1 in a tile's first column
    activity: np.ndarray  # per global block: non-zero symbols per position


def _level_symbols(tables: SymbolTables, tiles: list[np.ndarray], block: int) -> _LevelSymbols:
    x, (v, r), s = tables.scheme.flag_contexts, tables.values.shape[-2:], tables.scheme.sign_contexts
    r //= 2
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("fe", "fp", "me", "se", "vp", "bp", "left", "act")}
    coded, positions, blocks = [], 0, 0
    for symbols in tiles:
        k, h, w = symbols.shape
        flag, value = scheme_contexts(tables.scheme, symbols, tables.groups)
        coded.append((symbols, flag, value))
        atom = np.arange(k, dtype=np.int64)[:, None, None]
        nz = symbols != 0
        parts["fe"].append((((atom * x + flag) * 2 + nz).reshape(k, -1)).ravel())
        parts["fp"].append(np.tile(np.arange(h * w) + positions, k))
        a, i = np.nonzero(nz.reshape(k, -1))
        values, vc = symbols.reshape(k, -1)[a, i], value.reshape(k, -1)[a, i]
        parts["me"].append((a * v + vc // s) * r + np.minimum(np.abs(values), r) - 1)
        parts["se"].append((a * s + vc % s) * 2 + (values > 0))
        parts["vp"].append(i + positions)
        rows, cols = -(-h // block), -(-w // block)
        bid = (np.arange(h)[:, None] // block) * cols + np.arange(w)[None, :] // block
        parts["bp"].append(bid.ravel() + blocks)
        column = np.arange(rows * cols) % cols
        parts["left"].append(np.where(column > 0, np.arange(rows * cols) - 1 + blocks, -1))
        count = np.bincount(bid.ravel(), minlength=rows * cols)
        parts["act"].append(np.bincount(bid.ravel(), weights=nz.sum(0).ravel(), minlength=rows * cols) / count)
        positions += h * w
        blocks += rows * cols
    joined = {k: np.concatenate(p) for k, p in parts.items()}
    return _LevelSymbols(coded, joined["fe"], joined["fp"], joined["me"], joined["se"], joined["vp"], joined["bp"],
                         blocks, joined["left"], joined["act"])


def _best_scales(n0: np.ndarray, n1: np.ndarray, f1: np.ndarray) -> np.ndarray:
    """(C, contexts) multipliers from SCALE_GRID of fewest bits for counts n0, n1 (C, K, contexts)
    of outcomes 0 and 1 under base frequencies f1 (K, contexts), pooled over the atoms."""
    p = f1 / TOTAL
    cost = np.empty((len(SCALE_GRID), *n0.shape[::2]))
    for i, k in enumerate(SCALE_GRID):
        scaled = np.clip(k * p / (k * p + (1 << SCALE_BITS) * (1 - p)), _FLOOR, 1 - _FLOOR)
        cost[i] = -(n1 * np.log2(scaled) + n0 * np.log2(1 - scaled)).sum(1)
    return SCALE_GRID[cost.argmin(0)]


def scaling_factors(counts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(C, V, R) factors per (class, row, |v|), shared by all atoms, that fit rows m (K, V, R)
    (probabilities) to counts (C, K, V, R): iterative scaling, observed over expected counts
    pooled over the atoms, with one pseudo-count on each side."""
    factor = np.ones((counts.shape[0], 1, *m.shape[1:]))
    n = counts.sum(-1, keepdims=True)
    observed = counts.sum(1, keepdims=True)
    for _ in range(SCALING_ROUNDS):
        scaled = m[None] * factor
        scaled /= scaled.sum(-1, keepdims=True)
        factor *= (observed + 1.0) / ((n * scaled).sum(1, keepdims=True) + 1.0)
    return factor[:, 0]


def _magnitude_factors(counts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(C, V, R) integer factors in [1, MAX_FACTOR] for counts (C, K, V, R) under integer base
    rows (K, V, R): ``scaling_factors``, scaled so each row's largest is MAX_FACTOR."""
    factor = scaling_factors(counts, rows / TOTAL)
    return np.clip(np.round(MAX_FACTOR * factor / factor.max(-1, keepdims=True)), 1, MAX_FACTOR).astype(np.int64)


def _fit(data: _LevelSymbols, base: IntegerTables, labels: np.ndarray, classes: int, block: int) -> LevelClasses:
    """Every class's factors and the class code from the blocks' current classes."""
    k, x = base.nonzero.shape
    v, r = base.magnitudes.shape[-2:]
    s = base.positive.shape[-1]
    position_class = labels[data.block_of_position]
    flags = np.bincount(position_class[data.flag_position] * (k * x * 2) + data.flag_entry,
                        minlength=classes * k * x * 2).reshape(classes, k, x, 2)
    value_class = position_class[data.value_position]
    magnitudes = np.bincount(value_class * (k * v * r) + data.magnitude_entry,
                             minlength=classes * k * v * r).reshape(classes, k, v, r)
    signs = np.bincount(value_class * (k * s * 2) + data.sign_entry, minlength=classes * k * s * 2).reshape(classes, k, s, 2)
    left = np.where(data.left >= 0, labels[np.maximum(data.left, 0)], classes)
    pairs = np.bincount(left * classes + labels, minlength=(classes + 1) * classes).reshape(classes + 1, classes)
    return LevelClasses(base, _best_scales(flags[..., 0], flags[..., 1], base.nonzero),
                        _best_scales(signs[..., 0], signs[..., 1], base.positive),
                        _magnitude_factors(magnitudes, base.magnitudes), normalise(pairs + 1), block)


def _assign(data: _LevelSymbols, level: LevelClasses, sign_contexts: int) -> tuple[np.ndarray, float]:
    """Every block's class as the encoder chooses it, and the total bits (class code included)."""
    labels, total = [], 0.0
    side = np.log2(TOTAL) - np.log2(level.class_frequencies)
    for symbols, flag, value in data.tiles:
        bits = level.block_bits(symbols, flag, value, sign_contexts)
        chosen = level.choose(bits)
        left = np.concatenate([np.full((chosen.shape[0], 1), level.classes), chosen[:, :-1]], 1)
        total += float(np.take_along_axis(bits, chosen[..., None], -1).sum() + side[left, chosen].sum())
        labels.append(chosen.ravel())
    return np.concatenate(labels), total


def fit_level(tables: SymbolTables, quality_index: int, tiles: list[np.ndarray], classes: int = 16,
              block: int = 2, iterations: int = 6,
              log: Callable[[str], None] = lambda _: None) -> LevelClasses:
    """One level's classes from its training tiles' symbols (each (K, h, w))."""
    data = _level_symbols(tables, tiles, block)
    base = tables.frequencies(quality_index)
    edges = np.quantile(data.activity, np.linspace(0, 1, classes + 1)[1:-1])
    labels = np.searchsorted(edges, data.activity, side="right")
    for i in range(iterations):
        level = _fit(data, base, labels, classes, block)
        labels, bits = _assign(data, level, tables.scheme.sign_contexts)
        log(f"level {quality_index + 1}: round {i + 1}/{iterations}, {bits / 8:,.0f} bytes, "
            f"classes used {np.bincount(labels, minlength=classes).tolist()}")
    return _fit(data, base, labels, classes, block)


def class_tables(levels: list[LevelClasses], model_digest: bytes) -> ClassTables:
    """The class file's contents from every level's fit."""
    return ClassTables(np.stack([lv.flag_scale for lv in levels]), np.stack([lv.sign_scale for lv in levels]),
                       np.stack([lv.magnitude_factor for lv in levels]),
                       np.stack([lv.class_frequencies for lv in levels]), levels[0].block, model_digest)


@click.command("fit-classes")
@click.argument("model", default=DEFAULT_MODEL)
@click.option("--images", "image_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Training photos (the held-out slice, every 40th, is left out).")
@click.option("--photos", type=click.IntRange(min=1), default=100, show_default=True,
              help="How many photos, evenly spaced over the training split, to fit on (their top-left 512×768).")
@click.option("--classes", type=click.IntRange(2, 64), default=16, show_default=True, help="Classes per level.")
@click.option("--block", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Block edge in latent positions (a position is 16×16 pixels).")
@click.option("--iterations", type=click.IntRange(min=1), default=6, show_default=True,
              help="Rounds of fitting the classes and moving the blocks.")
@click.option("--out", type=click.Path(dir_okay=False), help="Class file [default: MODEL.classes.safetensors "
                                                               "beside the weights].")
@click.option("--force", "-f", is_flag=True, help="Replace an existing class file.")
def fit_classes(model: str, image_dir: str, photos: int, classes: int, block: int, iterations: int,
                out: str | None, force: bool) -> None:
    """Fit a model's block classes on training photos; with them beside the weights the encoder
    writes .scv format 6 (files that decode only with this class file: its hash is in them).

    \b
    Example:
      sccodec fit-classes scvae-gdn --images photos/ --force
    """
    codec = Codec(model, device="cpu")
    target = Path(out) if out else class_file_path(codec.model_file.path)
    if target.exists() and not force:
        raise click.UsageError(f"{target} exists; use --force to replace it (files coded with it will no longer decode)")
    train, _ = split_holdout(list_images(image_dir))
    chosen = evenly_spaced(train, photos)
    started = time.time()
    symbols = photos_symbols(codec, chosen, log=lambda line: click.echo(line, err=True))
    tables = codec.coder.tables
    levels = [fit_level(tables, q, [s[q] for s in symbols], classes, block, iterations,
                        log=lambda line: click.echo(line, err=True)) for q in range(tables.qualities)]
    data = class_tables(levels, codec.model_file.digest).to_bytes()
    seconds = round(time.time() - started)
    write_companion(target, data, class_file_path(codec.model_file.path), codec.model_file.path, "block_classes", {
        "classes": classes, "block": block, "photos": len(chosen), "iterations": iterations, "seconds": seconds,
        "command": f"sccodec fit-classes {model} --images {image_dir} --photos {photos} --classes {classes} "
                   f"--block {block} --iterations {iterations} --force"})
    click.echo(f"wrote {target} ({len(data):,} bytes, {classes} classes on {block}×{block} blocks, "
               f"{len(chosen)} photos, {seconds} s)")
