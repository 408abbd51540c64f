"""What the codec needs of an image model: the seam a new transform or runtime plugs into.

    encode: pixels (1,3,H,W) ─analyze─▶ latent ─scaled_symbols(q)─▶ real-valued symbols s (K,h,w)
    decode: integer symbols (K,h,w) ─decode_symbols(q)─▶ pixels (1,3,H,W) in [0, 1]

Arrays are NumPy float32 (symbols int32) whatever runs the network: ONNX Runtime on the CPU
(``sccodec.model.runtime``), torch on a GPU or as the reference (``sccodec.model.torch_model``),
or anything else. ``sccodec.api.Codec`` composes one ``ImageModel`` with one symbol coder
(``sccodec.coder``); it rounds, entropy-codes and tiles, so a model only maps pixels to
real-valued symbols and integer symbols back to pixels. Its ``geometry`` says how the symbol
grid sits on the image.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from sccodec.model.config import Geometry


@runtime_checkable
class ImageModel(Protocol):
    """A network that codes images through a grid of symbols, ``geometry.stride`` pixels apart."""

    @property
    def geometry(self) -> Geometry:
        """Stride and tile margins."""

    def analyze(self, x: np.ndarray) -> np.ndarray:
        """Image (1,3,H,W) in [0, 1], H and W multiples of the stride -> latent, shared by every level."""

    def scaled_symbols(self, y: np.ndarray, quality_index: int) -> np.ndarray:
        """Latent -> real-valued symbols (K,H/stride,W/stride) at a level; the coder rounds them."""

    def decode_symbols(self, symbols: np.ndarray, quality_index: int) -> np.ndarray:
        """Integer symbols (K,h,w) -> image (1,3,h·stride,w·stride) in [0, 1]."""
