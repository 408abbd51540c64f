"""Format 5 (integer frequencies) against format 4 (float tables): file size and entropy-coding time
on the same symbols.

    python bench/format5.py [--data ../shared/data/train] [--model scvae-gdn] [--repeats 3]

Held-out training photos (``split_holdout``; their top-left 512×768, one tile each; never
Kodak) are encoded at every level; each file's symbols are then entropy-coded both ways, so the
sizes differ by the coding alone. Times are per tile (``sccodec.entropy.encode`` with its
adaptation choice, and ``decode``), the best of ``--repeats`` runs, then the median over all
tiles. Writes bench/results/format5.json with the machine and its load.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from sccodec import bitstream, entropy
from sccodec.api import Codec, parse_symbols
from sccodec.train.data import list_images, load_rgb, split_holdout

HERE = Path(__file__).resolve().parent
FORMATS = {4: (True, False), 5: (True, True)}  # version -> (adaptive, integer) of sccodec.entropy


def machine() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    return {"cpu": names[0] if names else platform.processor(), "cores": os.cpu_count(),
            "avx512": "avx512f" in info, "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def best_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "train")
    ap.add_argument("--model", default="scvae-gdn")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    codec = Codec(args.model, device="cpu")
    tables = codec.model_file.tables
    _, held = split_holdout(list_images(args.data))
    levels = codec.qualities
    size = {v: np.zeros(len(levels), np.int64) for v in FORMATS}
    times = {(v, kind): [] for v in FORMATS for kind in ("encode", "decode")}
    load_before = os.getloadavg()
    for path in held:
        pixels = load_rgb(path)[:, :512, :768].permute(1, 2, 0).numpy()
        pixels = np.ascontiguousarray(pixels[: pixels.shape[0] // 16 * 16, : pixels.shape[1] // 16 * 16])
        for i, q in enumerate(levels):
            data = codec.encode(pixels, q)
            parsed = parse_symbols(data, codec.model_file)
            container = bitstream.parse(data)
            for version, (adaptive, integer) in FORMATS.items():
                payloads = []
                for tile in parsed.tiles:
                    spent, words = best_time(lambda: entropy.encode(tile, tables, q - 1, adaptive, integer),
                                             args.repeats)
                    times[version, "encode"].append(spent)
                    spent, back = best_time(lambda: entropy.decode(words, tables, q - 1, tile.shape, adaptive, integer),
                                            args.repeats)
                    times[version, "decode"].append(spent)
                    assert np.array_equal(back, tile)
                    payloads.append(words.astype("<u4").tobytes())
                header = dataclasses.replace(container.header, version=version)
                size[version][i] += len(bitstream.pack(bitstream.Container(header, payloads, container.ancillary)))
        print(f"{path.name}: done")
    change = 100 * (size[5] / size[4] - 1)
    out = {
        "images": [p.name for p in held], "crop": "top-left 512x768, one tile", "model": args.model,
        "weights_hash": codec.model_file.digest.hex(),
        "machine": {**machine(), "load_average_before": [round(x, 2) for x in load_before],
                    "note": "2 cores shared with other engineers' jobs: times are indicative"},
        "levels": [{"quality": q, "bytes_format4": int(a), "bytes_format5": int(b),
                    "change_percent": round(float(c), 4)} for q, a, b, c in zip(levels, size[4], size[5], change)],
        "total_bytes": {"format4": int(size[4].sum()), "format5": int(size[5].sum()),
                        "change_percent": round(float(100 * (size[5].sum() / size[4].sum() - 1)), 4)},
        "median_ms_per_tile": {f"format{v}_{kind}": round(1000 * float(np.median(t)), 2)
                               for (v, kind), t in times.items()},
        "tiles_timed": len(times[4, "encode"]), "repeats": args.repeats,
    }
    (HERE / "results" / "format5.json").write_text(json.dumps(out, indent=1) + "\n")
    for level in out["levels"]:
        print(f"q{level['quality']:>2}  {level['bytes_format4']:>8} -> {level['bytes_format5']:>8} bytes  "
              f"{level['change_percent']:+.4f}%")
    print(f"total {out['total_bytes']['change_percent']:+.4f}%  times (ms/tile) {out['median_ms_per_tile']}")


if __name__ == "__main__":
    main()
