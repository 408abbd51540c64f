"""Copy a Kodak bench result into the weights sidecar (the model's measured RD record).

    python bench/record_rd.py bench/results/kodak              # -> the default model's sidecar (weights/scvae-gdn.json)
    python bench/record_rd.py bench/results/kodak-scvae-base   # -> weights/scvae-base.json

Reads the one ``sccodec*.json`` and the ``jpeg.json`` that ``sccodec bench --out DIR`` wrote
there, and stores under ``kodak`` in the model's sidecar: the per-quality points, the BD-rates
vs the JPEG measured in the same run (PSNR and MS-SSIM dB) and the bench command. Refuses if
the results were made with other weights.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sccodec import atomic
from sccodec.bench.bdrate import bd_rate
from sccodec.weights import DEFAULT_MODEL

HERE = Path(__file__).resolve().parent


def _percent(bd) -> float | None:
    return None if bd.percent != bd.percent else round(bd.percent, 2)


def main(results_dir: str, sidecar: str | None = None) -> None:
    found = sorted(Path(results_dir).glob("sccodec*.json"))
    if len(found) != 1:
        raise SystemExit(f"{results_dir}: expected one sccodec*.json, found {[p.name for p in found]}")
    codec = found[0].stem  # "sccodec" (the default model) or "sccodec@NAME"
    model = codec.partition("@")[2] or DEFAULT_MODEL
    res = json.loads(found[0].read_text())
    jpeg = json.loads((Path(results_dir) / "jpeg.json").read_text())
    side_path = Path(sidecar) if sidecar else HERE.parent / "weights" / f"{model}.json"
    side = json.loads(side_path.read_text())
    version = str(res["meta"].get("version", ""))
    if side["weights_hash"] not in version:
        raise SystemExit(f"results are for '{version}', not weights {side['weights_hash']}")
    meta = res["meta"]
    if (meta.get("dataset"), meta.get("n_images")) != ("kodak", 24):
        raise SystemExit(f"{found[0]} is a run on {meta.get('n_images')} images of '{meta.get('dataset')}', not Kodak's 24")
    r, j = res["results"], jpeg["results"]
    bd = bd_rate(j["bpp"], j["psnr-rgb"], r["bpp"], r["psnr-rgb"])
    bd_ms = bd_rate(j["bpp"], j["ms-ssim-db-rgb"], r["bpp"], r["ms-ssim-db-rgb"])
    side["kodak"] = {
        "protocol": "../shared/BENCHMARK.md (24 images, bpp from file bytes, PSNR-RGB averaged per point)",
        "command": f"sccodec bench --images ../shared/data/kodak --codecs {codec},jpeg --out {results_dir}",
        "points": [{"quality": q, "bpp": round(b, 4), "psnr": round(p, 3), "ms_ssim": round(m, 5)}
                   for q, b, p, m in zip(res["meta"]["quality"], r["bpp"], r["psnr-rgb"], r["ms-ssim-rgb"])],
        "bd_rate_vs_jpeg_percent": _percent(bd),
        "bd_rate_note": str(bd),
        "bd_rate_vs_jpeg_ms_ssim_db_percent": _percent(bd_ms),
    }
    atomic.write_text(side_path, json.dumps(side, indent=2) + "\n")
    print(f"recorded {len(side['kodak']['points'])} Kodak points in {side_path}: "
          f"BD-rate vs JPEG {bd} (PSNR), {bd_ms} (MS-SSIM dB)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results_dir", help="a folder written by `sccodec bench --out`")
    ap.add_argument("sidecar", nargs="?", help="the sidecar to write [default: the model's, from the results]")
    args = ap.parse_args()
    main(args.results_dir, args.sidecar)
