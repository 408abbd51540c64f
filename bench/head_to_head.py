"""BD-rate of sccodec against each peer directly, over the PSNR range both curves cover.

    python bench/head_to_head.py [bench/results/kodak/sccodec.json] [bench/results/peers]

Why: BD-rates against JPEG are integrated over each codec's own overlap with JPEG, so a codec
that only covers low rates (where JPEG is worst) and one that covers 25-41 dB are not
comparable through them. Anchor = the peer; positive = sccodec needs more bits. Writes
bench/results/head_to_head.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sccodec.bench.bdrate import bd_rate

HERE = Path(__file__).resolve().parent


def main(ours: str = str(HERE / "results" / "kodak" / "sccodec.json"),
         peers_dir: str = str(HERE / "results" / "peers")) -> None:
    mine = json.loads(Path(ours).read_text())["results"]
    lo_mine, hi_mine = min(mine["psnr-rgb"]), max(mine["psnr-rgb"])
    out = {}
    for path in sorted(Path(peers_dir).glob("*.json")):
        peer = json.loads(path.read_text())
        r = peer.get("results", {})
        if "psnr-rgb" not in r or path.stem in ("png",):
            continue
        lo, hi = max(lo_mine, min(r["psnr-rgb"])), min(hi_mine, max(r["psnr-rgb"]))
        bd = bd_rate(r["bpp"], r["psnr-rgb"], mine["bpp"], mine["psnr-rgb"])
        out[path.stem] = {"bd_rate_percent": None if bd.percent != bd.percent else round(bd.percent, 1),
                          "overlap_db": [round(lo, 2), round(hi, 2)] if hi > lo else None}
        print(f"sccodec vs {path.stem:10s} {bd!s:>8}  over {lo:.2f}-{hi:.2f} dB")
    (HERE / "results" / "head_to_head.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ours", nargs="?", default=str(HERE / "results" / "kodak" / "sccodec.json"))
    ap.add_argument("peers_dir", nargs="?", default=str(HERE / "results" / "peers"))
    args = ap.parse_args()
    main(args.ours, args.peers_dir)
