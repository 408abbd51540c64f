"""Shared fixtures for the codec-core tests: one CPU model per session and small test images.

Everything here is deliberately tiny (at most ~64x64 px, two photo crops of 96x128): the suite runs next
to a training job on a 2-core machine. Tests check behaviour (round trips, structure, errors),
never the bpp/PSNR of the current weights, which are an intermediate training snapshot.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sccodec
from helpers import SHARED_DATA, gradient_image


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread for the session: on a 2-core machine shared with a training job, two
    threads mostly wait for each other (about 50x slower on these tiny images). The
    thread-count test switches to 2 on purpose."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def codec() -> sccodec.Codec:
    """The one model of the session (CPU, so results do not depend on the machine's GPU)."""
    c = sccodec.Codec(device="cpu")
    c.network  # build once, up front
    return c


@pytest.fixture(scope="session")
def model_file(codec):
    return codec.model_file


@pytest.fixture(scope="session")
def small_rgb() -> np.ndarray:
    return gradient_image(16, 16)


@pytest.fixture(scope="session")
def small_scv(codec, small_rgb) -> bytes:
    """A one-tile RGB file, short enough to flip every bit of."""
    return codec.encode(small_rgb, quality=3)


@pytest.fixture(scope="session")
def tiled_rgb() -> np.ndarray:
    return gradient_image(40, 70)


@pytest.fixture(scope="session")
def tiled_scv(codec, tiled_rgb) -> bytes:
    """40x70 px with 32-px tiles: a 2x3 grid including 8-px and 6-px edge tiles."""
    return codec.encode(tiled_rgb, quality=4, tile=32)


@pytest.fixture(scope="session")
def grey_pixels() -> np.ndarray:
    return gradient_image(20, 24)[..., 0]


@pytest.fixture(scope="session")
def grey_scv(codec, grey_pixels) -> bytes:
    return codec.encode(Image.fromarray(grey_pixels, "L"), quality=2)


@pytest.fixture
def restore_threads():
    """Give tests a free hand with torch's thread count; restore it afterwards."""
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real photos (../shared/data); absent in CI, so tests needing them skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real photos not available ({SHARED_DATA} is absent)")
    return SHARED_DATA
