"""Tiles: bounded memory for any image size, without visible seams and without extra bits.

Each tile is an independent chunk of symbols, but neither transform stops at a tile edge:

    encode: pixels of the tile + the model's analysis_margin px of its neighbours ─g_a─▶ latents ─crop─▶ tile's latents
    decode: tile's symbols + the model's synthesis_margin positions of its neighbours' ─g_s─▶ pixels ─crop─▶ tile

The margins cover the receptive fields (``sccodec.model.interface.ImageModel``; for the SC-VAE
g_a reaches 61 px and g_s under 2 latent positions, more with residual blocks), so a tiled image
decodes like the whole image at once, up to floating point. Coding each tile as if alone would
save that work but shows a visible seam (docs/performance.md).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Box(NamedTuple):
    """A rectangle (top, left, height, width) in some grid; sorts in raster order."""

    top: int
    left: int
    height: int
    width: int

    def grow(self, margin: int, grid_height: int, grid_width: int) -> "Box":
        """This box plus ``margin`` on every side, clipped to the grid."""
        top, left = max(0, self.top - margin), max(0, self.left - margin)
        bottom = min(grid_height, self.top + self.height + margin)
        right = min(grid_width, self.left + self.width + margin)
        return Box(top, left, bottom - top, right - left)

    def scaled(self, factor: int) -> "Box":
        return Box(self.top * factor, self.left * factor, self.height * factor, self.width * factor)

    def slices(self) -> tuple[slice, slice]:
        """Index of this box in an array that holds the whole grid."""
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    def within(self, outer: "Box") -> tuple[slice, slice]:
        """Index of this box inside the array that holds ``outer``."""
        return (slice(self.top - outer.top, self.top - outer.top + self.height),
                slice(self.left - outer.left, self.left - outer.left + self.width))


def tile_boxes(height: int, width: int, tile: int) -> list[Box]:
    """The tiles of an image, in raster order (the order of the chunks in the file)."""
    return [Box(t, l, min(tile, height - t), min(tile, width - l))
            for t in range(0, height, tile) for l in range(0, width, tile)]


def latent_box(box: Box, stride: int) -> Box:
    """The latent positions of a tile (tile edges are multiples of the stride; the last tile is padded)."""
    return Box(box.top // stride, box.left // stride, -(-box.height // stride), -(-box.width // stride))


def assemble(tiles: list[np.ndarray], boxes: list[Box]) -> np.ndarray:
    """Per-tile symbols (K, h, w) -> one symbol grid for the whole image."""
    last = boxes[-1]
    grid = np.empty((tiles[0].shape[0], last.top + last.height, last.left + last.width), dtype=tiles[0].dtype)
    for symbols, box in zip(tiles, boxes):
        grid[(slice(None), *box.slices())] = symbols
    return grid
