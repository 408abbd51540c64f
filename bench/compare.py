"""Should a candidate model replace a shipped one? Its Kodak curve against everything we ship.

    sccodec export train_runs/runN.pt --name cand --fit-tables ../shared/data/train --fit-images 160
    sccodec bench --images ../shared/data/kodak --codecs sccodec@cand --out /tmp/cand
    python bench/compare.py /tmp/cand/sccodec@cand.json [OLD_SIDECAR.json ...]

Prints the candidate's points and its BD-rates (negative = fewer bits at equal quality) against
the committed JPEG run (PSNR and MS-SSIM dB), against the Kodak points recorded in each
shipped model's sidecar and in any OLD_SIDECAR given (e.g. ``git show HEAD:weights/NAME.json``
saved before re-exporting NAME; issue #6: replace shipped weights only when this improves), and
against each committed peer curve, over the PSNR range both curves cover.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sccodec.bench.bdrate import bd_rate
from sccodec.weights import available_models, shipped_dir

RESULTS = Path(__file__).resolve().parent / "results"


def _curve(path: Path) -> dict[str, list[float]]:
    return json.loads(path.read_text())["results"]


def main(candidate: str, *old_sidecars: str) -> None:
    doc = json.loads(Path(candidate).read_text())
    meta, cand = doc.get("meta", {}), doc["results"]
    if (meta.get("dataset"), meta.get("n_images")) != ("kodak", 24):
        raise SystemExit(f"{candidate} is a run on {meta.get('n_images')} images of '{meta.get('dataset')}', not Kodak's 24")
    rate, psnr = cand["bpp"], cand["psnr-rgb"]
    print("points (bpp, PSNR dB, MS-SSIM):")
    for b, p, m in zip(rate, psnr, cand["ms-ssim-rgb"]):
        print(f"  {b:.4f}  {p:.2f}  {m:.4f}")
    jpeg = _curve(RESULTS / "kodak" / "jpeg.json")
    print(f"vs {'JPEG (bench/results/kodak)':28s} PSNR {bd_rate(jpeg['bpp'], jpeg['psnr-rgb'], rate, psnr)!s:>8}   "
          f"MS-SSIM dB {bd_rate(jpeg['bpp'], jpeg['ms-ssim-db-rgb'], rate, cand['ms-ssim-db-rgb'])!s:>8}")
    sidecars = [(f"shipped {n}", shipped_dir() / f"{n}.json") for n in available_models()]
    for label, path in sidecars + [(f"recorded {Path(p).name}", Path(p)) for p in old_sidecars]:
        points = json.loads(path.read_text()).get("kodak", {}).get("points", [])
        if points:
            bd = bd_rate([p["bpp"] for p in points], [p["psnr"] for p in points], rate, psnr)
            print(f"vs {label:28s} PSNR {bd!s:>8}")
    for path in sorted((RESULTS / "peers").glob("*.json")):
        peer = _curve(path)
        if "psnr-rgb" in peer and len(peer["bpp"]) >= 4:
            print(f"vs {'peer ' + path.stem:28s} PSNR {bd_rate(peer['bpp'], peer['psnr-rgb'], rate, psnr)!s:>8}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("candidate", help="the candidate's Kodak result, sccodec@NAME.json from `sccodec bench --out`")
    ap.add_argument("old_sidecars", nargs="*", metavar="OLD_SIDECAR", help="earlier sidecars to compare with")
    args = ap.parse_args()
    main(args.candidate, *args.old_sidecars)
