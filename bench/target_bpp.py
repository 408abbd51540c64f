"""How close ``--target-bpp`` lands on Kodak: mean |achieved - target| / target per target.

    python bench/target_bpp.py [--images ../shared/data/kodak] [--targets 0.25,0.5,1.0]

Writes bench/results/target_bpp.json. The search picks the highest quality whose file does
not exceed the target (the lowest quality if none fits), so the error also shows where the
model's rate range ends.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from sccodec.api import Codec

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=HERE.parent.parent / "shared" / "data" / "kodak")
    ap.add_argument("--targets", default="0.25,0.5,1.0")
    args = ap.parse_args()
    codec = Codec(device="cpu")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(args.images.glob("*.png"))]
    out = {"images": len(images), "targets": {}}
    for target in (float(t) for t in args.targets.split(",")):
        results = [codec.encode_with_info(im, target_bpp=target) for im in images]
        achieved = np.array([r.bpp for r in results])
        out["targets"][str(target)] = {
            "mean_abs_relative_error": float(np.mean(np.abs(achieved - target) / target)),
            "mean_bpp": float(achieved.mean()), "over_target": int((achieved > target).sum()),
            "qualities_chosen": sorted({r.quality for r in results})}
        print(f"target {target}: mean |achieved-target|/target = "
              f"{out['targets'][str(target)]['mean_abs_relative_error']:.3f}, mean {achieved.mean():.3f} bpp, "
              f"{out['targets'][str(target)]['over_target']} over target, qualities {out['targets'][str(target)]['qualities_chosen']}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "target_bpp.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
