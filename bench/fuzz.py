"""Fuzz the .scv decoder: python bench/fuzz.py [--cases 100000] [--seed 0] [--max-pixels N]

Writes bench/results/fuzz.json: cases, SCVErrors, other exceptions (must be 0), hangs,
slowest case and peak RSS. The decode work a file can ask for is bounded by the pixel limit
(--max-pixels, default 2**20 here: a hostile header may claim any size up to the limit).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sccodec.api import Codec
from sccodec.bench.fuzz import run_fuzz

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-pixels", type=int, default=1 << 20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    codec = Codec(device="cpu", max_pixels=args.max_pixels, threads=args.threads)
    t0 = time.time()

    def progress(i: int) -> None:
        if i and i % 10_000 == 0:
            print(f"{i} cases, {time.time() - t0:.0f} s", flush=True)

    r = run_fuzz(codec, args.cases, args.seed, progress)
    out = {"cases": r.cases, "scv_errors": r.scv_errors, "decoded_despite_mutation": r.decoded,
           "other_exceptions": len(r.other_exceptions), "examples": r.other_exceptions[:20],
           "hangs": r.hangs, "slowest_case_s": round(r.slowest_s, 4), "slowest_mutation": r.slowest_mutation,
           "peak_rss_mb": round(r.peak_rss_mb, 1), "wall_s": round(time.time() - t0, 1),
           "max_pixels": args.max_pixels, "seed": args.seed, "error_kinds": dict(r.by_message.most_common())}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "fuzz.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "error_kinds"}, indent=2))


if __name__ == "__main__":
    main()
