"""Measure the synthesis' curvature M(d) that efforts 3 and 4 refine with (``sccodec.curvature``).

    python bench/curvature.py [--images 4] [--model scvae-gdn] [--write]

Held-out training photos (``split_holdout``, 512×768 crops; never Kodak) at quality levels 3, 6
and 9. Each photo is coded as the fixed dead zone rounds it; then, for every atom, one step (+1)
is added at positions 7 latent rows/columns apart (the synthesis' reach is shorter, so the
responses do not overlap) and the decoded change r is kept over the 7×7 latent cells around
each position. The inner products of the responses, at the same position and one position
apart, give H(d)_kl = E[⟨r_k(p), r_l(p + d)⟩] in each level's symbols; projected onto the
synthesis' input ŷ (H = A_qᵀ M A_q, A_q from ``sccodec.curvature.latent_atoms``) they give one
M(d) per photo and level, and their mean is the model's curvature. Writes
bench/results/curvature.json (how well one M serves each level: the relative error of A_qᵀ M A_q
against each level's own H) and, with ``--write``, the curvature file beside the weights and how
it was measured in the model's sidecar (key ``curvature``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from sccodec import atomic
from sccodec.api import Codec
from sccodec.curvature import REACH, Curvature, curvature_file_path, latent_atoms
from sccodec.rdo import fixed_dead_zone
from sccodec.train.data import list_images, load_rgb, split_holdout

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "train"
SPACING = 7  # latent positions between perturbed positions
WINDOW = 3  # latent cells each side of a perturbation whose pixels are kept
LEVELS = (2, 5, 8)  # quality indices (levels 3, 6 and 9)


def responses(codec: Codec, y: np.ndarray, quality_index: int) -> np.ndarray:
    """(K, positions, 2·WINDOW+1, 2·WINDOW+1, 3·stride²): each atom's decoded change per cell."""
    net, s = codec.network, codec.stride
    symbols = fixed_dead_zone(net.scaled_symbols(y, quality_index), codec.coder.tables.value_range)
    base = net.decode_symbols(symbols, quality_index)
    k, h, w = symbols.shape
    slots = [(i, j) for i in range(WINDOW, h - WINDOW, SPACING) for j in range(WINDOW, w - WINDOW, SPACING)]
    cells = 2 * WINDOW + 1
    out = np.zeros((k, len(slots), cells, cells, 3 * s * s), np.float32)
    for atom in range(k):
        probe = symbols.copy()
        for i, j in slots:
            probe[atom, i, j] += 1
        change = net.decode_symbols(probe, quality_index) - base
        for n, (i, j) in enumerate(slots):
            window = change[0, :, (i - WINDOW) * s : (i + WINDOW + 1) * s, (j - WINDOW) * s : (j + WINDOW + 1) * s]
            out[atom, n] = window.reshape(3, cells, s, cells, s).transpose(1, 3, 0, 2, 4).reshape(cells, cells, -1)
    return out


def code_kernel(r: np.ndarray) -> np.ndarray:
    """Responses -> H(d) (3,3,K,K): mean over positions of ⟨r_k(p), r_l(p + d)⟩, |d| <= REACH."""
    k, n, cells = r.shape[:3]
    side = 2 * REACH + 1
    h = np.zeros((side, side, k, k))
    for di in range(-REACH, REACH + 1):
        for dj in range(-REACH, REACH + 1):  # r_l around p + d: its own cell c − d is our cell c
            a = r[:, :, max(0, di) : cells + min(0, di), max(0, dj) : cells + min(0, dj)]
            b = r[:, :, max(0, -di) : cells + min(0, -di), max(0, -dj) : cells + min(0, -dj)]
            h[REACH + di, REACH + dj] = np.einsum("knx,lnx->kl", a.reshape(k, n, -1), b.reshape(k, n, -1),
                                                  optimize=True) / n
    return h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--model", default="scvae-gdn")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    _, held = split_holdout(list_images(args.data))
    photos = held[: args.images]
    codec = Codec(args.model, device="cpu")
    tensors = codec.model_file.tensors
    started = time.perf_counter()
    kernels, own = [], {}
    for path in photos:
        x = load_rgb(path)[:, :512, :768].numpy().astype(np.float32)[None] / 255
        y = codec.network.analyze(np.ascontiguousarray(x))
        for q in LEVELS:
            h = code_kernel(responses(codec, y, q))
            a = latent_atoms(tensors, q).astype(np.float64)
            pull = np.linalg.solve(a @ a.T, a)  # (A Aᵀ)⁻¹ A: H = Aᵀ M A -> M
            kernels.append(np.einsum("mk,ijkl,nl->ijmn", pull, h, pull))
            own.setdefault(q, []).append(h)
        print(f"{path.name}: {time.perf_counter() - started:.0f} s", flush=True)
    m = np.mean(kernels, axis=0)
    m = (m + m[::-1, ::-1].transpose(0, 1, 3, 2)) / 2  # M(−d) = M(d)ᵀ
    fit = {}
    for q, hs in own.items():
        a = latent_atoms(tensors, q).astype(np.float64)
        h, model = np.mean(hs, axis=0), np.einsum("mk,ijmn,nl->ijkl", a, m, a)
        fit[f"level {q + 1}"] = round(float(np.linalg.norm(model - h) / np.linalg.norm(h)), 4)
    seconds = round(time.perf_counter() - started)
    record = {"command": " ".join(["python", "bench/curvature.py", *sys.argv[1:]]), "images": [p.name for p in photos],
              "levels": [q + 1 for q in LEVELS], "seconds": seconds}
    (HERE / "results" / "curvature.json").write_text(json.dumps(
        {"model": args.model, **record, "relative_error_per_level": fit}, indent=2) + "\n")
    print("relative error of one M per level:", fit)
    if args.write:
        target = curvature_file_path(codec.model_file.path)
        target.write_bytes(Curvature(m.astype(np.float32), codec.model_file.digest).to_bytes())
        sidecar = codec.model_file.path.with_suffix(".json")
        if sidecar.is_file():  # the model's record says how
            atomic.write_text(sidecar, json.dumps(json.loads(sidecar.read_text()) | {
                "curvature": {"file": target.name, **record}}, indent=2) + "\n")
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
