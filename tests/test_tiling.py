"""Tiles (sccodec.tiling): the partition, and that tiling leaves no seam in the decoded image."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from helpers import psnr, textured_image
from sccodec.api import Codec
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
    out of the image, not the whole image. With the fixed dead zone: the rate-aware rounding
    reads each tile's own contexts (sccodec.rdo), so its choices near tile edges may differ."""
    codec = Codec(codec.model_file, "cpu", coder=replace(codec.coder, bits_weights=()))  # fixed dead zone
    img = textured_image(h, w, seed=3)
    whole = np.asarray(codec.decode(codec.encode(img, quality=6)))
    tiled = codec.encode(img, quality=6, tile=16)
    assert psnr(np.asarray(codec.decode(tiled)), whole) > 45, "tiles must not change the decoded image"
    codec.synthesis_window = 16  # decoding in windows smaller than the image, as large images are
    assert psnr(np.asarray(codec.decode(tiled)), whole) > 45, "windows must not change the decoded image"


@pytest.mark.parametrize("blocks", [0, 1, 2])
def test_synthesis_margin_covers_its_receptive_field(blocks) -> None:
    """Symbols beyond g_s.margin latent positions never change a tile's pixels; tiled decoding
    reads exactly that far into its neighbours (random block weights: new ones are the identity)."""
    import torch

    from sccodec.model.transforms import SynthesisTransform

    torch.manual_seed(blocks)
    g_s = SynthesisTransform(8, 4, "gdn", blocks).eval()
    for p in g_s.parameters():
        p.data.uniform_(0, 0.05)  # positive: no cancellation hides a path
    size, centre = 13, 6
    y = torch.randn(1, 4, size, size)
    changed = y.clone()
    far = g_s.margin + 1  # every latent position at least this far from the centre one
    idx = torch.arange(size)
    ring = ((idx[:, None] - centre).abs() >= far) | ((idx[None, :] - centre).abs() >= far)
    changed[..., ring] += 1.0
    with torch.no_grad():
        a, b = (g_s(t)[..., centre * 16 : centre * 16 + 16, centre * 16 : centre * 16 + 16] for t in (y, changed))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # and the margin is not wasted: a change just inside it reaches the pixels
    near = changed.clone()
    near[..., centre, centre + g_s.margin] += 1.0
    with torch.no_grad():
        c = g_s(near)[..., centre * 16 : centre * 16 + 16, centre * 16 : centre * 16 + 16]
    assert not torch.allclose(b, c)


def test_tiled_decoding_of_a_model_with_synthesis_blocks_has_no_seams(tmp_path) -> None:
    """Blocks widen the synthesis' reach (g_s.margin 4 instead of 2); tiles and synthesis windows
    must read that far."""
    import torch

    from sccodec import Codec
    from sccodec.model.scvae import SCVAE, ModelConfig
    from sccodec.train.export import export
    from sccodec.weights import read_model_file

    torch.manual_seed(0)
    model = SCVAE(ModelConfig(channels=8, latent=8, atoms=16, lambdas=(0.01, 0.1), synthesis_blocks=1))
    for block in model.g_s.refine.modules():
        if isinstance(block, torch.nn.Conv2d):
            block.weight.data.normal_(0, 0.2)  # not the identity they start as
    codec = Codec(read_model_file(export(model, "tiny-blocks", tmp_path, {}).path), device="cpu")
    img = textured_image(96, 112, seed=5)
    whole = np.asarray(codec.decode(codec.encode(img, quality=2)))
    tiled = codec.encode(img, quality=2, tile=16)
    assert psnr(np.asarray(codec.decode(tiled)), whole) > 45
    codec.synthesis_window = 16
    assert psnr(np.asarray(codec.decode(tiled)), whole) > 45
