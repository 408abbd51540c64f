"""Cross-thread-count coding on the CPU runtime: files encoded with 1 and 2 threads, and their decodes.

    python bench/determinism.py [--images ../shared/data/kodak] [--count 4]

For each image and each thread count used to encode (1, 2), decodes with both thread counts
and reports the PSNR of every decode and the largest PSNR difference (target < 0.01 dB),
plus whether the two encoders produced identical files. Writes bench/results/determinism.json
(``--effort 3`` or ``4``: determinism-effortN.json; the refinement's gradient graph runs with
the same thread count).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from sccodec.api import DEFAULT_QUALITY, Codec
from sccodec.levels import DEFAULT_EFFORT
from sccodec.metrics import psnr_rgb as psnr

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=HERE.parent.parent / "shared" / "data" / "kodak")
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--quality", type=int, default=DEFAULT_QUALITY)
    ap.add_argument("--effort", type=int, default=DEFAULT_EFFORT,
                    help="the encoder's effort (3-4: the refinement's gradient graph runs with the same threads)")
    args = ap.parse_args()
    paths = sorted(args.images.glob("*.png"))[: args.count]
    if not paths:
        raise SystemExit(f"no PNG images in {args.images}")
    codecs = {t: Codec(device="cpu", threads=t) for t in (1, 2)}
    rows = []
    for path in paths:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        files = {t: codec.encode(pixels, args.quality, effort=args.effort) for t, codec in codecs.items()}
        decodes = {}
        for enc_t, data in files.items():
            for dec_t, codec in codecs.items():
                decodes[f"enc{enc_t}_dec{dec_t}"] = psnr(codec.decode_array(data)[0], pixels)
        values = list(decodes.values())
        rows.append({"image": path.name, "identical_files": files[1] == files[2], "psnr": decodes,
                     "max_psnr_difference_db": max(values) - min(values)})
    worst = max(r["max_psnr_difference_db"] for r in rows)
    out = {"quality": args.quality, "effort": args.effort, "images": rows, "worst_difference_db": worst}
    (HERE / "results").mkdir(exist_ok=True)
    name = "determinism.json" if args.effort == DEFAULT_EFFORT else f"determinism-effort{args.effort}.json"
    (HERE / "results" / name).write_text(json.dumps(out, indent=2) + "\n")
    for r in rows:
        print(f"{r['image']}: identical files {r['identical_files']}, max PSNR difference "
              f"{r['max_psnr_difference_db']:.5f} dB")
    print(f"worst difference over {len(rows)} images: {worst:.5f} dB (target < 0.01 dB)")


if __name__ == "__main__":
    main()
