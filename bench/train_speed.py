"""Training steps per second under each CPU speed setting of `sccodec train`.

    python bench/train_speed.py [--data ../shared/data/train] [--model scvae-gdn] [--crop 256] [--batch 8]
                                [--steps 20] [--threads 2] [--emulated-bf16]

The whole training step (forward, rate and distortion, backward, Adam) of the shipped model
on crops of the training photos (uniform noise when ``--data`` is absent: its dense codes
make the entropy model's share larger), as ``sccodec train`` runs it: eager fp32, eager with bf16 autocast for the
convolutions, and both with the transforms torch.compile'd (compiled, with bf16 where the CPU
runs it natively, is the default). On a CPU without native bf16 (no AVX512-BF16 or AMX) oneDNN
emulates it many times slower and `sccodec train` falls back to fp32, so the bf16 settings are
skipped there unless ``--emulated-bf16`` asks for them. Each setting gets a fresh copy of the model and warm-up steps first; the
compiled ones compile there, which is not counted (``sccodec train`` compiles once per run,
before its first step). Median seconds per step over ``--steps``. Run it on idle cores.
Writes bench/results/train_speed.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import sccodec
from sccodec.train.data import PatchSampler, list_images, split_holdout
from sccodec.train.distributed import has_native_bf16
from sccodec.train.loss import rd_loss
from sccodec.weights import DEFAULT_MODEL, load_model_file

HERE = Path(__file__).resolve().parent
SETTINGS = {  # name: (bf16 autocast, compiled transforms)
    "eager fp32": (False, False),
    "eager bf16": (True, False),
    "compiled fp32": (False, True),
    "compiled bf16": (True, True),
}


def default_setting(native_bf16: bool) -> str:
    """The setting `sccodec train` picks on this machine (see has_native_bf16)."""
    return "compiled bf16" if native_bf16 else "compiled fp32"


def seconds_per_step(model_name: str, bf16: bool, compiled: bool, crop: int, batch: int, steps: int,
                     sampler: PatchSampler | None) -> float:
    torch.manual_seed(0)
    model = load_model_file(model_name).build().train().to(memory_format=torch.channels_last)
    model.bf16_transforms = bf16
    if compiled:
        model.compile_transforms()
    opt = torch.optim.Adam(model.parameters(), lr=1e-7)
    times = []
    for i in range(steps + 3):  # 3 warm-up steps (compiling, allocator, oneDNN primitive caches)
        x = sampler.batch(batch) if sampler else torch.rand(batch, 3, crop, crop)
        x = x.contiguous(memory_format=torch.channels_last)
        q = torch.randint(0, model.config.qualities, (batch,))
        t0 = time.perf_counter()
        loss = rd_loss(model, x, q, 0.0)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--emulated-bf16", action="store_true",
                    help="time the bf16 settings even where this CPU only emulates bf16")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "train_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as sccodec train sets it
    has_photos = args.data.is_dir() and bool(list_images(args.data))
    sampler = PatchSampler(split_holdout(list_images(args.data))[0], args.crop) if has_photos else None
    native_bf16 = has_native_bf16(torch.device("cpu"))
    default = default_setting(native_bf16)
    rows = []
    for name, (bf16, compiled) in SETTINGS.items():
        label = f"{name} (default)" if name == default else name
        if bf16 and not native_bf16 and not args.emulated_bf16:
            print(f"{label}: skipped (bf16 is emulated on this CPU; --emulated-bf16 times it)", flush=True)
            continue
        if sampler:
            sampler.rng.seed(0)  # the same crops for every setting
        s = seconds_per_step(args.model, bf16, compiled, args.crop, args.batch, args.steps, sampler)
        rows.append({"setting": label, "seconds_per_step": round(s, 4), "steps_per_second": round(1 / s, 3)})
        print(f"{label}: {s:.3f} s/step", flush=True)
    base = rows[0]["seconds_per_step"]
    source = f"crops of {args.data}" if has_photos else "uniform noise"
    print(f"\n{args.model}, batch {args.batch} of {args.crop}² {source}, {args.threads} threads\n")
    print("| setting | s/step | steps/s | vs eager fp32 |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['seconds_per_step']:.3f} | {r['steps_per_second']:.2f} | "
              f"{base / r['seconds_per_step']:.2f}x |")
    result = {"model": args.model, "input": source, "crop": args.crop, "batch": args.batch, "steps": args.steps,
              "threads": args.threads, "torch": torch.__version__, "sccodec": sccodec.__version__,
              "machine": platform.processor() or platform.machine(), "native_bf16": native_bf16,
              "settings": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
