"""Write the conformance files that tests/test_conformance.py checks: run from anywhere as

    python tests/data/conformance/make.py             # every case
    python tests/data/conformance/make.py NAME ...    # only these cases; the others stay as committed

Each case is a small .scv file (crops of the bundled sample coffee.jpg), the pixels it decodes
to (a lossless PNG beside it) and a line of manifest.json: the file's SHA-256, the model and
weights hash from its header, and the SHA-256 of its entropy-decoded integer symbols.

Regenerate only on purpose: when the format, the entropy coder or a shipped model changes
so that the committed files can no longer be decoded (say why in the commit). A retrained
model that keeps its old weights as NAME@HASH still decodes the old files; then keep them.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import sccodec
from sccodec import bitstream
from sccodec.api import parse_symbols
from sccodec.weights import DEFAULT_MODEL

HERE = Path(__file__).resolve().parent
COFFEE = Path(sccodec.__file__).resolve().parent / "data" / "samples" / "coffee.jpg"
MANIFEST = HERE / "manifest.json"

# name: (model, quality (None: the default), tile (None: the default), grey, crop box on the
# coffee photo downscaled by 4 to 150x100 px: left, top, right, bottom, .scv format version (None:
# the newest for the model's tables)). All small: the test decodes every file, and the suite runs
# on 2 cores. Each file keeps the format it was written in, so that every format stays covered.
CASES: dict[str, tuple[str | None, int | None, int | None, bool, tuple[int, int, int, int], int | None]] = {
    "default_quality": (None, None, None, False, (43, 18, 107, 82), 4),  # 64x64
    "low_quality": (None, 1, None, False, (0, 0, 64, 48), 4),  # 64x48
    "high_quality": (None, max(sccodec.QUALITIES), None, False, (60, 30, 116, 70), 4),  # 56x40: padded to 16s
    "grey": (None, 4, None, True, (30, 10, 102, 58), 4),  # 72x48, mode L
    "tiled": (None, 5, 64, False, (0, 10, 136, 90), 4),  # 136x80 in 64-px tiles: a 2x3 grid, 8- and 16-px edge tiles
    "base_model": ("scvae-base", 3, None, False, (70, 20, 134, 84), None),  # 64x64, the other shipped model
    # format 5 (integer frequencies): 2x2 tiles of 64 px with 32- and 16-px edge tiles, at the top level
    "integer_tables": (None, max(sccodec.QUALITIES), 64, False, (20, 10, 116, 90), 5),  # 96x80
    # format 6 (block classes): 2x2 tiles of 48 px with 40- and 24-px edge tiles (odd latent sizes:
    # partial class blocks), at a middle level
    "block_classes": (None, 5, 48, False, (30, 20, 118, 92), 6),  # 88x72
    # format 7 (pair weights): 2x2 tiles of 48 px with 40- and 16-px edge tiles, at the default level
    "pair_weights": (None, None, 48, False, (40, 10, 128, 74), 7),  # 88x64
}


def symbols_sha256(data: bytes) -> str:
    """SHA-256 of every tile's integer symbols, in file order, as int32 little-endian."""
    digest = hashlib.sha256()
    for tile in parse_symbols(data).tiles:
        as_int32 = np.ascontiguousarray(tile, dtype="<i4")
        if not np.array_equal(as_int32, tile):
            raise ValueError("symbols outside the int32 range")
        digest.update(as_int32.tobytes())
    return digest.hexdigest()


def source_image(grey: bool, box: tuple[int, int, int, int]) -> Image.Image:
    with Image.open(COFFEE) as im:
        small = im.convert("RGB").reduce(4)
    crop = small.crop(box)
    return crop.convert("L") if grey else crop


def main(names: list[str]) -> None:
    """Write the named cases (all when none are named); keep the other committed files."""
    unknown = set(names) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(sorted(unknown))}; the cases are {', '.join(CASES)}")
    names = names or list(CASES)
    torch.set_num_threads(1)
    codecs: dict[tuple[str, int | None], sccodec.Codec] = {}
    kept = {} if not MANIFEST.exists() else {e["file"]: e for e in json.loads(MANIFEST.read_text())["files"]}
    for name in names:
        for old in (HERE / f"{name}.scv", HERE / f"{name}.png"):
            old.unlink(missing_ok=True)
    entries = []
    for name, (model, quality, tile, grey, box, version) in CASES.items():
        if name not in names:
            if f"{name}.scv" in kept:
                entries.append(kept[f"{name}.scv"])
            continue
        model = model or DEFAULT_MODEL
        if (model, version) not in codecs:
            base = sccodec.Codec(model, device="cpu")
            coder = base.coder if version in (None, base.coder.format_version) else base.coder.reading(version)
            codecs[model, version] = sccodec.Codec(base.model_file, device="cpu", coder=coder)
        codec = codecs[model, version]
        options = {} if tile is None else {"tile": tile}
        data = codec.encode(source_image(grey, box), quality, **options)
        header, _ = bitstream.parse_header(data)
        decoded = codec.decode(data)
        (HERE / f"{name}.scv").write_bytes(data)
        decoded.save(HERE / f"{name}.png", format="PNG", optimize=True)
        entries.append({
            "file": f"{name}.scv",
            "sha256": hashlib.sha256(data).hexdigest(),
            "model": header.model,
            "weights_hash": header.weights_hash.hex(),
            "format_version": header.version,
            "quality": header.quality,
            "width": header.width,
            "height": header.height,
            "mode": header.mode,
            "tile": header.tile,
            "tiles": header.num_tiles,
            "symbols_sha256": symbols_sha256(data),
            "pixels": f"{name}.png",
        })
        print(f"{name}.scv: {len(data)} bytes, {header.model} q{header.quality}, {header.width}x{header.height} "
              f"{header.mode}, {header.num_tiles} tile(s)")
    written_by = f"sccodec {sccodec.__version__} (tests/data/conformance/make.py)"
    if len(names) < len(CASES) and MANIFEST.exists():  # the kept files keep their note; the new ones get theirs
        for entry in entries:
            if entry["file"][: -len(".scv")] in names:
                entry["written_by"] = written_by
        written_by = json.loads(MANIFEST.read_text())["written_by"]
    manifest = {"written_by": written_by, "files": entries}
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
