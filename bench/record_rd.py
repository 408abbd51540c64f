"""Copy a Kodak bench result into the weights sidecar (the model's measured RD record).

    python bench/record_rd.py bench/results/kodak [weights/scvae-base.json]

Reads ``sccodec.json`` and ``jpeg.json`` written by ``sccodec bench --out DIR`` and stores the
per-quality points, the BD-rate vs the JPEG measured in the same run and the bench command
in the sidecar under ``kodak``. Refuses if the results were made with other weights.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from sccodec.bench.bdrate import bd_rate


def main(results_dir: str, sidecar: str = "weights/scvae-base.json") -> None:
    res = json.loads((Path(results_dir) / "sccodec.json").read_text())
    jpeg = json.loads((Path(results_dir) / "jpeg.json").read_text())
    side_path = Path(sidecar)
    side = json.loads(side_path.read_text())
    version = str(res["meta"].get("version", ""))
    if side["weights_hash"] not in version:
        raise SystemExit(f"results are for '{version}', not weights {side['weights_hash']}")
    r, j = res["results"], jpeg["results"]
    bd = bd_rate(j["bpp"], j["psnr-rgb"], r["bpp"], r["psnr-rgb"])
    side["kodak"] = {
        "protocol": "../shared/BENCHMARK.md (24 images, bpp from file bytes, PSNR-RGB averaged per point)",
        "command": f"sccodec bench --images ../shared/data/kodak --codecs sccodec,jpeg --out {results_dir}",
        "points": [{"quality": q, "bpp": round(b, 4), "psnr": round(p, 3), "ms_ssim": round(m, 5)}
                   for q, b, p, m in zip(res["meta"]["quality"], r["bpp"], r["psnr-rgb"], r["ms-ssim-rgb"])],
        "bd_rate_vs_jpeg_percent": None if bd.percent != bd.percent else round(bd.percent, 2),
        "bd_rate_note": str(bd),
    }
    side_path.write_text(json.dumps(side, indent=2) + "\n")
    print(f"recorded {len(side['kodak']['points'])} Kodak points, BD-rate vs JPEG {bd}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
