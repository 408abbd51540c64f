"""Training patches: random downscale in [0.5, 1], random crop, random flips.

Images are decoded once and kept in memory as uint8 (the corpus is ~1 GB decoded); the
random downscale both multiplies the number of distinct patches and removes residual
camera noise (data/README.md).
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sccodec.bitstream import DEFAULT_MAX_PIXELS
from sccodec.errors import ImageInputError
from sccodec.image_io import read_image, to_planes

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def split_holdout(paths: list[Path], every: int = 40) -> tuple[list[Path], list[Path]]:
    """Deterministic (train, validation) split: every ``every``-th image is held out."""
    return ([p for i, p in enumerate(paths) if i % every != every - 1],
            [p for i, p in enumerate(paths) if i % every == every - 1])


def encoder_symbols(codec, pixels: np.ndarray) -> np.ndarray:  # noqa: ANN001 (a sccodec.Codec)
    """(Q, K, h, w) int32: the symbols the codec's encoder writes for ``pixels`` (H, W, 3, multiples
    of the stride) at every level, coded as one tile: what table, class and decoder fits learn from."""
    y = codec.network.analyze(to_planes(pixels))
    return np.stack([codec.coder.quantize(codec.network.scaled_symbols(y, q), q) for q in range(codec.coder.qualities)])


def photos_symbols(codec, paths: list[Path], log, dtype=np.int32) -> list[np.ndarray]:  # noqa: ANN001
    """``encoder_symbols`` of each photo's ``training_crop``, as ``dtype``; ``log`` gets a progress
    line every 20 photos (the class and pair fits)."""
    started, symbols = time.time(), []
    for i, path in enumerate(paths):
        limits = np.iinfo(dtype)  # contexts bucket magnitudes far below any integer type's range
        symbols.append(np.clip(encoder_symbols(codec, training_crop(path, codec.stride)), limits.min, limits.max)
                       .astype(dtype))
        if (i + 1) % 20 == 0 or i + 1 == len(paths):
            log(f"symbols of {i + 1}/{len(paths)} photos ({time.time() - started:.0f} s)")
    return symbols


def training_crop(path: Path, stride: int, size: tuple[int, int] = (512, 768)) -> np.ndarray:
    """(H, W, 3) uint8: a photo's top-left ``size`` cut to multiples of ``stride``: what the table
    and class fits and the decoder tuning code as one tile."""
    pixels = read_image(path, DEFAULT_MAX_PIXELS).pixels[: size[0], : size[1]]
    return np.ascontiguousarray(pixels[: len(pixels) - len(pixels) % stride, : pixels.shape[1] - pixels.shape[1] % stride])


def load_rgb(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as im:
            return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()
    except (OSError, Image.DecompressionBombError) as e:
        raise ImageInputError(f"cannot read training photo {path}: {e}") from None


class PatchSampler:
    def __init__(self, paths: list[Path], crop: int, seed: int = 0) -> None:
        self.images = [im for im in map(load_rgb, paths) if min(im.shape[1:]) >= crop]
        if not self.images:
            raise ImageInputError(f"no training photo in the folder is at least {crop} px on its short side")
        self.crop = crop
        self.rng = random.Random(seed)

    def patch(self) -> torch.Tensor:
        im = self.rng.choice(self.images)
        h, w = im.shape[1:]
        scale = self.rng.uniform(max(0.5, self.crop / min(h, w)), 1.0)
        size = min(round(self.crop / scale), h, w)
        top, left = self.rng.randint(0, h - size), self.rng.randint(0, w - size)
        x = im[:, top : top + size, left : left + size][None].float() / 255
        if size != self.crop:
            x = F.interpolate(x, size=(self.crop, self.crop), mode="bilinear", antialias=True,
                              align_corners=False)
        if self.rng.random() < 0.5:
            x = x.flip(-1)
        if self.rng.random() < 0.5:
            x = x.flip(-2)
        return x.clamp_(0, 1)

    def batch(self, size: int) -> torch.Tensor:
        return torch.cat([self.patch() for _ in range(size)])
