"""BD-rate of sccodec against each peer directly, over the PSNR range both curves cover.

    python bench/head_to_head.py [bench/results/kodak/sccodec.json] [bench/results/peers]

Why: BD-rates against JPEG are integrated over each codec's own overlap with JPEG, so a codec
that only covers low rates (where JPEG is worst) and one that covers 25-41 dB are not
comparable through them. Anchor = the peer; positive = sccodec needs more bits. Lossless peers
are left out. The figures come from sccodec.bench.head_to_head, the function behind the
head-to-head columns of `sccodec bench`. Writes bench/results/head_to_head.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sccodec import atomic
from sccodec.bench.head_to_head import head_to_head
from sccodec.bench.report import load_reference

HERE = Path(__file__).resolve().parent


def main(ours: str = str(HERE / "results" / "kodak" / "sccodec.json"),
         peers_dir: str = str(HERE / "results" / "peers"),
         out: str = str(HERE / "results" / "head_to_head.json")) -> dict[str, dict[str, object]]:
    mine = load_reference(Path(ours))[0]
    peers = {}  # file stem (a peers file with several codecs: codec name) -> curve
    for path in sorted(Path(peers_dir).glob("*.json")):
        curves = load_reference(path)
        peers.update({path.stem if len(curves) == 1 else c.name: c for c in curves if not c.lossless})
    names = {id(curve): name for name, curve in peers.items()}
    results = {}
    for comparison in head_to_head(mine, list(peers.values())):
        name = names[id(comparison.anchor)]
        results[name] = {k: v for k, v in comparison.to_json().items() if k != "reason" or v is not None}
        print(f"sccodec vs {name:10s} {comparison.bd!s:>8}  over {comparison.overlap_text() or '-'}")
    atomic.write_text(Path(out), json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ours", nargs="?", default=str(HERE / "results" / "kodak" / "sccodec.json"))
    ap.add_argument("peers_dir", nargs="?", default=str(HERE / "results" / "peers"))
    ap.add_argument("--out", default=str(HERE / "results" / "head_to_head.json"))
    args = ap.parse_args()
    main(args.ours, args.peers_dir, args.out)
