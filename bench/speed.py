"""Speed of sccodec beside the peer codecs, in one run, idle and with one busy process per core.

    python bench/speed.py [--kodak ../shared/data/kodak] [--runs 5] [--model NAME] [--peers jpeg,webp,jpeg2000,avif]

What it times (median of ``--runs``; the machine's cores are all used, as a user's would be):

- whole processes, as a user runs them: ``sccodec --help``, ``sccodec encode kodim01.png``,
  ``sccodec decode kodim01.scv`` (start-up, imports and model loading included);
- the model loaded, 768x512 (kodim01) at the default quality: encode and decode through the CPU
  runtime (ONNX Runtime, the default), through the torch reference when torch is installed, and
  the transforms alone in OpenVINO when it is installed (same graphs), for the choice of runtime;
- 1920x1080 and 3840x2160 versions (resized kodim01) through the runtime;
- each peer codec (``sccodec.bench.peers``) at its setting whose file size is nearest sccodec's.

Everything is measured twice: idle, then under load (one process spinning per core). Writes
bench/results/speed.json and prints a Markdown table. Compare figures within one run only.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

import sccodec
from sccodec.api import Codec
from sccodec.bench.peers import get_codec
from sccodec.weights import DEFAULT_MODEL

HERE = Path(__file__).resolve().parent
LARGE = ((1920, 1080), (3840, 2160))


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm: first-call costs belong to the whole-process figures
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 1)


def _spin() -> None:
    while True:
        pass


@contextmanager
def busy(cores: int):
    """One process spinning per core while the block runs."""
    procs = [mp.Process(target=_spin, daemon=True) for _ in range(cores)]
    for p in procs:
        p.start()
    try:
        time.sleep(0.5)
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()


def base_image(kodak: Path) -> tuple[Image.Image, str]:
    path = kodak / "kodim01.png"
    if path.is_file():
        return Image.open(path).convert("RGB"), str(path)
    sample = Path(sccodec.__file__).parent / "data" / "samples" / "astronaut.jpg"
    return Image.open(sample).convert("RGB").resize((768, 512), Image.LANCZOS), f"{sample} resized"


def cpu_model() -> str:
    """The CPU's name and vector extensions (speed differs by machine: record which one)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split())
        return f"{name} ({'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'})"
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def process_times(img: Image.Image, runs: int, model: str) -> dict[str, float]:
    """Whole ``sccodec`` processes (median ms)."""
    with tempfile.TemporaryDirectory() as d:
        src, scv, out = Path(d) / "kodim01.png", Path(d) / "kodim01.scv", Path(d) / "out.png"
        img.save(src)
        cli = [sys.executable, "-m", "sccodec.cli"]
        commands = {"help": cli + ["--help"],
                    "encode": cli + ["encode", str(src), "-o", str(scv), "--model", model, "--force"],
                    "decode": cli + ["decode", str(scv), "-o", str(out), "--force"]}
        subprocess.run(commands["encode"], check=True, capture_output=True)
        return {name: median_ms(lambda c=c: subprocess.run(c, check=True, capture_output=True), runs)
                for name, c in commands.items()}


def backends(model: str) -> dict[str, Codec]:
    """The runtime (default) and, where installed, the torch reference, both on the CPU."""
    codecs = {"runtime": Codec(model, device="cpu")}
    try:
        from sccodec.model.torch_model import TorchModel
    except ImportError:
        return codecs
    mf = codecs["runtime"].model_file
    codecs["torch"] = Codec(mf, "cpu", network=TorchModel(mf.build()))
    return codecs


def openvino_transforms(codec: Codec, pixels: np.ndarray, data: bytes, runs: int) -> dict[str, float] | None:
    """The analysis and synthesis graphs alone in OpenVINO and in ONNX Runtime (median ms), if installed."""
    try:
        import openvino
    except ImportError:
        return None
    from sccodec.image_io import to_planes
    from sccodec.model.runtime import graph_paths

    paths = graph_paths(codec.model_file.path)
    core = openvino.Core()
    config = {"INFERENCE_NUM_THREADS": os.cpu_count() or 1, "INFERENCE_PRECISION_HINT": "f32"}
    analysis = core.compile_model(str(paths["analysis"]), "CPU", config)
    synthesis = core.compile_model(str(paths["synthesis"]), "CPU", config)
    x = to_planes(pixels)
    parsed = codec.parse_symbols(data)
    symbols = parsed.tiles[0].astype(np.float32)
    q = np.array([parsed.header.quality - 1], np.int64)
    net = codec.network
    return {"openvino_analysis_ms": median_ms(lambda: analysis([x]), runs),
            "openvino_synthesis_ms": median_ms(lambda: synthesis([symbols, q]), runs),
            "onnxruntime_analysis_ms": median_ms(lambda: net.analyze(x), runs),
            "onnxruntime_synthesis_ms": median_ms(lambda: net.decode_symbols(symbols, int(q[0])), runs)}


