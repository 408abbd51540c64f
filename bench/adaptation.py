"""What per-tile table adaptation (.scv formats 3 and 4) saves: the same network's files with and without it.

    python bench/adaptation.py [--images ../shared/data/kodak] [--model scvae-gdn]

Each image is encoded once per level (adapted); its symbols are then re-coded with the tables
as stored, in the same container, so the two hold the same symbols: the difference is the
adaptation alone. (For quad tables that is a valid format 2 file; nested tables have no
unadapted format, so only its size is measured.) Writes bench/results/adaptation.json (bpp
per level both ways, and the change).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image

from sccodec import bitstream, entropy
from sccodec.api import Codec, parse_symbols

HERE = Path(__file__).resolve().parent


def without_adaptation(data: bytes, codec: Codec) -> bytes:
    """The same container and symbols, coded with the tables as stored (for quad tables, the
    format 2 file of the same image)."""
    parsed = parse_symbols(data, codec.model_file)
    q = parsed.header.quality - 1
    words = [entropy.encode(s, codec.model_file.tables, q).astype("<u4").tobytes() for s in parsed.tiles]
    container = bitstream.parse(data)
    unadapted = [v for v, c in entropy.FORMATS.items() if c.context == codec.model_file.tables.context
                 and not c.adaptive]
    header = dataclasses.replace(container.header, version=unadapted[0]) if unadapted else container.header
    return bitstream.pack(bitstream.Container(header, words, container.ancillary))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=HERE.parent.parent / "shared" / "data" / "kodak")
    ap.add_argument("--model", default="scvae-gdn")
    args = ap.parse_args()
    codec = Codec(args.model, device="cpu")
    if not entropy.FORMATS[entropy.newest_format(codec.model_file.tables.context)].adaptive:
        raise SystemExit(f"{args.model} has {codec.model_file.tables.context} tables: no adaptation to measure")
    paths = sorted(args.images.glob("*.png"))
    levels = codec.qualities
    sizes = np.zeros((len(levels), 2))
    pixels = 0
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        pixels += image.shape[0] * image.shape[1]
        for i, q in enumerate(levels):
            adapted = codec.encode(image, quality=q)
            sizes[i] += (len(without_adaptation(adapted, codec)), len(adapted))
    bpp = sizes * 8 / pixels
    change = 100 * (bpp[:, 1] / bpp[:, 0] - 1)
    out = {"images": len(paths), "model": args.model, "weights_hash": codec.model_file.digest.hex(),
           "levels": [{"quality": q, "bpp_unadapted": round(float(a), 5), "bpp_adapted": round(float(b), 5),
                       "change_percent": round(float(c), 2)} for q, (a, b), c in zip(levels, bpp, change)],
           # geometric mean over the levels (not a BD-rate: that weights levels by their PSNR span)
           "mean_change_percent": round(float(100 * (np.exp(np.log(bpp[:, 1] / bpp[:, 0]).mean()) - 1)), 2)}
    (HERE / "results" / "adaptation.json").write_text(json.dumps(out, indent=1) + "\n")
    for level in out["levels"]:
        print(f"q{level['quality']:>2}  {level['bpp_unadapted']:.4f} -> {level['bpp_adapted']:.4f} bpp  "
              f"{level['change_percent']:+.2f}%")
    print(f"mean {out['mean_change_percent']:+.2f}%")


if __name__ == "__main__":
    main()
