"""Make a compact training pack that travels with the working tree to a lent GPU machine.

    python bench/make_training_pack.py [--data ../shared/data/train] [--out train_pack] [--max-mb 24]

The GPU machine gets a copy of the repository's working tree (64 MiB in all, the shipped weights
already about 37 MB of it) and not ``../shared``, so the training photos go there as a pack of
random crops (``train_pack/``, ignored by git, named in the device call's ``carry``):

    training split of --data (every photo but each 40th)  ─▶ crops, round-robin over the photos,
                                                              until the pack reaches --max-mb
    held-out photos (each 40th, sccodec/train/data.py)    ─▶ validation crops only (never trained on)

Each crop is drawn as ``sccodec/train/data.py``'s PatchSampler draws one: a random downscale in
[0.5, 1] (never below the crop), a random position, an antialiased resize to --crop px; flips are
left to the trainer. Since the pack's crops are exactly the training crop's size, the trainer's
sampler only picks and flips them (no resampling on the CPU between GPU steps).

The files are numbered so that ``sccodec train --data train_pack`` holds out exactly the
validation crops: ``split_holdout`` holds out every 40th file in sorted order, and every 40th
file of the pack (00039, 00079, ...) is a crop of a held-out photo, the other 39 of each 40
crops of training photos. ``train_pack/MANIFEST.json`` records each file's photo, box and scale,
the counts, the sizes and the licence note.

The pack also holds, in ``train_pack/wheels/``, the wheels of the project's dependencies that the
GPU machine's image lacks (constriction, at the version installed here, for its Python 3.12):
that machine reaches no package registry. ``--no-wheels`` skips the download.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from sccodec.train.data import list_images, split_holdout  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "train"
DEFAULT_OUT = REPO / "train_pack"
HOLDOUT_EVERY = 40  # split_holdout's default: the pack's numbering relies on it
#: The working tree that travels to the device machine (tracked + untracked-not-ignored + carried).
TRAVEL_LIMIT = 64 * 2**20
#: Dependencies (pyproject.toml) missing from the GPU machine's image, per the device notes: name -> pip platforms.
DEVICE_WHEELS = ("constriction", "threadpoolctl")
DEVICE_PYTHON = "3.12"
DEVICE_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                    "manylinux2014_x86_64", "manylinux1_x86_64")
LICENCE = ("Crops of the project's training photos (../shared/data/train: Urban100, Sun-Hays 80, BSDS300, "
           "Unsplash, Debian wallpapers, scikit-image/scikit-learn samples; sources and terms per photo in "
           "../shared/data/train/MANIFEST.json, ../shared/data/README.md and ../shared/data/licenses/). "
           "For training sccodec only: not to be committed, published or redistributed (train_pack/ is "
           "ignored by git). Kodak is never in it.")


def random_box(rng: random.Random, width: int, height: int, crop: int) -> tuple[tuple[int, int, int, int], float]:
    """A square box and its scale, drawn as PatchSampler.patch draws them (no flips)."""
    scale = rng.uniform(max(0.5, crop / min(height, width)), 1.0)
    size = min(round(crop / scale), height, width)
    top, left = rng.randint(0, height - size), rng.randint(0, width - size)
    return (left, top, left + size, top + size), crop / size


def centre_box(width: int, height: int, crop: int) -> tuple[tuple[int, int, int, int], float]:
    """The 1:1 centre crop that the trainer's validation takes of a held-out photo."""
    left, top = (width - crop) // 2, (height - crop) // 2
    return (left, top, left + crop, top + crop), 1.0


def encode_crop(im: Image.Image, box: tuple[int, int, int, int], crop: int, fmt: str, quality: int) -> bytes:
    """The box resized to crop x crop (PIL's bilinear filter widens on downscaling: antialiased)."""
    patch = im.resize((crop, crop), Image.Resampling.BILINEAR, box=box)
    buf = io.BytesIO()
    if fmt == "png":
        patch.save(buf, "PNG", optimize=True)
    else:  # 4:4:4 like the training photos themselves (JPEG quality 95, 4:4:4)
        patch.save(buf, "JPEG", quality=quality, subsampling=0, optimize=True)
    return buf.getvalue()


