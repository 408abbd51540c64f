"""Speed of compressed-domain analysis against decoding to pixels first, per 768x512 file.

    python bench/analysis_speed.py --work /tmp/analysis_speed [--kodak ../shared/data/kodak --repeats 3]

The 24 Kodak images are encoded once at the default quality (into ``--work``); then, in one
process, after a warm-up pass over the first file, each pipeline runs ``--repeats`` times per file
(median per file, then the median over files):

- ``codes_segment``:   ``read_codes(bytes)`` + ``segment(codes, K)``
- ``codes_describe``:  ``read_codes(bytes)`` + ``describe(codes)``
- ``pixels_segment``:  ``Codec.decode_array(bytes)`` + Lab mean per 16x16 block (3 numbers per
  position: the cheapest pixel features on the same grid) + the same ``cluster_grid`` with the same
  options + the same nearest upsampling to image size
- ``pixels_describe``: ``Codec.decode_array(bytes)`` + a 16x16 Lab thumbnail (bench/search_quality.py)

and each stage alone. Two configurations: ``defaults`` (the codec's and scikit-learn's thread
counts as they come: every core) and ``one_thread`` (``Codec(threads=1)`` and
``threadpoolctl.threadpool_limits(1)``), because on a small grid the threads can cost more than
they give. Ratios: codes_segment / pixels_segment and codes_describe / pixels_describe (the
target of the analysis work is 0.2 or less).

Whole processes (``--process-files`` files, ``--repeats`` runs each, median): ``sccodec segment
FILE -k K -o labels.png`` against ``sccodec decode FILE -o x.png`` followed by a Python process that
clusters the PNG's pixels the same way and writes the same label PNG; once as they come and once
with ``OMP_NUM_THREADS=1`` (K-means' OpenMP threads).
Writes ``--out`` (JSON) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the sibling bench scripts, also when loaded by file path

from search_quality import thumbnail_descriptor  # noqa: E402
from segmentation_quality import STRIDE, block_lab, machine  # noqa: E402

REPO = HERE.parent
KODAK = REPO.parent / "shared" / "data" / "kodak"

#: The pixel side of the whole-process comparison: what a user would run after ``sccodec decode``.
PIXEL_SEGMENT_SCRIPT = """
import sys
import numpy as np
from PIL import Image
sys.path.insert(0, {bench!r})
from segmentation_quality import block_lab
from sccodec.analysis.segment import cluster_grid, upsample
pixels = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
labels = upsample(cluster_grid(block_lab(pixels), int(sys.argv[3])), 16, pixels.shape[:2])
Image.fromarray(labels.astype(np.uint8), "L").save(sys.argv[2], compress_level=1)
"""


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pipelines(codec, k: int) -> dict[str, Callable[[bytes], object]]:  # noqa: ANN001 (sccodec.Codec)
    """Name -> a function of the file's bytes; the whole pipelines, then their stages."""
    from sccodec.analysis.describe import describe
    from sccodec.analysis.segment import cluster_grid, segment, upsample
    from sccodec.codes import read_codes

    def pixels_segment(data: bytes) -> np.ndarray:
        pixels = codec.decode_array(data)[0]
        return upsample(cluster_grid(block_lab(pixels), k), STRIDE, pixels.shape[:2])

    return {
        "codes_segment": lambda data: segment(read_codes(data), k),
        "codes_describe": lambda data: describe(read_codes(data)),
        "pixels_segment": pixels_segment,
        "pixels_describe": lambda data: thumbnail_descriptor(codec.decode_array(data)[0]),
        "stage_read_codes": read_codes,
        "stage_decode_array": lambda data: codec.decode_array(data),
    }


def stages_on_prepared(codec, k: int, data: bytes) -> dict[str, Callable[[], object]]:  # noqa: ANN001
    """The stages that take already-read codes or decoded pixels."""
    from sccodec.analysis.describe import describe
    from sccodec.analysis.segment import cluster_grid, segment
    from sccodec.codes import read_codes

    codes = read_codes(data)
    pixels = codec.decode_array(data)[0]
    features = block_lab(pixels)
    return {"stage_segment_on_codes": lambda: segment(codes, k),
            "stage_describe_on_codes": lambda: describe(codes),
            "stage_block_lab": lambda: block_lab(pixels),
            "stage_cluster_grid_on_pixels": lambda: cluster_grid(features, k),
            "stage_thumbnail": lambda: thumbnail_descriptor(pixels)}


def in_process(files: list[Path], k: int, repeats: int, one_thread: bool) -> dict[str, object]:
    from threadpoolctl import threadpool_limits

    from sccodec.api import Codec

    codec = Codec(device="cpu", threads=1 if one_thread else None)
    with threadpool_limits(1) if one_thread else nullcontext():
        runs = pipelines(codec, k)
        first = files[0].read_bytes()
        for fn in runs.values():  # warm-up: imports, graph loading, first-call costs
            fn(first)
        per_file: dict[str, list[float]] = {name: [] for name in runs}
        for path in files:
            data = path.read_bytes()
            for name, fn in runs.items():
                per_file[name].append(median_seconds(lambda: fn(data), repeats))
            for name, fn in stages_on_prepared(codec, k, data).items():
                per_file.setdefault(name, []).append(median_seconds(fn, repeats))
            print(f"  {path.name}: " + ", ".join(f"{n} {1000 * v[-1]:.0f} ms" for n, v in per_file.items()
                                                 if not n.startswith("stage")), flush=True)
    ms = {name: round(1000 * statistics.median(v), 1) for name, v in per_file.items()}
    ratios = {}
    for codes, pixels in (("codes_segment", "pixels_segment"), ("codes_describe", "pixels_describe")):
        per = [a / b for a, b in zip(per_file[codes], per_file[pixels])]
        ratios[f"{codes}/{pixels}"] = {"median_of_per_file_ratios": round(statistics.median(per), 3),
                                       "min": round(min(per), 3), "max": round(max(per), 3)}
    return {"median_ms": ms, "ratios": ratios}


