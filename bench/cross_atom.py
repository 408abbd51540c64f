"""Oracle test of cross-atom flag contexts (format 7's pair weights, ``sccodec.atom_pairs``): do
the other atoms' decoded flags predict whether an atom fires, beyond format 6's contexts and
block classes, and how much does the batch size of the decoder's flag reads matter?

    python bench/cross_atom.py [--train-images 200] [--levels 2,6,9] [--batches 64,16]
                               [--iterations 120] [--cache /tmp/cross_atom_symbols.npz]

Format 6 codes a significance flag with P(non-zero | atom, flag context, block class): the
context counts how many atoms fire nearby and how strongly the same atom fires at decoded
neighbours, but not *which* other atoms fire. The pair weights add, per level, a logit
correction from the atoms firing at the position itself (decoded before the atom: earlier
groups, and earlier batches of ``--batches`` atoms of its own group; 64 = a whole group, so the
steps as they are) and at the decoded neighbours at distance 1 and 2
(``sccodec.train.atom_pairs``: the same features and fit as ``sccodec fit-pairs``).

Fitted per level on the training symbols, evaluated on the held-out photos with ideal code
lengths: ``fitted`` the float weights, ``integer`` the weights as the pair file stores them and
the coder applies them (1/64 nat, buckets of 1/16 nat). Percentages are of the held-out flag
bits under format 6 (shipped tables × the block class the encoder picks; the tile adaptation
left out both ways) and, for scale, of the held-out format-6 files' real size (classes,
adaptation, ANS). Symbols: ``bench/block_classes.py``'s (the encoder at its default effort on
512×768 crops, the training split for fitting, the 8 held-out photos for evaluation; never
Kodak). Writes bench/results/cross_atom.json and .md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sccodec.api import Codec
from sccodec.train.atom_pairs import (centre_order, correction, fit_weights, flag_bits, integer_logits,
                                      integer_weights, joined, pair_features)
from sccodec.train.cli import evenly_spaced
from sccodec.train.data import list_images, split_holdout

sys.path.insert(0, str(Path(__file__).resolve().parent))
from block_classes import DATA, cached_symbols  # noqa: E402
from speed import cpu_model  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-images", type=int, default=200)
    ap.add_argument("--levels", default="2,6,9", help="quality levels, 1-based")
    ap.add_argument("--batches", default="64,16", help="atoms per batch (64: a whole group, the steps as they are)")
    ap.add_argument("--iterations", type=int, default=120)
    ap.add_argument("--l2", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/cross_atom_symbols.npz"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cross_atom.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    codec = Codec(threads=args.threads)
    format6 = codec.coder if codec.coder.format_version == 6 else codec.coder.reading(6, classes_hash=codec.coder.classes_hash)
    train_paths, held_paths = split_holdout(list_images(args.data))
    train, held = cached_symbols(codec, evenly_spaced(train_paths, args.train_images), held_paths, args.cache)
    tables = codec.coder.tables
    out = {"model": codec.model_file.name, "weights_hash": codec.model_file.digest.hex()[:16],
           "machine": {"cpu": cpu_model(), "cores": args.threads}, "command": " ".join(["python", *sys.argv]),
           "train_photos": len(train), "held_out_photos": [p.name for p in held_paths],
           "iterations": args.iterations, "l2": args.l2, "levels": {}}
    for level in (int(v) for v in args.levels.split(",")):
        q = level - 1
        t = time.time()
        tr = joined([pair_features(codec, s[q], q) for s in train])
        he = joined([pair_features(codec, s[q], q) for s in held])
        file_bits = 8 * sum(len(format6.encode_tile(s[q].astype(np.int32), q)) for s in held)
        base = flag_bits(he["base"], he["y"])
        row = {"held_out_file_bits": file_bits, "format6_flag_bits": round(base), "batches": {}}
        for batch in (int(b) for b in args.batches.split(",")):
            mask = centre_order(tables.atoms, batch)
            w = fit_weights(tr, mask, args.iterations, args.l2)
            variants = {"float": flag_bits(he["base"] + correction(he, w, mask), he["y"]),
                        "integer": flag_bits(integer_logits(he, integer_weights(w), mask), he["y"])}
            train_gain = flag_bits(tr["base"] + correction(tr, w, mask), tr["y"]) / flag_bits(tr["base"], tr["y"]) - 1
            r = {name: {"flag_bits": round(b), "flag_%": round(100 * (b / base - 1), 2),
                        "file_%": round(100 * (b - base) / file_bits, 2)} for name, b in variants.items()}
            r["train_flag_%"] = round(100 * train_gain, 2)
            row["batches"][str(batch)] = r
            print(level, batch, json.dumps(r), f"{time.time() - t:.0f}s", flush=True)
        out["levels"][str(level)] = row
    out["seconds"] = round(time.time() - started)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(out))


def markdown(out: dict) -> str:
    lines = ["# Cross-atom flag contexts: oracle test (`python bench/cross_atom.py`)", "",
             f"{out['model']} ({out['weights_hash']}), {out['train_photos']} training photos for fitting, "
             f"{len(out['held_out_photos'])} held-out photos for evaluation, ideal code lengths of the flags on "
             f"format 6's tables and block classes (tile adaptation left out); {out['machine']['cpu']}, "
             f"{out['seconds']} s. Negative = fewer bits. *file %*: the flag bits saved as a share of the "
             "held-out format-6 files' real size.", "",
             "| level | atoms per batch | fitted: flag % | file % | as coded (integers): flag % | file % | train flag % |",
             "|---|---|---|---|---|---|---|"]
    for level, row in out["levels"].items():
        for batch, r in row["batches"].items():
            cells = [f"{r[v]['flag_%']:+.2f} | {r[v]['file_%']:+.2f}" for v in ("float", "integer")]
            lines.append(f"| {level} | {batch} | {' | '.join(cells)} | {r['train_flag_%']:+.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
