"""How wide the encoder's dead zone around 0 should be: real files and PSNR per zero threshold.

    python bench/dead_zone.py [--images 4] [--thresholds 0.5,0.55,0.6,0.65,0.7] [--model scvae-gdn]

Held-out training photos (``split_holdout``, 512×768 crops; never Kodak, which is the
evaluation set), all quality levels. The encoder codes |s| < threshold as 0 and rounds the rest
(``sccodec.model.scvae.dead_zone_round``); 0.5 is plain rounding, the anchor. Prints and writes
to bench/results/dead_zone.json each threshold's change in bits at equal PSNR per level
(interpolated on the anchor's curve) and its BD-rate.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sccodec.api import Codec
from sccodec.bench.bdrate import bd_rate
from sccodec.entropy import MAX_MAGNITUDE_OVER_RANGE
from sccodec.model.scvae import dead_zone_round
from sccodec.train.data import list_images, load_rgb, split_holdout

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "train"


def curve(codec: Codec, images: list[np.ndarray], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, PSNR) per level over all images, with the encoder's zero threshold set."""
    net = codec.network
    limit = net.config.value_range + MAX_MAGNITUDE_OVER_RANGE

    def quantize(y: torch.Tensor, quality_index: int) -> torch.Tensor:
        s, _ = net._code(y, torch.tensor([quality_index], device=y.device))
        return dead_zone_round(s[0], threshold).clamp_(-limit, limit).to(torch.int32)

    net.quantize = quantize  # this instance only
    levels = len(codec.qualities)
    bits, squared, pixels = np.zeros(levels), np.zeros(levels), 0
    for img in images:
        pixels += img.shape[0] * img.shape[1]
        for i, q in enumerate(codec.qualities):
            data = codec.encode(img, quality=q)
            bits[i] += 8 * len(data)
            squared[i] += ((np.asarray(codec.decode(data), np.float64) - img) ** 2).sum()
    return bits / pixels, 10 * np.log10(255.0**2 / (squared / (3 * pixels)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--thresholds", default="0.5,0.55,0.6,0.65,0.7")
    ap.add_argument("--model", default="scvae-gdn")
    args = ap.parse_args()
    _, held = split_holdout(list_images(args.data))
    images = [load_rgb(p)[:, :512, :768].permute(1, 2, 0).numpy() for p in held[: args.images]]
    codec = Codec(args.model, device="cpu")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    curves = {t: curve(codec, images, t) for t in thresholds}
    anchor_bpp, anchor_psnr = curves[thresholds[0]]
    out = {"model": args.model, "images": len(images), "anchor": thresholds[0], "thresholds": {}}
    for t, (bpp, psnr) in curves.items():
        equal = np.exp(np.interp(psnr, anchor_psnr, np.log(anchor_bpp)))
        change = 100 * (bpp / equal - 1)
        bd = bd_rate(anchor_bpp, anchor_psnr, bpp, psnr).percent
        out["thresholds"][str(t)] = {"bpp": bpp.tolist(), "psnr": psnr.tolist(),
                                     "change_at_equal_psnr": change.tolist(), "bd_rate": bd}
        print(f"zero below {t:.3f}: BD {bd:+.2f}%  per level " + " ".join(f"{c:+.2f}" for c in change))
    (HERE / "results" / "dead_zone.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
