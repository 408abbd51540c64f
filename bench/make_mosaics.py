"""Mosaics with known regions, for scoring segmentation (bench/segmentation_quality.py).

    python bench/make_mosaics.py --out /tmp/mosaics [--count 40 --width 768 --height 512 --seed 0]

Each mosaic is a Voronoi partition of the canvas into 3-6 regions whose boundaries are warped by
a smooth random displacement field (so they are curved, not straight), each region filled with
its own texture: a random square patch (128-256 px) of one photo, mirror-tiled to cover the
canvas (mirroring leaves no seams). The regions of one mosaic take patches of distinct photos.

The photos are the training folder's held-out slice only (``sccodec.train.data.split_holdout``:
the photos the shipped models never trained on), so no mosaic shows the codec a patch it learnt.

Writes ``NNN.png`` (the mosaic), ``NNN.labels.png`` (8-bit region index per pixel) and
``manifest.json`` (per mosaic: regions, source photos, patch boxes) into ``--out``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from sccodec.train.data import list_images, split_holdout

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO.parent / "shared" / "data" / "train"
MIN_REGION_SHARE = 0.04  # every region covers at least this share of the canvas


@dataclass(frozen=True)
class MosaicRecord:
    """What one mosaic is made of (for the manifest)."""

    name: str
    regions: int
    photos: list[str]
    patches: list[tuple[int, int, int, float]]  # (top, left, side, photo scale) per region


def held_out_photos(train: Path) -> list[Path]:
    """The training folder's held-out photos, as the trainer splits them."""
    return split_holdout(list_images(train))[1]


def warped_voronoi(rng: np.random.Generator, height: int, width: int, regions: int) -> np.ndarray:
    """(height, width) uint8 labels 0..regions-1: Voronoi cells of random seeds, measured on
    coordinates displaced by a smooth field (coarse bends) plus a finer one (wiggly edges)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    side = min(height, width)
    for cells, amplitude in ((4, 0.10 * side), (12, 0.02 * side)):
        for coords in (yy, xx):
            coarse = rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32)
            coords += amplitude * ndimage.zoom(coarse, (height / cells, width / cells), order=3)[:height, :width]
    while True:
        seeds = rng.uniform((0, 0), (height, width), (regions, 2)).astype(np.float32)
        distance = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
        labels = np.argmin(distance, axis=0).astype(np.uint8)
        if np.bincount(labels.ravel(), minlength=regions).min() >= MIN_REGION_SHARE * height * width:
            return labels


def mirrored_texture(rng: np.random.Generator, photo: Image.Image, height: int, width: int
                     ) -> tuple[np.ndarray, tuple[int, int, int, float]]:
    """A random square patch of ``photo`` (after a random rescale to a short side of 320-512 px),
    mirror-tiled to (height, width, 3); and the patch's (top, left, side, scale)."""
    scale = rng.uniform(320, 512) / min(photo.size)
    scaled = np.asarray(photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS))
    side = int(rng.integers(128, 257))
    top = int(rng.integers(0, scaled.shape[0] - side + 1))
    left = int(rng.integers(0, scaled.shape[1] - side + 1))
    patch = scaled[top : top + side, left : left + side]
    row = np.concatenate([patch, patch[:, ::-1]], axis=1)
    block = np.concatenate([row, row[::-1]], axis=0)  # period 2*side, no seams
    tiled = np.tile(block, (-(-height // (2 * side)) + 1, -(-width // (2 * side)) + 1, 1))
    dy, dx = int(rng.integers(0, 2 * side)), int(rng.integers(0, 2 * side))
    return np.ascontiguousarray(tiled[dy : dy + height, dx : dx + width]), (top, left, side, round(float(scale), 4))


def make_mosaic(rng: np.random.Generator, photos: list[Image.Image], height: int, width: int, regions: int
                ) -> tuple[np.ndarray, np.ndarray, list[int], list[tuple[int, int, int, float]]]:
    """(mosaic (H,W,3) uint8, labels (H,W) uint8, photo index per region, patch per region)."""
    labels = warped_voronoi(rng, height, width, regions)
    chosen = [int(i) for i in rng.choice(len(photos), regions, replace=False)]
    mosaic = np.empty((height, width, 3), np.uint8)
    patches = []
    for region, index in enumerate(chosen):
        texture, patch = mirrored_texture(rng, photos[index], height, width)
        mosaic[labels == region] = texture[labels == region]
        patches.append(patch)
    return mosaic, labels, chosen, patches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the mosaics (not committed)")
    parser.add_argument("--train", type=Path, default=TRAIN, help="training folder (its held-out slice is used)")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--min-regions", type=int, default=3)
    parser.add_argument("--max-regions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    paths = held_out_photos(args.train)
    if len(paths) < args.max_regions:
        parser.error(f"{args.train} has {len(paths)} held-out photos; --max-regions needs at least that many")
    photos = [Image.open(p).convert("RGB") for p in paths]
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(args.count):
        regions = int(rng.integers(args.min_regions, args.max_regions + 1))
        mosaic, labels, chosen, patches = make_mosaic(rng, photos, args.height, args.width, regions)
        name = f"{i:03d}"
        Image.fromarray(mosaic).save(args.out / f"{name}.png")
        Image.fromarray(labels).save(args.out / f"{name}.labels.png")
        records.append(MosaicRecord(name, regions, [paths[j].name for j in chosen], patches))
    manifest = {"seed": args.seed, "size": [args.width, args.height], "held_out_photos": [p.name for p in paths],
                "mosaics": [asdict(r) for r in records]}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{args.count} mosaics ({args.width}x{args.height}) from {len(paths)} held-out photos in {args.out}")


if __name__ == "__main__":
    main()
