"""Fitting a model's pair weights (.scv format 7, ``sccodec.atom_pairs``) on the symbols the
encoder writes for training photos.

    photos ─encoder─▶ symbols per level ─▶ per (position, atom): the flag, format 6's flag logit
        (shipped tables × the block class the encoder picks) and the other atoms' decoded flags
        ─▶ logistic fit of the pair weights (Adam on the summed code length, a small L2 penalty)
        ─▶ weights rounded to 1/64 nat, the bucket factors e^(b/16) · 256 (a level whose held-out
           flags the pairs do not make cheaper keeps zero weights: factor 1)

Float arithmetic is fine here: what ships are the rounded integers, and the coder applies only
those. The fit reports, per level, the flag bits of the held-out photos (every 40th of the
training folder, never Kodak) before and after, in floats and as the decoder will compute them.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import torch

from sccodec.api import Codec
from sccodec.atom_pairs import (BUCKET_SHIFT, FAR, MAX_BIAS, MAX_SCALE, MAX_WEIGHT, NEAR, SCALE_BITS, PairTables,
                                pair_file_path)
from sccodec.context import _window_sum_at, phase_map, scheme_contexts
from sccodec.train.cli import evenly_spaced
from sccodec.train.companions import write_companion
from sccodec.train.data import list_images, photos_symbols, split_holdout
from sccodec.weights import DEFAULT_MODEL

UNIT = 64  # weights in 1/64 nat (1/16 nat rounded most weights of the low levels to zero)
BUCKETS_PER_NAT = UNIT >> BUCKET_SHIFT
MIN_P = 2.0 ** -24
LEARNING_RATE = 0.05
#: Adam moves every weight by about the learning rate per step, so a logit by that times the
#: number of firing atoms it reads: past this many (the mean over positions) the rate shrinks in
#: proportion. Without it the top levels (500–700) diverged and made the held-out flags dearer.
FEATURE_MASS = 300.0


def centre_order(atoms: int, batch: int) -> torch.Tensor:
    """M[k, k'] = 1 where atom k' is decoded before atom k at the same position (an earlier batch)."""
    order = np.arange(atoms) // batch
    return torch.from_numpy((order[None, :] < order[:, None]).astype(np.float32))


def pair_features(codec: Codec, symbols: np.ndarray, quality_index: int) -> dict[str, torch.Tensor]:
    """(positions, K) each: ``y`` the flags, ``base`` format 6's flag logit, ``centre`` the flags
    at the position itself, ``near`` / ``far`` how many decoded neighbours at distance 1 / 2 have
    each atom firing (as ``LevelPairs.ring_sums`` counts them)."""
    tables, q = codec.coder.tables, quality_index
    scheme = tables.scheme
    x = symbols.astype(np.int32)
    k, h, w = x.shape
    flag_ctx, value_ctx = scheme_contexts(scheme, x, tables.groups)
    level = codec.coder.classes.level(q, tables.frequencies(q))
    labels = level.choose(level.block_bits(x, flag_ctx, value_ctx, scheme.sign_contexts))
    cls = np.broadcast_to(level.position_classes(labels, h, w), x.shape)
    atoms = np.broadcast_to(np.arange(k)[:, None, None], x.shape)
    p = np.clip(level.nonzero(level.base.nonzero[atoms, flag_ctx], cls, flag_ctx) / 2.0 ** 24, MIN_P, 1 - MIN_P)
    nonzero = x != 0
    phase = phase_map(scheme, h, w)
    near, far = np.zeros((k, h, w), np.float32), np.zeros((k, h, w), np.float32)
    for p_, lattice in enumerate(scheme.lattices):
        here = phase == p_
        decoded = nonzero & (phase < p_)
        near[:, here] = _window_sum_at(decoded, NEAR, lattice)
        far[:, here] = _window_sum_at(decoded, FAR, lattice)
    arrays = {"y": nonzero, "base": np.log(p) - np.log1p(-p), "centre": nonzero, "near": near, "far": far}
    return {key: torch.from_numpy(np.ascontiguousarray(a.reshape(k, -1).T, dtype=np.float32))
            for key, a in arrays.items()}


def joined(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def correction(d: dict[str, torch.Tensor], w: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """The pair correction of every (position, atom) logit, in w's units."""
    return d["centre"] @ (w["centre"] * mask).T + d["near"] @ w["near"].T + d["far"] @ w["far"].T + w["bias"]


def flag_bits(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")) / math.log(2)


def fit_weights(d: dict[str, torch.Tensor], mask: torch.Tensor, iterations: int, l2: float) -> dict[str, torch.Tensor]:
    """Pair weights in nats, fitted on the features ``d`` (full batch): of the weights each step
    starts from (zero included), those with the lowest penalised training loss."""
    atoms = mask.shape[0]
    w = {key: torch.zeros(atoms, atoms, requires_grad=True) for key in ("centre", "near", "far")}
    w["bias"] = torch.zeros(atoms, requires_grad=True)
    mass = float((d["centre"].sum(1) + d["near"].sum(1) + d["far"].sum(1)).mean())
    opt = torch.optim.Adam(w.values(), lr=LEARNING_RATE * min(1.0, FEATURE_MASS / max(mass, 1.0)))
    best, kept = math.inf, {key: v.detach().clone() for key, v in w.items()}
    for _ in range(iterations):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(d["base"] + correction(d, w, mask), d["y"],
                                                                    reduction="sum")
        loss = loss + l2 * sum((w[key] ** 2).sum() for key in ("centre", "near", "far"))
        if float(loss.detach()) < best:  # the loss of the weights before this step
            best, kept = float(loss.detach()), {key: v.detach().clone() for key, v in w.items()}
        loss.backward()
        opt.step()
    return kept


def bucket_factors() -> tuple[int, np.ndarray]:
    """(lowest bucket, odds multipliers m): bucket b holds the sums nearest b / BUCKETS_PER_NAT nat
    and gets m = round(256 · e^(b / BUCKETS_PER_NAT)) (bucket 0: exactly 256, no change), over the
    buckets where 1 <= m <= MAX_SCALE."""
    buckets = np.arange(-16 * BUCKETS_PER_NAT, 16 * BUCKETS_PER_NAT)
    m = np.round((1 << SCALE_BITS) * np.exp(buckets / BUCKETS_PER_NAT))
    keep = (m >= 1) & (m <= MAX_SCALE)
    return int(buckets[keep][0]), m[keep].astype(np.int64)


def integer_weights(w: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The fitted weights in 1/UNIT nat, as the pair file stores them."""
    out = {key: np.clip(np.round(w[key].numpy() * UNIT), -MAX_WEIGHT, MAX_WEIGHT).astype(np.int16)
           for key in ("centre", "near", "far")}
    out["bias"] = np.clip(np.round(w["bias"].numpy() * UNIT), -MAX_BIAS, MAX_BIAS).astype(np.int16)
    return out


def integer_logits(d: dict[str, torch.Tensor], weights: dict[str, np.ndarray], mask: torch.Tensor) -> torch.Tensor:
    """The flag logits the coder uses: format 6's, times the bucket factor of the integer sum."""
    lowest, factor = bucket_factors()
    w = {key: torch.from_numpy(a.astype(np.float32)) for key, a in weights.items()}
    bucket = torch.floor((correction(d, w, mask) + (1 << (BUCKET_SHIFT - 1))) / (1 << BUCKET_SHIFT)).long() - lowest
    m = torch.from_numpy(factor.astype(np.float32))[bucket.clamp(0, factor.size - 1)]
    p = torch.sigmoid(d["base"])
    # scale_odds_frequency on frequencies out of 2^24, in floats: close enough for a bit count
    scaled = (m / (1 << SCALE_BITS)) * p / ((m / (1 << SCALE_BITS)) * p + (1 - p))
    scaled = scaled.clamp(MIN_P, 1 - MIN_P)
    return torch.log(scaled) - torch.log1p(-scaled)


def fit_level(codec: Codec, quality_index: int, train: list[np.ndarray], held: list[np.ndarray], batch: int,
              iterations: int, l2: float, log: Callable[[str], None] = print) -> tuple[dict[str, np.ndarray], dict]:
    """One level's integer weights, and its held-out flag bits before and after."""
    started = time.time()
    mask = centre_order(codec.coder.atoms, batch)
    tr = joined([pair_features(codec, s, quality_index) for s in train])
    w = fit_weights(tr, mask, iterations, l2)
    del tr
    weights = integer_weights(w)
    report = {}
    if held:
        he = joined([pair_features(codec, s, quality_index) for s in held])
        before = flag_bits(he["base"], he["y"])
        report = {"held_out_flag_bits": round(before),
                  "float_%": round(100 * (flag_bits(he["base"] + correction(he, w, mask), he["y"]) / before - 1), 2),
                  "integer_%": round(100 * (flag_bits(integer_logits(he, weights, mask), he["y"]) / before - 1), 2)}
        if report["integer_%"] >= 0:  # no gain where it is measured: ship no change
            weights = {key: np.zeros_like(a) for key, a in weights.items()}
            report["kept"] = "zero weights (the fit made the held-out flags dearer)"
    log(f"level {quality_index + 1}: held-out flag bits {report.get('held_out_flag_bits')}, "
        f"{report.get('float_%')}% fitted, {report.get('integer_%')}% as coded"
        f"{'; zero weights kept' if 'kept' in report else ''} ({time.time() - started:.0f} s)")
    return weights, report


def pair_tables(levels: list[dict[str, np.ndarray]], batch: int, model_digest: bytes, classes_digest: bytes) -> PairTables:
    lowest, factor = bucket_factors()
    return PairTables(**{key: np.stack([lv[key] for lv in levels]) for key in ("centre", "near", "far", "bias")},
                      factor=np.tile(factor, (len(levels), 1)), lowest=lowest, batch=batch,
                      model_digest=model_digest, classes_digest=classes_digest)


@click.command("fit-pairs")
@click.argument("model", default=DEFAULT_MODEL)
@click.option("--images", "image_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Training photos (the held-out slice, every 40th, is left out of the fit and reported on).")
@click.option("--photos", type=click.IntRange(min=1), default=150, show_default=True,
              help="How many photos, evenly spaced over the training split, to fit on (their top-left 512×768).")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True,
              help="Atoms per batch: the decoder reads a step's flags batch by batch, later batches see earlier ones.")
@click.option("--iterations", type=click.IntRange(min=1), default=120, show_default=True, help="Adam steps per level.")
@click.option("--l2", type=click.FloatRange(min=0), default=3.0, show_default=True, help="L2 penalty on the weights.")
@click.option("--out", type=click.Path(dir_okay=False), help="Pair file [default: MODEL.pairs.safetensors beside the weights].")
@click.option("--force", "-f", is_flag=True, help="Replace an existing pair file.")
def fit_pairs(model: str, image_dir: str, photos: int, batch: int, iterations: int, l2: float, out: str | None,
              force: bool) -> None:
    """Fit a model's pair weights on training photos; with them beside the weights and the class
    file the encoder writes .scv format 7 (files that decode only with this pair file: its hash
    is in them).

    \b
    Example:
      sccodec fit-pairs scvae-gdn --images photos/ --force
    """
    codec = Codec(model, device="cpu")
    if codec.coder.classes is None:
        raise click.UsageError(f"{model} has no block classes: fit them first (sccodec fit-classes)")
    tables = codec.coder.tables
    if (tables.atoms // tables.groups) % batch:
        raise click.UsageError(f"--batch {batch} does not divide the groups of {tables.atoms // tables.groups} atoms")
    target = Path(out) if out else pair_file_path(codec.model_file.path)
    if target.exists() and not force:
        raise click.UsageError(f"{target} exists; use --force to replace it (files coded with it will no longer decode)")
    train, held = split_holdout(list_images(image_dir))
    chosen = evenly_spaced(train, photos)
    started = time.time()
    symbols = photos_symbols(codec, chosen + held, log=lambda line: click.echo(line, err=True), dtype=np.int16)
    levels, reports = [], {}
    for q in range(tables.qualities):
        weights, report = fit_level(codec, q, [s[q] for s in symbols[: len(chosen)]], [s[q] for s in symbols[len(chosen):]],
                                    batch, iterations, l2, log=lambda line: click.echo(line, err=True))
        levels.append(weights)
        reports[str(q + 1)] = report
    data = pair_tables(levels, batch, codec.model_file.digest, codec.coder.classes.digest).to_bytes()
    seconds = round(time.time() - started)
    write_companion(target, data, pair_file_path(codec.model_file.path), codec.model_file.path, "atom_pairs", {
        "batch": batch, "photos": len(chosen), "iterations": iterations, "l2": l2, "seconds": seconds,
        "held_out_flag_bits": reports,
        "command": f"sccodec fit-pairs {model} --images {image_dir} --photos {photos} --batch {batch} "
                   f"--iterations {iterations} --l2 {l2} --force"})
    click.echo(f"wrote {target} ({len(data):,} bytes, batches of {batch} atoms, {len(chosen)} photos, {seconds} s)")
