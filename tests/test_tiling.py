"""Tiles (sccodec.tiling): the partition, and that tiling leaves no seam in the decoded image."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import psnr, textured_image
from sccodec.tiling import Box, latent_box, tile_boxes


@pytest.mark.parametrize(("h", "w", "tile"), [(1, 1, 16), (40, 70, 32), (32, 64, 32), (17, 5, 16)])
def test_tile_boxes_partition_the_image_in_raster_order(h, w, tile) -> None:
    boxes = tile_boxes(h, w, tile)
    cover = np.zeros((h, w), int)
    for top, left, th, tw in boxes:
        assert 1 <= th <= tile and 1 <= tw <= tile
        cover[top : top + th, left : left + tw] += 1
    np.testing.assert_array_equal(cover, 1)
    assert boxes == sorted(boxes) and len(boxes) == -(-h // tile) * -(-w // tile)


def test_margins_are_clipped_to_the_grid_and_index_back_to_the_box() -> None:
    box = Box(32, 0, 32, 20)
    grown = box.grow(16, 70, 40)
    assert grown == Box(16, 0, 54, 36)
    rows, cols = box.within(grown)
    a = np.arange(70 * 40).reshape(70, 40)
    np.testing.assert_array_equal(a[grown.top : grown.top + grown.height, grown.left : grown.left + grown.width][rows, cols],
                                  a[32:64, 0:20])
    assert latent_box(Box(32, 16, 17, 5), 16) == Box(2, 1, 2, 1)


@pytest.mark.parametrize(("h", "w"), [(48, 64), (32, 208)])
def test_tiled_coding_matches_whole_image_coding(codec, h, w) -> None:
    """The transforms see across tile edges, so 16-px tiles decode like one tile (no seams).
    208 px: the middle tiles' analysis margins (64 px) and synthesis margins (32 px) are cut
    out of the image, not the whole image."""
    img = textured_image(h, w, seed=3)
    whole = np.asarray(codec.decode(codec.encode(img, quality=6)))
    tiled = np.asarray(codec.decode(codec.encode(img, quality=6, tile=16)))
    assert psnr(tiled, whole) > 45, "tiles must not change the decoded image beyond float noise"
