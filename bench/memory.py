"""Peak memory of large images, and what tiling costs.

    python bench/memory.py [--kodak ../shared/data/kodak] [--quality Q]

1. Peak RSS of ``sccodec encode`` and ``sccodec decode`` (whole CLI process, measured with
   getrusage on the child) for 1920x1080, 3840x2160 and 7680x4320 images made by tiling
   mirrored copies of Kodak images and resizing.
2. Tiled (1024 px, the default) vs untiled (one 2048 px tile) coding of the 1920x1080 image:
   bpp and PSNR, and a crop across a tile seam saved as bench/results/seam_crop.png
   (top: original, middle: tiled, bottom: untiled, 3x nearest-neighbour zoom).
Writes bench/results/memory.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from sccodec.api import DEFAULT_QUALITY
from sccodec.metrics import psnr_rgb as psnr

HERE = Path(__file__).resolve().parent
SIZES = ((1920, 1080), (3840, 2160), (7680, 4320))


def mosaic(kodak: Path, width: int, height: int) -> Image.Image:
    """Kodak images side by side (alternately mirrored so edges meet), resized to the target."""
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(kodak.glob("kodim*.png"))
              if Image.open(p).size == (768, 512)][:4]
    row1 = np.concatenate([images[0], images[1][:, ::-1]], 1)
    row2 = np.concatenate([images[2][::-1], images[3][::-1, ::-1]], 1)
    grid = np.concatenate([row1, row2], 0)
    return Image.fromarray(grid).resize((width, height), Image.LANCZOS)


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak RSS of one child process (each measurement runs in a fresh interpreter)."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *cmd], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, default=HERE.parent.parent / "shared" / "data" / "kodak")
    ap.add_argument("--quality", type=int, default=DEFAULT_QUALITY)
    args = ap.parse_args()
    sccodec_cli = [sys.executable, "-m", "sccodec.cli"]
    record: dict = {"quality": args.quality, "peak_rss_mb": {}}
    with tempfile.TemporaryDirectory() as d:
        for w, h in SIZES:
            src, scv, out = Path(d) / f"{w}.png", Path(d) / f"{w}.scv", Path(d) / f"{w}_out.png"
            mosaic(args.kodak, w, h).save(src)
            enc = peak_rss_mb(sccodec_cli + ["encode", str(src), "-o", str(scv), "-q", str(args.quality)])
            dec = peak_rss_mb(sccodec_cli + ["decode", str(scv), "-o", str(out)])
            record["peak_rss_mb"][f"{w}x{h}"] = {"encode": round(enc), "decode": round(dec),
                                                  "bpp": scv.stat().st_size * 8 / (w * h)}
            print(f"{w}x{h}: peak RSS encode {enc:.0f} MB, decode {dec:.0f} MB", flush=True)

    from sccodec.api import Codec

    codec = Codec(device="cpu")
    img = np.asarray(mosaic(args.kodak, 1920, 1080))
    rows = {}
    decoded = {}
    for name, tile in (("tiled_1024", 1024), ("untiled", 2048)):
        data = codec.encode(img, args.quality, tile=tile)
        decoded[name] = codec.decode_array(data)[0]
        rows[name] = {"bpp": len(data) * 8 / img.shape[0] / img.shape[1], "psnr": psnr(decoded[name], img)}
    seam = slice(1024 - 48, 1024 + 48)
    band = lambda a: a[400:496, seam]  # noqa: E731 - a crop across the vertical seam at x = 1024
    crop = np.concatenate([band(img), band(decoded["tiled_1024"]), band(decoded["untiled"])], 0)
    Image.fromarray(crop).resize((crop.shape[1] * 3, crop.shape[0] * 3), Image.NEAREST).save(
        HERE / "results" / "seam_crop.png")
    # PSNR of the 16-px-wide strips on both sides of the seam, tiled vs untiled
    strip = (slice(None), slice(1024 - 16, 1024 + 16))
    rows["seam_strip_psnr"] = {k: psnr(v[strip], img[strip]) for k, v in decoded.items()}
    rows["psnr_cost_db"] = rows["untiled"]["psnr"] - rows["tiled_1024"]["psnr"]
    record["tiling_1920x1080"] = rows
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "memory.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
