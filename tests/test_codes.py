"""sccodec.codes: a .scv file read as its sparse code (symbols and dequantised values), tiles
stitched into one grid, without building any network."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

import sccodec.codes
from helpers import astronaut_crop, gradient_image, textured_image
from sccodec.api import parse_symbols
from sccodec.codes import Codes, read_codes
from sccodec.errors import CorruptFileError, FormatError, ImageInputError, ParameterError
from sccodec.tiling import latent_box, tile_boxes


@pytest.fixture(scope="module")
def photo_scv(codec) -> bytes:
    return codec.encode(astronaut_crop(96, 128), quality=6)


@pytest.fixture(scope="module")
def multi_tile(codec) -> tuple[np.ndarray, bytes]:
    """150x200 px in 64-px tiles: a 3x4 grid of tiles with part tiles on the right and bottom."""
    pixels = textured_image(150, 200, seed=3)
    return pixels, codec.encode(pixels, quality=5, tile=64)


def test_read_codes_builds_no_network(tmp_path, photo_scv) -> None:
    path = tmp_path / "photo.scv"
    path.write_bytes(photo_scv)
    script = ("import sys\n"
              "from sccodec.codes import read_codes\n"
              f"codes = read_codes({str(path)!r})\n"
              "print(codes.symbols.shape, int((codes.symbols != 0).sum()))\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\n"
              "assert 'onnxruntime' not in sys.modules, 'onnxruntime was imported'\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = read_codes(photo_scv)
    assert result.stdout.split("\n")[0] == f"{expected.symbols.shape} {int((expected.symbols != 0).sum())}"


def test_grid_shape_and_types(photo_scv, model_file) -> None:
    codes = read_codes(photo_scv)
    k = model_file.config.atoms
    assert codes.image_size == (96, 128)
    assert codes.stride == 16
    assert codes.symbols.shape == codes.values.shape == (k, 6, 8)
    assert codes.symbols.dtype == np.int32 and codes.values.dtype == np.float32
    assert codes.step.shape == (k,)
    assert 0 < np.count_nonzero(codes.symbols) < codes.symbols.size  # a sparse code, but not an empty one


def test_grid_covers_the_padding_of_odd_sizes(tiled_scv) -> None:
    codes = read_codes(tiled_scv)  # 40x70 px: ceil(40/16) x ceil(70/16) positions
    assert codes.image_size == (40, 70)
    assert codes.grid_size == (3, 5)


def test_values_are_symbols_times_the_step_of_the_files_level(monkeypatch, photo_scv, model_file) -> None:
    """With steps that differ per level and atom (the shipped model's ladder may have them all 1),
    values must use the step of the file's own level, atom by atom."""
    rng = np.random.default_rng(0)
    log_step = rng.uniform(-1.0, 1.0, model_file.tensors["log_step"].shape).astype(np.float32)
    stepped = dataclasses.replace(model_file, tensors={**model_file.tensors, "log_step": log_step})
    monkeypatch.setattr(sccodec.codes, "_model_file", lambda name, digest: stepped)
    codes = read_codes(photo_scv)
    step = np.exp(log_step[codes.header.quality - 1])
    np.testing.assert_allclose(codes.step, step, rtol=1e-6)
    np.testing.assert_allclose(codes.values, codes.symbols * step[:, None, None], rtol=1e-6)
    assert not np.allclose(codes.values, codes.symbols)  # the test would notice a missing step


def test_values_and_latent_are_what_the_decoder_feeds_the_synthesis(photo_scv, model_file) -> None:
    """The torch model's own path: symbols ×step[q] ─dictionary─▶ ×inv_gain[q] (SCVAE.synthesize)."""
    import torch

    codes = read_codes(photo_scv)
    model = model_file.build()
    q = torch.tensor([codes.header.quality - 1])
    _, inv_gain, step = model._per_level(q)
    with torch.no_grad():
        code = torch.from_numpy(codes.symbols[None].astype(np.float32)) * step
        latent = model.lista.reconstruct(code) * inv_gain
    np.testing.assert_allclose(codes.values, code[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(codes.latent(), latent[0].numpy(), rtol=1e-4, atol=1e-5)


def test_tiles_are_stitched_in_place(multi_tile) -> None:
    _, data = multi_tile
    codes = read_codes(data)
    parsed = parse_symbols(data)
    assert codes.header.num_tiles == len(parsed.tiles) == 12
    assert codes.grid_size == (10, 13)
    for tile, box in zip(parsed.tiles, tile_boxes(150, 200, 64)):
        own = latent_box(box, codes.stride)
        np.testing.assert_array_equal(
            codes.symbols[:, own.top : own.top + own.height, own.left : own.left + own.width], tile)


def test_tiled_file_gives_the_grid_of_a_one_tile_file(codec, multi_tile) -> None:
    """Tiles code the image as a whole does (sccodec.tiling), so a misplaced tile would show as
    disagreement with the one-tile file of the same pixels."""
    pixels, data = multi_tile
    tiled, whole = read_codes(data).symbols, read_codes(codec.encode(pixels, quality=5)).symbols
    assert tiled.shape == whole.shape
    coded = (tiled != 0) | (whole != 0)
    assert (tiled == whole)[coded].mean() > 0.95


def test_sparse_round_trip(multi_tile) -> None:
    codes = read_codes(multi_tile[1])
    sparse = codes.sparse()
    assert len(sparse) == np.count_nonzero(codes.symbols)
    assert sparse.positions.shape == (len(sparse), 2)
    assert sparse.positions.dtype == sparse.atoms.dtype == sparse.symbols.dtype == np.int32
    assert sparse.values.dtype == np.float32
    grid = np.zeros_like(codes.values)
    grid[sparse.atoms, sparse.positions[:, 0], sparse.positions[:, 1]] = sparse.values
    np.testing.assert_array_equal(grid, codes.values)
    np.testing.assert_array_equal(sparse.dense(), codes.values)
    assert np.all(sparse.symbols != 0)
    np.testing.assert_array_equal(codes.symbols[sparse.atoms, sparse.positions[:, 0], sparse.positions[:, 1]],
                                  sparse.symbols)
    # raster order of position, then atom
    keys = (sparse.positions[:, 0].astype(np.int64) * codes.grid_size[1] + sparse.positions[:, 1]) * codes.atoms \
        + sparse.atoms
    assert np.all(np.diff(keys) > 0)


def test_reads_a_path_or_bytes(tmp_path, photo_scv) -> None:
    path = tmp_path / "photo.scv"
    path.write_bytes(photo_scv)
    for source in (path, str(path), photo_scv, bytearray(photo_scv)):
        codes = read_codes(source)
        assert isinstance(codes, Codes)
        np.testing.assert_array_equal(codes.symbols, read_codes(photo_scv).symbols)


def test_bad_inputs(tmp_path, photo_scv) -> None:
    with pytest.raises(FormatError, match="not an .scv file"):
        read_codes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(CorruptFileError):
        read_codes(photo_scv[:-7])
    with pytest.raises(ImageInputError, match="missing.scv"):
        read_codes(tmp_path / "missing.scv")
    with pytest.raises(ParameterError):
        read_codes(12)  # type: ignore[arg-type]


def test_pixel_limit_applies(photo_scv) -> None:
    from sccodec.errors import LimitError

    with pytest.raises(LimitError):
        read_codes(photo_scv, max_pixels=96 * 128 - 1)


def test_gradient_file_of_every_level_reads(codec) -> None:
    pixels = gradient_image(32, 48)
    for quality in (1, codec.qualities[-1]):
        codes = read_codes(codec.encode(pixels, quality=quality))
        assert codes.header.quality == quality and codes.grid_size == (2, 3)
