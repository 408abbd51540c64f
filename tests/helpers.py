"""Test helpers (plain functions) shared by the test modules; fixtures are in conftest.py."""
from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

import sccodec
import sccodec_weights
from sccodec import bitstream
from sccodec.atom_pairs import PairTables
from sccodec.block_classes import MAX_FACTOR, MAX_SCALE, ClassTables
from sccodec.context import SCHEMES
from sccodec.entropy import SymbolTables
from sccodec.frequencies import normalise
from sccodec.weights import DEFAULT_MODEL

ASTRONAUT = Path(sccodec.__file__).resolve().parent / "data" / "samples" / "astronaut.jpg"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WEIGHTS = Path(sccodec_weights.__file__).resolve().parent / f"{DEFAULT_MODEL}.safetensors"


def weights_hash() -> bytes:
    """docs/format.md: the first 8 bytes of the SHA-256 of the model's .safetensors file."""
    return hashlib.sha256(WEIGHTS.read_bytes()).digest()[:8]


# ---------------------------------------------------------------- images


def gradient_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour ramps (R rises left to right, G top to bottom) plus mild seeded noise."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height)[:, None] * np.ones((1, width))
    x = np.ones((height, 1)) * np.linspace(0.0, 1.0, width)[None, :]
    img = np.stack([60 + 140 * x, 60 + 140 * y, 180 - 50 * (x + y)], axis=-1)
    img += rng.normal(0.0, 4.0, img.shape)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def textured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A gradient with strong seeded texture: costs clearly more bits at higher quality."""
    rng = np.random.default_rng(seed)
    base = gradient_image(height, width, seed).astype(np.float64)
    return np.clip(base + rng.normal(0.0, 30.0, base.shape), 0, 255).round().astype(np.uint8)


def astronaut_crop(height: int = 64, width: int = 64) -> np.ndarray:
    """A natural-photo crop (face and suit) of the bundled sample, downscaled by 4."""
    with Image.open(ASTRONAUT) as im:
        small = np.asarray(im.convert("RGB"))[::4, ::4]
    return np.ascontiguousarray(small[:height, :width])


def encode_png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, "PNG")
    return buf.getvalue()


def exif_rotated_jpeg() -> bytes:
    """Stored 32 wide x 16 high, left half red, right half blue, EXIF orientation 6 (the viewer
    rotates it 90 degrees clockwise): upright it is 16 wide x 32 high, red on top."""
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16] = (255, 0, 0)
    stored[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


# ---------------------------------------------------------------- measures


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def luma_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the luma planes: insensitive to contrast/colour drift of a weak
    model, but low for a flipped, transposed, shifted or unrelated image."""
    weights = np.array([0.299, 0.587, 0.114])
    return float(np.corrcoef((a.astype(np.float64) @ weights).ravel(),
                             (b.astype(np.float64) @ weights).ravel())[0, 1])


def rebuild(data: bytes, **header_changes) -> bytes:
    """Re-pack a valid file with some header fields changed (valid CRCs, so only the change is wrong)."""
    container = bitstream.parse(data)
    for name, first in (("classes_hash", bitstream.CLASSES_FROM_VERSION), ("pairs_hash", bitstream.PAIRS_FROM_VERSION)):
        if "version" in header_changes and name not in header_changes:  # keep the header's layout valid
            has_hash = header_changes["version"] >= first
            header_changes[name] = (getattr(container.header, name) or bytes(8)) if has_hash else b""
    header = dataclasses.replace(container.header, **header_changes)
    return bitstream.pack(bitstream.Container(header, container.tiles, container.ancillary))


# ---------------------------------------------------------------- entropy tables


def make_tables(p_nonzero: np.ndarray, values: np.ndarray, groups: int, context: str, seed: int = 0,
                signs: np.ndarray | None = None) -> SymbolTables:
    """Tables of any scheme from flag and value arrays: a scheme with a sign table gets the
    value rows made symmetric and (unless given) random sign probabilities."""
    scheme = SCHEMES[context]
    if scheme.sign_contexts == 1:
        return SymbolTables(p_nonzero, values, groups, context)
    if signs is None:
        signs = np.random.default_rng(seed).uniform(0.0, 1.0, size=(*p_nonzero.shape[:2], scheme.sign_contexts))
    return SymbolTables(p_nonzero, values + values[..., ::-1], groups, context, signs)


def random_class_tables(tables: SymbolTables, classes: int = 3, block: int = 2, seed: int = 0,
                        model_digest: bytes = b"\0" * 8) -> ClassTables:
    """Valid block classes (format 6) for ``tables``, drawn at random over the allowed ranges."""
    rng = np.random.default_rng(seed)
    q, _, x = tables.p_nonzero.shape
    v, s = tables.values.shape[-2], tables.scheme.sign_contexts
    r = tables.value_range
    counts = rng.integers(0, 1000, size=(q, classes + 1, classes))
    return ClassTables(rng.integers(1, MAX_SCALE + 1, size=(q, classes, x)),
                       rng.integers(1, MAX_SCALE + 1, size=(q, classes, s)),
                       rng.integers(1, MAX_FACTOR + 1, size=(q, classes, v, r)), normalise(counts),
                       block, model_digest)


def random_pair_tables(qualities: int, atoms: int, batch: int, seed: int, scale: int = 200,
                       model_digest: bytes = b"\0" * 8, classes_digest: bytes = b"\1" * 8) -> PairTables:
    """Valid pair weights (format 7) for ``atoms`` atoms, drawn at random within ±``scale``."""
    rng = np.random.default_rng(seed)

    def weights() -> np.ndarray:
        return rng.integers(-scale, scale + 1, size=(qualities, atoms, atoms))

    return PairTables(weights(), weights(), weights(), rng.integers(-scale, scale + 1, size=(qualities, atoms)),
                      rng.integers(1, MAX_SCALE + 1, size=(qualities, 40)), lowest=-20, batch=batch,
                      model_digest=model_digest, classes_digest=classes_digest)


def check_model_without(shipped, folder: Path, suffix: str, version: int, stale: bytes) -> None:  # noqa: ANN001
    """A copy of the shipped model (a ``ModelFile``) in ``folder`` without its ``suffix`` file
    (``.classes.safetensors``, ``.pairs.safetensors``) writes format ``version``, cannot read the
    shipped model's files, and does not use a ``stale`` such file (one fitted for other files)."""
    import shutil

    import pytest

    from sccodec.api import Codec, parse_symbols
    from sccodec.errors import ModelMismatchError
    from sccodec.weights import read_model_file

    stem = shipped.path.name.removesuffix(".safetensors")
    for path in shipped.path.parent.glob(f"{stem}.*"):
        if not path.name.endswith(suffix):
            shutil.copy(path, folder / path.name)
    bare = read_model_file(folder / shipped.path.name)
    assert bare.coder.format_version == version
    pixels = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert bitstream.parse_header(Codec(bare).encode(pixels, 4))[0].version == version
    with pytest.raises(ModelMismatchError, match="installed model has none"):
        parse_symbols(Codec(shipped).encode(pixels, 4), bare)
    (folder / f"{stem}{suffix}").write_bytes(stale)
    assert read_model_file(folder / shipped.path.name).coder.format_version == version