def photo_crops(path: Path, n: int, crop: int, fmt: str, quality: int, seed: int,
                centre_first: bool) -> list[dict]:
    """Up to ``n`` crops of one photo (none if it is smaller than the crop), seeded by its name."""
    with Image.open(path) as src:
        im = src.convert("RGB")
    width, height = im.size
    if min(width, height) < crop:
        return []
    rng = random.Random(f"{seed}:{path.name}")
    out = []
    for i in range(n):
        box, scale = centre_box(width, height, crop) if centre_first and i == 0 else random_box(rng, width, height, crop)
        out.append({"photo": path.name, "box": list(box), "scale": round(scale, 4),
                    "data": encode_crop(im, box, crop, fmt, quality)})
    return out


def round_robin(per_photo: list[list[dict]]) -> list[dict]:
    """Every photo's first crop, then every photo's second, ...: a budget cut keeps photos even."""
    rounds = max((len(c) for c in per_photo), default=0)
    return [crops[r] for r in range(rounds) for crops in per_photo if r < len(crops)]


def interleave(train: list[dict], val: list[dict]) -> list[tuple[dict, str]]:
    """Files in pack order: 39 training crops then one validation crop, per group of 40.

    Only full groups get their validation crop (split_holdout holds out index 39, 79, ...), so the
    number of validation crops used is len(train) // 39; the training crops are all used.
    """
    order, v = [], 0
    for i, item in enumerate(train):
        order.append((item, "train"))
        if (i + 1) % (HOLDOUT_EVERY - 1) == 0 and v < len(val):
            order.append((val[v], "validation"))
            v += 1
    return order


