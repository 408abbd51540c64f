"""Decoder-only fine-tuning: the synthesis g_s learns from the symbols the encoder really writes.

    training photos ─encoder (runtime, rate-aware rounding)─▶ symbols per level, cached once
        ─windows of symbols (with a margin)─▶ dictionary ─▶ g_s ─▶ inner pixels ─MSE─▶ g_s only

Why: training synthesises from plainly rounded codes, but the encoder zeroes many ±1s (dead
zone, rate-aware rounding), so the synthesis meets codes at decode time it never saw in training.
Fine-tuning g_s alone on the real symbols keeps every file's symbols (and so every bit) as they
are and changes only the pixels a file decodes to. Only g_s moves: the analysis, LISTA, the
dictionary and the ladder are the encoder's, and the tables fit their symbols.

A window is ``window`` latent positions a side plus ``margin`` on each side; the loss covers the
inner ``window`` positions only, where the synthesis sees its neighbours as it does in a whole image.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch

from sccodec.api import Codec
from sccodec.train.cli import evenly_spaced
from sccodec.train.data import encoder_symbols, list_images, split_holdout, training_crop
from sccodec.train.export import export
from sccodec.weights import DEFAULT_MODEL, ModelFile, shipped_dir

#: Quality indices trained on by default (levels 3–9), equally often.
LEVELS = tuple(range(2, 9))


@dataclass
class CachedPhoto:
    pixels: np.ndarray  # (H, W, 3) uint8, a multiple of the stride
    symbols: np.ndarray  # (Q, K, h, w) int16: the encoder's symbols at every level


def cache_photo(codec: Codec, pixels: np.ndarray) -> CachedPhoto:
    """The encoder's own symbols for a crop, every level (one tile)."""
    return CachedPhoto(pixels, encoder_symbols(codec, pixels).astype(np.int16))


def psnr_per_level(model: torch.nn.Module, photos: list[CachedPhoto], levels: tuple[int, ...]) -> np.ndarray:
    """(levels,) mean PSNR over the photos of the whole crops decoded by ``model`` (8-bit, as a decoder writes)."""
    out = np.zeros(len(levels))
    with torch.no_grad():
        for p in photos:
            target = torch.from_numpy(np.array(p.pixels)).permute(2, 0, 1)[None].float()
            for i, q in enumerate(levels):
                x = model.decode_symbols(torch.from_numpy(p.symbols[q].astype(np.float32)), q)
                error = ((torch.round(x * 255) - target) ** 2).mean().item()
                out[i] += 10 * math.log10(255 ** 2 / error)
    return out / len(photos)


