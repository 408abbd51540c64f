"""What the codec needs of an image model: the seam a new transform plugs into.

    encode: pixels ─analyze─▶ latent y ─scaled_symbols(q)─▶ real-valued symbols s (K,h,w)
    decode: integer symbols (K,h,w) ─decode_symbols(q)─▶ pixels in [0, 1]

``sccodec.api.Codec`` composes one ``ImageModel`` with one symbol coder (``sccodec.coder``);
it rounds, entropy-codes and tiles, so a model only maps pixels to real-valued symbols and
integer symbols back to pixels. The geometry (``stride`` and the two margins) is known from the
class, without building it, because parsing a file needs each tile's symbol grid but no network.
"""
from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import torch


@runtime_checkable
class ImageModel(Protocol):
    """A network that codes images through a grid of symbols, ``stride`` pixels per position."""

    stride: ClassVar[int]  # pixels per symbol position, each way
    analysis_margin: ClassVar[int]  # pixels beyond a tile that its analysis sees (a multiple of stride)

    @property
    def synthesis_margin(self) -> int:
        """Symbol positions beyond a tile that its synthesis reads."""

    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        """Image (1,3,H,W) in [0, 1], H and W multiples of ``stride`` -> latent, shared by every level."""

    def scaled_symbols(self, y: torch.Tensor, quality_index: int) -> torch.Tensor:
        """Latent -> real-valued symbols (K,H/stride,W/stride) at a level; the coder rounds them."""

    def decode_symbols(self, symbols: torch.Tensor, quality_index: int) -> torch.Tensor:
        """Integer symbols (K,h,w) -> image (1,3,h·stride,w·stride) in [0, 1]."""
