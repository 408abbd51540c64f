"""How the encoder should round near 0: real files and PSNR per rounding rule.

    python bench/dead_zone.py [--images 4] [--thresholds 0.5,0.58] [--bits-weights 0.035] [--model scvae-gdn]

Held-out training photos (``split_holdout``, 512×768 crops; never Kodak, which is the
evaluation set), all quality levels, files written by ``sccodec.api.Codec`` composed with a
symbol coder that rounds by the rule. Two kinds of rule: a fixed dead zone (code |s| < threshold
as 0, round the rest: ``sccodec.rdo.fixed_dead_zone``; 0.5 is plain rounding) and the rate-aware
rounding the encoder uses (``sccodec.rdo.quantize``: the zero threshold grows by ``bits_weight``
per bit a ±1 costs in its context), at every level with each ``--bits-weights`` value and per
level as the model's sidecar sets it (``EncoderSettings.bits_weights``). The first threshold is
the anchor. Prints and writes to bench/results/dead_zone.json each rule's change in bits at
equal PSNR per level (interpolated on the anchor's curve; none where a level's PSNR lies outside
the anchor's range, which only an extrapolation could price) and its BD-rate.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from sccodec.api import Codec
from sccodec.bench.bdrate import bd_rate
from sccodec.coder import ContextCoder
from sccodec.rdo import ZERO_THRESHOLD, fixed_dead_zone
from sccodec.train.data import list_images, load_rgb, split_holdout

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "train"


@dataclass(frozen=True)
class FixedDeadZoneCoder(ContextCoder):
    """The model's coder, rounding every level with one fixed dead zone."""

    threshold: float = ZERO_THRESHOLD

    def quantize(self, s: np.ndarray, quality_index: int, effort: int = 2) -> np.ndarray:
        return fixed_dead_zone(s, self.tables.value_range, self.threshold)


def curve(codec: Codec, images: list[np.ndarray], coder: ContextCoder, effort: int = 2,
          seconds: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, PSNR) per level over all images, the codec's network composed with ``coder`` at
    ``effort`` (2: the rate-aware rounding these rules are); encode times go to ``seconds``."""
    codec = Codec(codec.model_file, codec.device, network=codec.network, coder=coder)
    levels = len(codec.qualities)
    bits, squared, pixels = np.zeros(levels), np.zeros(levels), 0
    for img in images:
        pixels += img.shape[0] * img.shape[1]
        for i, q in enumerate(codec.qualities):
            started = time.perf_counter()
            data = codec.encode(img, quality=q, effort=effort)
            if seconds is not None:
                seconds.append(time.perf_counter() - started)
            bits[i] += 8 * len(data)
            squared[i] += ((np.asarray(codec.decode(data), np.float64) - img) ** 2).sum()
    return bits / pixels, 10 * np.log10(255.0**2 / (squared / (3 * pixels)))


def coder_fields(coder: ContextCoder) -> dict:
    """The fields of the model's coder (tables, format, weights, classes, pairs), to build a
    rounding rule's coder on them."""
    return {f.name: getattr(coder, f.name) for f in fields(ContextCoder)}


def change_at_equal_psnr(bpp: np.ndarray, psnr: np.ndarray, anchor_bpp: np.ndarray,
                         anchor_psnr: np.ndarray) -> list[float | None]:
    """Per level, % more bits than the anchor's curve needs at the same PSNR (log-rate
    interpolated); None outside the anchor's PSNR range."""
    equal = np.exp(np.interp(psnr, anchor_psnr, np.log(anchor_bpp)))
    inside = (psnr >= anchor_psnr.min()) & (psnr <= anchor_psnr.max())
    return [float(100 * (b / e - 1)) if ok else None for b, e, ok in zip(bpp, equal, inside)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--thresholds", default="0.5,0.58", help="fixed dead zones; the first is the anchor")
    ap.add_argument("--bits-weights", default="0.035", help="rate-aware rules, one weight at every level ('' for none)")
    ap.add_argument("--model", default="scvae-gdn")
    args = ap.parse_args()
    _, held = split_holdout(list_images(args.data))
    images = [load_rgb(p)[:, :512, :768].permute(1, 2, 0).numpy() for p in held[: args.images]]
    codec = Codec(args.model, device="cpu")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    own, levels = codec.coder, len(codec.qualities)
    rules = {f"zero below {t:g}": FixedDeadZoneCoder(**coder_fields(own), threshold=t) for t in thresholds}
    rules |= {f"rate-aware, {float(w):g} per bit": replace(own, bits_weights=(float(w),) * levels)
              for w in args.bits_weights.split(",") if w}
    rules["the encoder's rule (the model's sidecar)"] = own
    curves = {name: curve(codec, images, coder) for name, coder in rules.items()}
    anchor_bpp, anchor_psnr = next(iter(curves.values()))
    out = {"model": args.model, "images": len(images), "anchor": next(iter(curves)), "rules": {}}
    for name, (bpp, psnr) in curves.items():
        change = change_at_equal_psnr(bpp, psnr, anchor_bpp, anchor_psnr)
        bd = bd_rate(anchor_bpp, anchor_psnr, bpp, psnr).percent
        out["rules"][name] = {"bpp": bpp.tolist(), "psnr": psnr.tolist(),
                              "change_at_equal_psnr": change, "bd_rate": bd}
        print(f"{name}: BD {bd:+.2f}%  per level " + " ".join("n/a" if c is None else f"{c:+.2f}" for c in change))
    (HERE / "results" / "dead_zone.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
