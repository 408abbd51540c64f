"""Encode/decode speed of sccodec vs JPEG (Pillow) in the same run, model already loaded.

    python bench/speed.py [--kodak ../shared/data/kodak] [--threads 2] [--runs 5] [--model NAME]

Times the 768x512 Kodak image kodim01 (or the bundled astronaut photo resized to 768x512
when Kodak is absent), plus 1920x1080 and 3840x2160 versions made by resizing it; median of
``--runs`` runs each, and the whole ``sccodec encode``/``decode`` CLI process for 768x512.
Writes bench/results/speed.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import sccodec
from sccodec.api import Codec
from sccodec.weights import DEFAULT_MODEL

HERE = Path(__file__).resolve().parent
SIZES = ((768, 512), (1920, 1080), (3840, 2160))


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def base_image(kodak: Path) -> tuple[Image.Image, str]:
    path = kodak / "kodim01.png"
    if path.is_file():
        return Image.open(path).convert("RGB"), str(path)
    sample = Path(sccodec.__file__).parent / "data" / "samples" / "astronaut.jpg"
    return Image.open(sample).convert("RGB").resize((768, 512), Image.LANCZOS), f"{sample} resized"


def cpu_model() -> str:
    """The CPU's name (speed differs by machine: record which one was measured)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def jpeg_roundtrip(img: Image.Image) -> tuple[callable, callable]:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=75)
    data = buf.getvalue()
    return (lambda: img.save(io.BytesIO(), "JPEG", quality=75)), (lambda: Image.open(io.BytesIO(data)).load())


def cli_times(img: Image.Image, quality: int, runs: int, model: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        src, scv, out = Path(d) / "in.png", Path(d) / "in.scv", Path(d) / "out.png"
        img.save(src)
        enc = [sys.executable, "-m", "sccodec.cli", "encode", str(src), "-o", str(scv), "-q", str(quality),
               "--model", model, "--force"]
        dec = [sys.executable, "-m", "sccodec.cli", "decode", str(scv), "-o", str(out), "--force"]
        return {"cli_encode_s": median_time(lambda: subprocess.run(enc, check=True), runs),
                "cli_decode_s": median_time(lambda: subprocess.run(dec, check=True), runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, default=HERE.parent.parent / "shared" / "data" / "kodak")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quality", type=int, default=sccodec.DEFAULT_QUALITY)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="a shipped model's name")
    ap.add_argument("--huge-pages", action="store_true",
                    help="sccodec.enable_huge_pages() here and in the CLI processes timed (default: off, as the CLI)")
    ap.add_argument("--no-heap-reuse", action="store_true",
                    help="leave glibc's malloc as it is here (default: sccodec.reuse_freed_memory(), as the CLI does)")
    ap.add_argument("--out", type=Path, help="default: bench/results/speed.json (speed-MODEL.json for another model)")
    args = ap.parse_args()
    out = args.out or HERE / "results" / ("speed.json" if args.model == DEFAULT_MODEL else f"speed-{args.model}.json")
    torch.set_num_threads(args.threads)
    # before the network is built; the variable it sets also reaches the CLI processes timed below
    huge = args.huge_pages and sccodec.enable_huge_pages()
    reuse = not args.no_heap_reuse and sccodec.reuse_freed_memory()
    codec = Codec(args.model, device="cpu")
    codec.network  # load before timing
    img, source = base_image(args.kodak)
    rows = []
    for w, h in SIZES:
        im = img if img.size == (w, h) else img.resize((w, h), Image.LANCZOS)
        pixels = np.asarray(im)
        data = codec.encode(pixels, args.quality)
        enc = median_time(lambda: codec.encode(pixels, args.quality), args.runs)
        dec = median_time(lambda: codec.decode_array(data), args.runs)
        jenc, jdec = (median_time(f, args.runs) for f in jpeg_roundtrip(im))
        rows.append({"size": f"{w}x{h}", "encode_s": enc, "decode_s": dec, "bpp": len(data) * 8 / (w * h),
                     "jpeg_q75_encode_s": jenc, "jpeg_q75_decode_s": jdec})
    record = {"model": args.model, "threads": args.threads, "runs": args.runs, "quality": args.quality,
              "source": source, "torch": torch.__version__, "cpu": cpu_model(),
              "huge_pages": huge, "heap_reuse": reuse, "sizes": rows,
              **cli_times(img, args.quality, args.runs, args.model)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{args.model} on {record['cpu']}, threads={args.threads}, quality {args.quality}, "
          f"median of {args.runs} runs, model loaded, huge_pages={huge}, heap_reuse={reuse}")
    print("| size | encode ms | decode ms | JPEG q75 enc / dec ms | sccodec/JPEG decode |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {1000 * r['encode_s']:.0f} | {1000 * r['decode_s']:.0f} | "
              f"{1000 * r['jpeg_q75_encode_s']:.1f} / {1000 * r['jpeg_q75_decode_s']:.1f} | "
              f"{r['decode_s'] / r['jpeg_q75_decode_s']:.0f}x |")
    print(f"whole CLI process, 768x512: encode {record['cli_encode_s']:.2f} s, decode {record['cli_decode_s']:.2f} s")


if __name__ == "__main__":
    main()
