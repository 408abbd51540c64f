"""What each CPU speed setting buys, measured in alternation on one noisy machine.

    python bench/speed_ablation.py [--rounds 4] [--runs 5] [--quality 6] [--kodak ../shared/data/kodak]

Why alternation: on our shared 2-core machines the same run is ±30% slower from one minute to
the next, so two ``bench/speed.py`` runs minutes apart cannot tell a 15% change from noise.
Here each round runs every setting in a fresh process (PyTorch reads the allocator switch once
per process), in a rotating order, and the table gives each setting's median over the rounds
of its median-of-``--runs`` encode and decode times of the 768x512 image of ``bench/speed.py``:

- ``ordinary``: no switch (sccodec 0.5.8);
- ``cpu kernels``: the transforms' Winograd / GEMM kernels (``sccodec/model/cpu_kernels.py``);
- ``huge pages``: ``sccodec.enable_huge_pages()`` (``sccodec/allocator.py``), with the kernels
  (0.5.9's ``sccodec`` command, with 0.5.10's kernels);
- ``heap reuse``: ``sccodec.reuse_freed_memory()`` (``sccodec/allocator.py``), with the kernels:
  the ``sccodec`` command since 0.5.10;
- ``all``: both allocator switches and the kernels.

Writes bench/results/speed_ablation.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from speed import base_image, cpu_model, median_time

from sccodec.allocator import VARIABLE, reuse_freed_memory
from sccodec.api import Codec

HERE = Path(__file__).resolve().parent
SETTINGS = {"ordinary": (False, False, False), "cpu kernels": (False, False, True),  # huge, reuse, kernels
            "huge pages": (True, False, True), "heap reuse": (False, True, True), "all": (True, True, True)}


def child(setting: str, runs: int, quality: int, kodak: Path) -> None:
    """One process, one setting: print [encode_s, decode_s] as JSON."""
    huge, reuse, kernels = SETTINGS[setting]
    os.environ[VARIABLE] = "1" if huge else "0"  # read at PyTorch's first large allocation
    if reuse and not reuse_freed_memory():
        raise SystemExit("heap reuse is not available here (glibc's mallopt): this setting would measure nothing")
    torch.set_num_threads(2)
    codec = Codec(device="cpu")
    codec.network.g_a.use_cpu_kernels(kernels)
    codec.network.g_s.use_cpu_kernels(kernels)
    pixels = np.asarray(base_image(kodak)[0])
    data = codec.encode(pixels, quality)
    codec.decode_array(data)  # warm up
    print(json.dumps([median_time(lambda: codec.encode(pixels, quality), runs),
                      median_time(lambda: codec.decode_array(data), runs)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quality", type=int, default=6)
    ap.add_argument("--kodak", type=Path, default=HERE.parent.parent / "shared" / "data" / "kodak")
    ap.add_argument("--child", choices=list(SETTINGS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.runs, args.quality, args.kodak)
    names = list(SETTINGS)
    times: dict[str, list[list[float]]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            cmd = [sys.executable, __file__, "--child", name, "--runs", str(args.runs),
                   "--quality", str(args.quality), "--kodak", str(args.kodak)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            times[name].append(json.loads(out.strip().splitlines()[-1]))
            print(f"round {r + 1}, {name}: encode {1000 * times[name][-1][0]:.0f} ms, "
                  f"decode {1000 * times[name][-1][1]:.0f} ms", flush=True)
    summary = {name: {"encode_s": statistics.median(t[0] for t in runs), "decode_s": statistics.median(t[1] for t in runs)}
               for name, runs in times.items()}
    record = {"image": "768x512 (bench/speed.py)", "quality": args.quality, "threads": 2, "rounds": args.rounds,
              "runs": args.runs, "cpu": cpu_model(), "median": summary, "per_round": times}
    (HERE / "results" / "speed_ablation.json").write_text(json.dumps(record, indent=2) + "\n")
    base = summary["ordinary"]
    print(f"768x512, quality {args.quality}, 2 threads, {record['cpu']}: median over {args.rounds} rounds")
    print("| setting | encode ms | decode ms | vs ordinary |")
    print("|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {1000 * s['encode_s']:.0f} | {1000 * s['decode_s']:.0f} | "
              f"{100 * (s['encode_s'] / base['encode_s'] - 1):+.0f}% / {100 * (s['decode_s'] / base['decode_s'] - 1):+.0f}% |")


if __name__ == "__main__":
    main()