def process_times(files: list[Path], k: int, repeats: int, work: Path, env: dict[str, str] | None = None
                  ) -> dict[str, object]:
    """Whole processes: ``sccodec segment`` against ``sccodec decode`` + clustering the PNG, all
    with the environment ``env`` (None: this process's)."""
    cli = [sys.executable, "-m", "sccodec.cli"]
    script = PIXEL_SEGMENT_SCRIPT.format(bench=str(HERE))
    per_file: dict[str, list[float]] = {"sccodec_segment": [], "sccodec_decode": [], "pixel_clustering": [],
                                        "decode_plus_clustering": []}
    with tempfile.TemporaryDirectory(dir=work) as d:
        labels, png = Path(d) / "labels.png", Path(d) / "decoded.png"
        commands = {"sccodec_segment": cli + ["segment", "{scv}", "-k", str(k), "-o", str(labels), "--force"],
                    "sccodec_decode": cli + ["decode", "{scv}", "-o", str(png), "--force"],
                    "pixel_clustering": [sys.executable, "-c", script, str(png), str(labels), str(k)]}
        for path in files:
            runs: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(repeats + 1):  # the first round warms the file cache, and is dropped
                for name, command in commands.items():
                    argv = [str(path) if a == "{scv}" else a for a in command]
                    t0 = time.perf_counter()
                    subprocess.run(argv, check=True, capture_output=True, env=env)
                    runs[name].append(time.perf_counter() - t0)
            for name, times in runs.items():
                per_file[name].append(statistics.median(times[1:]))
            per_file["decode_plus_clustering"].append(
                statistics.median([a + b for a, b in zip(runs["sccodec_decode"][1:], runs["pixel_clustering"][1:])]))
    ms = {name: round(1000 * statistics.median(v), 1) for name, v in per_file.items()}
    per = [a / b for a, b in zip(per_file["sccodec_segment"], per_file["decode_plus_clustering"])]
    return {"median_ms": ms, "files": [p.name for p in files],
            "ratio_segment_over_decode_plus_clustering": round(statistics.median(per), 3)}


def encoded_kodak(kodak: Path, work: Path) -> list[Path]:
    """The Kodak images at the default quality, encoded once into ``work``."""
    from sccodec.api import Codec

    codec = None
    out = []
    for png in sorted(kodak.glob("kodim*.png")):
        scv = work / f"{png.stem}.scv"
        if not scv.is_file():
            codec = codec or Codec(device="cpu")
            scv.write_bytes(codec.encode(Image.open(png)))
        out.append(scv)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the encoded files (not committed)")
    parser.add_argument("--kodak", type=Path, default=KODAK)
    parser.add_argument("--k", type=int, default=8, help="segments")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--count", type=int, default=None, help="only the first COUNT images")
    parser.add_argument("--process-files", type=int, default=3, help="files for the whole-process comparison")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "analysis_speed.json")
    args = parser.parse_args()

    started, load_before = time.perf_counter(), machine()
    args.work.mkdir(parents=True, exist_ok=True)
    files = encoded_kodak(args.kodak, args.work)[: args.count]
    if not files:
        parser.error(f"no kodim*.png in {args.kodak}")
    sizes = sorted({Image.open(args.kodak / f"{p.stem}.png").size for p in files})
    result = {"command": "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:]),
              "machine": load_before, "files": len(files), "image_sizes": [list(s) for s in sizes],
              "k": args.k, "repeats": args.repeats,
              "pixel_features": "CIE Lab (D65) per pixel, mean per 16x16 block (h, w, 3); thumbnail: "
                                "box-filtered 16x16, Lab, L2-normalised"}
    for config, one_thread in (("defaults", False), ("one_thread", True)):
        result[config] = in_process(files, args.k, args.repeats, one_thread)
        print(f"{config}: {json.dumps(result[config]['ratios'])} ({time.perf_counter() - started:.0f} s)", flush=True)
    result["whole_process"] = process_times(files[: args.process_files], args.k, args.repeats, args.work)
    result["whole_process_omp_one_thread"] = process_times(files[: args.process_files], args.k, args.repeats,
                                                           args.work, {**os.environ, "OMP_NUM_THREADS": "1"})
    result["loadavg_after"] = Path("/proc/loadavg").read_text().strip()
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = ["| configuration | codes_segment | pixels_segment | ratio | codes_describe | pixels_describe | ratio |",
             "|---|---|---|---|---|---|---|"]
    for config in ("defaults", "one_thread"):
        ms, r = result[config]["median_ms"], result[config]["ratios"]
        lines.append(f"| {config} | {ms['codes_segment']} ms | {ms['pixels_segment']} ms | "
                     f"{r['codes_segment/pixels_segment']['median_of_per_file_ratios']} | {ms['codes_describe']} ms | "
                     f"{ms['pixels_describe']} ms | {r['codes_describe/pixels_describe']['median_of_per_file_ratios']} |")
    for name in ("whole_process", "whole_process_omp_one_thread"):
        p = result[name]
        lines.append(f"\n{name}: sccodec segment {p['median_ms']['sccodec_segment']} ms; sccodec decode "
                     f"{p['median_ms']['sccodec_decode']} ms + pixel clustering {p['median_ms']['pixel_clustering']} "
                     f"ms; ratio {p['ratio_segment_over_decode_plus_clustering']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