def peer_times(img: Image.Image, names: list[str], target_bytes: int, runs: int) -> dict[str, dict]:
    """Each peer at its setting whose file is nearest ``target_bytes`` (median ms)."""
    out = {}
    for name in names:
        adapter = get_codec(name)
        if adapter.unavailable():
            out[name] = {"skipped": adapter.unavailable()}
            continue
        quality = min(adapter.sweep(), key=lambda q: abs(len(adapter.encode(img, q)) - target_bytes))
        data = adapter.encode(img, quality)
        out[name] = {"quality": str(quality), "bpp": round(8 * len(data) / (img.width * img.height), 3),
                     "encode_ms": median_ms(lambda: adapter.encode(img, quality), runs),
                     "decode_ms": median_ms(lambda: adapter.decode(data), runs)}
    return out


def measure(img: Image.Image, codecs: dict[str, Codec], args: argparse.Namespace) -> dict:
    pixels = np.asarray(img)
    runtime = codecs["runtime"]
    data = runtime.encode(pixels)
    record = {"process_ms": process_times(img, args.runs, args.model), "bpp": round(8 * len(data) / (img.width * img.height), 4)}
    for name, codec in codecs.items():
        record[f"{name}_encode_ms"] = median_ms(lambda c=codec: c.encode(pixels), args.runs)
        record[f"{name}_decode_ms"] = median_ms(lambda c=codec: c.decode_array(data), args.runs)
    for w, h in LARGE:
        large = np.asarray(img.resize((w, h), Image.LANCZOS))
        large_data = runtime.encode(large)
        record[f"runtime_{w}x{h}_encode_ms"] = median_ms(lambda: runtime.encode(large), max(1, args.runs // 2))
        record[f"runtime_{w}x{h}_decode_ms"] = median_ms(lambda: runtime.decode_array(large_data), max(1, args.runs // 2))
    record["transforms"] = openvino_transforms(runtime, pixels, data, args.runs)
    record["peers"] = peer_times(img, args.peers.split(","), len(data), args.runs)
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, default=HERE.parent.parent / "shared" / "data" / "kodak")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="a shipped model's name")
    ap.add_argument("--peers", default="jpeg,webp,jpeg2000,avif")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "speed.json")
    args = ap.parse_args()
    img, source = base_image(args.kodak)
    codecs = backends(args.model)
    for codec in codecs.values():
        codec.network  # load before timing
    cores = os.cpu_count() or 1
    idle = measure(img, codecs, args)
    with busy(cores):
        loaded = measure(img, codecs, args)
    record = {"model": args.model, "source": source, "cpu": cpu_model(), "cores": cores, "runs": args.runs,
              "quality": codecs["runtime"].default_quality, "sccodec": sccodec.__version__,
              "idle": idle, "under_load": loaded}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print_table(record)


def print_table(record: dict) -> None:
    idle, loaded = record["idle"], record["under_load"]
    print(f"{record['model']} on {record['cpu']}, {record['cores']} cores, quality {record['quality']}, "
          f"median of {record['runs']} runs")
    print("| figure (ms) | idle | one busy process per core | ratio |")
    print("|---|---|---|---|")
    rows = [(f"whole process: sccodec {k}", v, loaded["process_ms"][k]) for k, v in idle["process_ms"].items()]
    rows += [(k[:-3].replace("_", " "), v, loaded[k]) for k, v in idle.items() if k.endswith("_ms") and k != "process_ms"]
    rows += [(k[:-3].replace("_", " "), v, (loaded["transforms"] or {})[k]) for k, v in (idle["transforms"] or {}).items()]
    rows += [(f"{name} {op}", v[f"{op}_ms"], loaded["peers"][name][f"{op}_ms"]) for name, v in idle["peers"].items()
             if "skipped" not in v for op in ("encode", "decode")]
    for label, a, b in rows:
        print(f"| {label} | {a:.1f} | {b:.1f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
