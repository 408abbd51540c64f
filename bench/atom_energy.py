"""Each atom's image-space energy per quality level: the squared error one step of its code adds.

    python bench/atom_energy.py [--images 4] [--model scvae-gdn] [--write-sidecar]

Held-out training photos (``split_holdout``, 512×768 crops; never Kodak). For every level, each
photo is coded as the encoder would (rounded with the fixed dead zone), then one step (+1) is
added to one atom at positions 7 latent rows/columns apart (the synthesis' reach is shorter, so
the responses do not overlap) and the decoded change is measured in [0, 1]² units summed over
the three channels. The mean over positions and photos is the atom's energy at that level,
which rate-distortion optimised rounding weighs against bits (``sccodec.rdo.rd_quantize``).
Writes bench/results/atom_energy.json; ``--write-sidecar`` stores it in the model's sidecar
(``encoder.atom_energy``), an encoder-only setting.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sccodec.api import Codec
from sccodec.rdo import fixed_dead_zone
from sccodec.train.data import list_images, load_rgb, split_holdout
from sccodec.weights import shipped_dir

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "train"
SPACING = 7  # latent positions between perturbed positions
PLACEHOLDER = "atom energies, a line per level"
REACH = 3  # latent positions around a perturbation whose pixels are measured


def level_energy(codec: Codec, y: np.ndarray, quality_index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(sum of energies, count) per atom over the positions of one photo at one level."""
    net, tables = codec.network, codec.coder.tables
    symbols = fixed_dead_zone(net.scaled_symbols(y, quality_index), tables.value_range)
    base = net.decode_symbols(symbols, quality_index)
    k, h, w = symbols.shape
    stride = codec.stride
    slots = [(i, j) for i in range(REACH, h - REACH, SPACING) for j in range(REACH, w - REACH, SPACING)]
    total, count = np.zeros(k), np.zeros(k)
    order = rng.permutation(k)
    for start in range(0, k, len(slots)):
        atoms = order[start : start + len(slots)]
        probe = symbols.copy()
        for a, (i, j) in zip(atoms, slots):
            probe[a, i, j] += 1
        change = net.decode_symbols(probe, quality_index) - base
        for a, (i, j) in zip(atoms, slots):
            window = change[0, :, (i - REACH) * stride : (i + REACH + 1) * stride,
                            (j - REACH) * stride : (j + REACH + 1) * stride]
            total[a] += float((window.astype(np.float64) ** 2).sum())
            count[a] += 1
    return total, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--model", default="scvae-gdn")
    ap.add_argument("--write-sidecar", action="store_true")
    args = ap.parse_args()
    _, held = split_holdout(list_images(args.data))
    codec = Codec(args.model, device="cpu")
    levels = len(codec.qualities)
    total, count = np.zeros((levels, codec.coder.atoms)), np.zeros((levels, codec.coder.atoms))
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for path in held[: args.images]:
        x = load_rgb(path)[:, :512, :768].numpy().astype(np.float32)[None] / 255
        x = x[..., : x.shape[-2] // codec.stride * codec.stride, : x.shape[-1] // codec.stride * codec.stride]
        y = codec.network.analyze(np.ascontiguousarray(x))
        for q in range(levels):
            t, c = level_energy(codec, y, q, rng)
            total[q] += t
            count[q] += c
        print(f"{path.name}: {time.perf_counter() - started:.0f} s", flush=True)
    energy = total / np.maximum(count, 1)
    out = {"model": args.model, "images": [p.name for p in held[: args.images]],
           "samples_per_atom": count.min(axis=1).tolist(), "energy": energy.round(7).tolist()}
    (HERE / "results" / "atom_energy.json").write_text(json.dumps(out) + "\n")
    for q in range(levels):
        print(f"level {q + 1}: median {np.median(energy[q]):.5f}, 10-90% {np.percentile(energy[q], 10):.5f}"
              f"-{np.percentile(energy[q], 90):.5f}")
    if args.write_sidecar:
        side = shipped_dir() / f"{args.model}.json"
        sidecar = json.loads(side.read_text())
        sidecar.setdefault("encoder", {})["atom_energy"] = PLACEHOLDER
        sidecar["atom_energy"] = {"command": "python bench/atom_energy.py --write-sidecar", "images": out["images"],
                                  "seconds": round(time.perf_counter() - started)}  # how the energies were measured
        rows = ",\n".join(f"      {json.dumps(level)}" for level in out["energy"])  # a line per level
        side.write_text(json.dumps(sidecar, indent=2).replace(json.dumps(PLACEHOLDER), f"[\n{rows}\n    ]") + "\n")
        print(f"wrote {side}")


if __name__ == "__main__":
    main()