def tune(model_file: ModelFile, photos: list[CachedPhoto], minutes: float, lr: float = 1e-5, batch: int = 8,
         levels: tuple[int, ...] = LEVELS, window: int = 16, margin: int = 2, seed: int = 0,
         log: Callable[[str], None] = lambda _: None) -> tuple[torch.nn.Module, int]:
    """(the model of ``model_file`` with g_s fine-tuned for ``minutes`` on windows of the photos'
    symbols at quality indices ``levels`` (Adam, cosine decay of ``lr``; everything else frozen),
    the steps taken)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = model_file.build().train()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.g_s.parameters():
        p.requires_grad_(True)
    optimiser = torch.optim.Adam(model.g_s.parameters(), lr=lr)
    stride = model_file.geometry.stride
    # every window the same size: the smallest photo bounds it (the shipped crops hold 32×48 positions)
    smallest = min(min(p.symbols.shape[-2:]) for p in photos)
    margin = min(margin, (smallest - 1) // 2)
    window = min(window, smallest - 2 * margin)
    side = window + 2 * margin
    started, step, recent = time.time(), 0, []
    while (elapsed := time.time() - started) < 60 * minutes:
        for group in optimiser.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / (60 * minutes))))
        symbols, targets, chosen = [], [], []
        for _ in range(batch):
            p = photos[rng.integers(len(photos))]
            q = levels[rng.integers(len(levels))]
            h, w = p.symbols.shape[-2:]
            i, j = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            symbols.append(p.symbols[q, :, i : i + side, j : j + side])
            inner = p.pixels[(i + margin) * stride : (i + margin + window) * stride,
                             (j + margin) * stride : (j + margin + window) * stride]
            targets.append(inner.transpose(2, 0, 1))
            chosen.append(q)
        x = model.synthesize(torch.from_numpy(np.stack(symbols).astype(np.float32)), torch.tensor(chosen))
        x = x[..., margin * stride : (margin + window) * stride, margin * stride : (margin + window) * stride]
        # the mean log-MSE (mean PSNR) weighs every level alike; plain MSE would serve the low levels
        loss = ((x - torch.from_numpy(np.stack(targets)).float() / 255) ** 2).mean(dim=(1, 2, 3)).log().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        recent.append(loss.item())
        if step % 50 == 0:
            log(f"step {step}, {elapsed / 60:.1f} min, mean log-MSE {np.mean(recent):.4f}")
            recent = []
    return model.eval(), step


@click.command("tune-decoder")
@click.argument("model", default=DEFAULT_MODEL)
@click.option("--images", "image_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Training photos: the training split to tune on, the held-out slice (every 40th) to measure.")
@click.option("--name", required=True, help="Name of the tuned model (written beside the others, or to --out-dir).")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Folder to write to [default: the installed models].")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), required=True, help="Training time.")
@click.option("--photos", type=click.IntRange(min=1), default=100, show_default=True,
              help="Training photos (evenly spaced over the split; their top-left 512×768).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-5, show_default=True)
@click.option("--levels", type=click.Choice(["3-9", "all"]), default="3-9", show_default=True,
              help="Quality levels whose symbols train the synthesis.")
@click.option("--force", "-f", is_flag=True, help="Replace an existing model of that name (kept as NAME@HASH).")
def tune_decoder(model: str, image_dir: str, name: str, out_dir: str | None, minutes: float, photos: int,
                 lr: float, levels: str, force: bool) -> None:
    """Fine-tune a model's synthesis on the symbols its encoder writes, and export it as a new
    model; prints the held-out photos' PSNR per level before and after.

    \b
    Example:
      sccodec tune-decoder scvae-gdn --images photos/ --minutes 40 --name gdn-tuned
    """
    codec = Codec(model, device="cpu")
    folder = Path(out_dir) if out_dir else shipped_dir()
    if (folder / f"{name}.safetensors").exists() and not force:
        raise click.UsageError(f"{folder / name}.safetensors exists; use --force to replace it")
    train, held = split_holdout(list_images(image_dir))
    started = time.time()
    tuning = [cache_photo(codec, training_crop(p, codec.stride)) for p in evenly_spaced(train, photos)]
    measured = [cache_photo(codec, training_crop(p, codec.stride)) for p in held]
    click.echo(f"symbols of {len(tuning)} + {len(measured)} photos ({time.time() - started:.0f} s)", err=True)
    every = tuple(range(codec.coder.qualities))
    before = psnr_per_level(codec.model_file.build(), measured, every) if measured else None
    trained = tuple(q for q in LEVELS if q in every) if levels == "3-9" else every
    trained = trained or every
    tuned, steps = tune(codec.model_file, tuning, minutes, lr, levels=trained,
                        log=lambda line: click.echo(line, err=True))
    after = psnr_per_level(tuned, measured, every) if measured else None
    record = {"from": f"{codec.model_file.name} {codec.model_file.digest.hex()}", "minutes": minutes,
              "steps": steps, "lr": lr, "levels": [q + 1 for q in trained], "photos": len(tuning),
              "held_out_psnr_before": None if before is None else [round(float(x), 3) for x in before],
              "held_out_psnr_after": None if after is None else [round(float(x), 3) for x in after],
              "command": f"sccodec tune-decoder {model} --images {image_dir} --minutes {minutes} --name {name} "
                         f"--photos {photos} --lr {lr} --levels {levels}"}
    sidecar = json.loads(codec.model_file.path.with_suffix(".json").read_text())
    kept = {k: v for k, v in sidecar.items() if k in ("encoder", "training", "tables")}
    done = export(tuned, name, folder, kept | {"decoder_tune": record}, codec.model_file.tables)
    for q in every if measured else ():
        click.echo(f"level {q + 1:>2}: {before[q]:.3f} -> {after[q]:.3f} dB ({after[q] - before[q]:+.3f})")
    click.echo(f"wrote {done.path} (weights {done.digest.hex()}): re-fit its block classes with "
               f"sccodec fit-classes {name} before benchmarking it")
