"""Two .scv format versions on the same symbols: file size and entropy-coding time.

    python bench/formats.py [--versions 5,6] [--data ../shared/data/train] [--model scvae-gdn] [--repeats 3]

``--versions 4,5``: format 5 (integer frequencies) against format 4 (float tables) →
bench/results/format5.json; ``5,6``: format 6 (block classes) against format 5 → format6.json;
``6,7``: format 7 (pair weights) against format 6 → format7.json.

Held-out training photos (``split_holdout``; their top-left 512×768, one tile each; never
Kodak) are encoded at every level; each file's symbols are then entropy-coded both ways, so the
sizes differ by the coding alone. Times are per tile (the coder's ``encode_tile`` with its
adaptation choice (and format 6's class choice), and ``decode_tile``), the best of ``--repeats`` runs,
then the median over all tiles. Writes bench/results/format{newer}.json with the machine and its load.
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
from sccodec.atom_pairs import products_on_one_thread
from sccodec.train.data import list_images, load_rgb, split_holdout

HERE = Path(__file__).resolve().parent


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
    ap.add_argument("--versions", default="5,6", help="the older and the newer format version")
    args = ap.parse_args()
    old, new = (int(v) for v in args.versions.split(","))
    codec = Codec(args.model, device="cpu")
    newest = codec.coder
    coders = {v: newest.reading(v, classes_hash=newest.classes.digest if entropy.FORMATS[v].classes else b"",
                                pairs_hash=newest.pairs.digest if entropy.FORMATS[v].pairs else b"")
              for v in (old, new)}
    _, held = split_holdout(list_images(args.data))
    levels = codec.qualities
    size = {v: np.zeros(len(levels), np.int64) for v in coders}
    times = {(v, kind): [] for v in coders for kind in ("encode", "decode")}
    load_before = os.getloadavg()
    with products_on_one_thread():  # as the codec codes pair-weighted files (sccodec.atom_pairs)
        for path in held:
            pixels = load_rgb(path)[:, :512, :768].permute(1, 2, 0).numpy()
            pixels = np.ascontiguousarray(pixels[: pixels.shape[0] // 16 * 16, : pixels.shape[1] // 16 * 16])
            for i, q in enumerate(levels):
                data = codec.encode(pixels, q)
                parsed = parse_symbols(data, codec.model_file)
                container = bitstream.parse(data)
                for version, coder in coders.items():
                    payloads = []
                    for tile in parsed.tiles:
                        spent, payload = best_time(lambda: coder.encode_tile(tile, q - 1), args.repeats)
                        times[version, "encode"].append(spent)
                        spent, back = best_time(lambda: coder.decode_tile(payload, q - 1, tile.shape), args.repeats)
                        times[version, "decode"].append(spent)
                        assert np.array_equal(back, tile)
                        payloads.append(payload)
                    header = dataclasses.replace(container.header, version=version, classes_hash=coder.classes_hash,
                                                 pairs_hash=coder.pairs_hash)
                    size[version][i] += len(bitstream.pack(bitstream.Container(header, payloads, container.ancillary)))
            print(f"{path.name}: done")
    change = 100 * (size[new] / size[old] - 1)
    out = {
        "images": [p.name for p in held], "crop": "top-left 512x768, one tile", "model": args.model,
        "weights_hash": codec.model_file.digest.hex(),
        "machine": {**machine(), "load_average_before": [round(x, 2) for x in load_before],
                    "note": "2 cores shared with other engineers' jobs: times are indicative"},
        "levels": [{"quality": q, f"bytes_format{old}": int(a), f"bytes_format{new}": int(b),
                    "change_percent": round(float(c), 4)} for q, a, b, c in zip(levels, size[old], size[new], change)],
        "total_bytes": {f"format{old}": int(size[old].sum()), f"format{new}": int(size[new].sum()),
                        "change_percent": round(float(100 * (size[new].sum() / size[old].sum() - 1)), 4)},
        "median_ms_per_tile": {f"format{v}_{kind}": round(1000 * float(np.median(t)), 2)
                               for (v, kind), t in times.items()},
        "tiles_timed": len(times[old, "encode"]), "repeats": args.repeats,
    }
    (HERE / "results" / f"format{new}.json").write_text(json.dumps(out, indent=1) + "\n")
    for level in out["levels"]:
        print(f"q{level['quality']:>2}  {level[f'bytes_format{old}']:>8} -> {level[f'bytes_format{new}']:>8} bytes  "
              f"{level['change_percent']:+.4f}%")
    print(f"total {out['total_bytes']['change_percent']:+.4f}%  times (ms/tile) {out['median_ms_per_tile']}")


if __name__ == "__main__":
    main()