def pick_within(train: list[dict], val: list[dict], budget: int) -> tuple[list[dict], list[dict]]:
    """The longest prefix of ``train`` (round-robin order) whose pack, validation crops included, fits."""
    val_sizes = [len(v["data"]) for v in val]
    # each full group of 39 training crops needs its validation crop at index 39, 79, ... (see interleave)
    most = len(val) * (HOLDOUT_EVERY - 1) + HOLDOUT_EVERY - 2
    total, chosen = 0, 0
    for i, item in enumerate(train[:most]):
        n_val = min((i + 1) // (HOLDOUT_EVERY - 1), len(val))
        need = total + len(item["data"]) + sum(val_sizes[:n_val])
        if need > budget:
            break
        total += len(item["data"])
        chosen = i + 1
    return train[:chosen], val[: min(chosen // (HOLDOUT_EVERY - 1), len(val))]


def download_wheels(folder: Path) -> list[dict]:
    """The device image's missing dependencies as wheels for its Python (pip download, no deps)."""
    folder.mkdir(parents=True, exist_ok=True)
    got = []
    for name in DEVICE_WHEELS:
        version = metadata.version(name)  # the version tested here (constriction's output must be byte-identical)
        for old in folder.glob(f"{name}-*.whl"):
            old.unlink()
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
               DEVICE_PYTHON, "--implementation", "cp", *[a for p in DEVICE_PLATFORMS for a in ("--platform", p)],
               "-d", str(folder), f"{name}=={version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(folder.glob(f"{name}-*.whl"))
        if done.returncode or not wheels:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
            print(f"warning: could not download {name}=={version} for Python {DEVICE_PYTHON}: {tail[0]}; "
                  f"the GPU burst then needs it installed there", file=sys.stderr)
            continue
        got += [{"file": f"wheels/{w.name}", "bytes": w.stat().st_size} for w in wheels]
    return got


def travelling_bytes() -> int | None:
    """Bytes of the working tree that travels without carry (tracked + untracked-not-ignored), if git answers."""
    try:
        names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                               capture_output=True, check=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return None
    total = 0
    for name in {n for n in names if n}:
        path = REPO / name.decode("utf-8", "surrogateescape")
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training photos [%(default)s]")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the pack's folder, replaced [%(default)s]")
    ap.add_argument("--crop", type=int, default=256, help="crop side in px (the training crop) [%(default)s]")
    ap.add_argument("--max-mb", type=float, default=22.0,
                    help="the pack's image bytes at most, in MB (10^6) [%(default)s]: the repo (~38 MB) + pack must "
                         "stay under 64 MiB")
    ap.add_argument("--per-photo", type=int, default=8, help="crops drawn per training photo, at most [%(default)s]")
    ap.add_argument("--val-per-photo", type=int, default=6,
                    help="crops drawn per held-out photo (the first: its centre, as the trainer validates) [%(default)s]")
    ap.add_argument("--format", choices=["jpg", "png"], default="jpg", help="[%(default)s]")
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality (4:4:4) [%(default)s]")
    ap.add_argument("--seed", type=int, default=0, help="[%(default)s]")
    ap.add_argument("--no-wheels", action="store_true", help="do not download the device's missing wheels")
    args = ap.parse_args(argv)
    if args.crop % 16:
        ap.error(f"--crop {args.crop} is not a multiple of 16 (the transforms' stride)")
    if not args.data.is_dir():
        ap.error(f"{args.data} is not a folder of training photos")

    train_paths, held_out = split_holdout(list_images(args.data), HOLDOUT_EVERY)
    if not train_paths:
        ap.error(f"no photos in {args.data}")
    print(f"{len(train_paths)} training photos, {len(held_out)} held out, in {args.data}", flush=True)
    train = round_robin([photo_crops(p, args.per_photo, args.crop, args.format, args.quality, args.seed, False)
                         for p in train_paths])
    val = round_robin([photo_crops(p, args.val_per_photo, args.crop, args.format, args.quality, args.seed, True)
                       for p in held_out])
    train, val = pick_within(train, val, int(args.max_mb * 1e6))
    if not train:
        ap.error(f"not one crop fits in --max-mb {args.max_mb}")

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    files = []
    for index, (item, split) in enumerate(interleave(train, val)):
        name = f"{index:05d}.{args.format}"
        (args.out / name).write_bytes(item["data"])
        files.append({"file": name, "split": split, "photo": item["photo"], "box": item["box"], "scale": item["scale"],
                      "sha256": hashlib.sha256(item["data"]).hexdigest()[:16]})
    # the numbering must agree with the trainer's own split of the pack
    _, pack_val = split_holdout(list_images(args.out), HOLDOUT_EVERY)
    assert [p.name for p in pack_val] == [f["file"] for f in files if f["split"] == "validation"]
    wheels = [] if args.no_wheels else download_wheels(args.out / "wheels")

    image_bytes = sum(len(t["data"]) for t in train) + sum(len(v["data"]) for v in val)
    manifest = {
        "made_by": "bench/make_training_pack.py",
        "command": " ".join(["python", "bench/make_training_pack.py", *(argv if argv is not None else sys.argv[1:])]),
        "source": str(args.data), "licence": LICENCE,
        "crop": args.crop, "format": args.format, "quality": args.quality if args.format == "jpg" else None,
        "seed": args.seed, "sampling": "as sccodec/train/data.py PatchSampler: random downscale 0.5-1 (never below "
                                      "the crop), random position, bilinear antialiased resize; no flips (the trainer "
                                      "flips). Validation crops: each held-out photo's 1:1 centre crop first.",
        "split": "every 40th photo of --data held out (split_holdout); in the pack every 40th file (sorted) is a "
                 "held-out photo's crop, so `sccodec train --data train_pack` validates on exactly those",
        "photos": {"train": len({t["photo"] for t in train}), "train_in_source": len(train_paths),
                   "held_out": len({v["photo"] for v in val}), "held_out_in_source": len(held_out)},
        "crops": {"train": len(train), "validation": len(val)},
        "bytes": {"images": image_bytes, "wheels": sum(w["bytes"] for w in wheels)},
        "wheels": wheels, "files": files,
    }
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    pack_bytes = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out}: {len(train)} training crops of {manifest['photos']['train']} photos, {len(val)} "
          f"validation crops of {manifest['photos']['held_out']} held-out photos, {args.crop}x{args.crop} "
          f"{args.format}; wheels: {', '.join(w['file'] for w in wheels) or 'none'}")
    print(f"pack size: {pack_bytes / 1e6:.2f} MB ({pack_bytes / 2**20:.2f} MiB)")
    tree = travelling_bytes()
    if tree is not None:
        total = tree + pack_bytes
        print(f"working tree that travels with carry=[{args.out.name}]: {total / 2**20:.1f} MiB of "
              f"{TRAVEL_LIMIT // 2**20} MiB (tree {tree / 2**20:.1f} MiB + pack)")
        if total > TRAVEL_LIMIT:
            print("warning: over the device machine's limit: lower --max-mb", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
