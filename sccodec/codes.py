"""A .scv file as data: its sparse code over the model's dictionary, read without any network.

    .scv ─bitstream.parse─▶ TILE payloads ─entropy decoding─▶ integer symbols per tile
         ─stitched (tiling.tile_boxes, latent_box)─▶ symbols (K, h, w) ─×step[q, atom]─▶ values (K, h, w)

``values`` is exactly the code ẑ the decoder multiplies by the dictionary before the synthesis
network (``sccodec.model.scvae``): position (row, col) of the grid describes the image's
``stride``×``stride`` pixel block at (row·stride, col·stride), and atom k's value says how much of
dictionary column k that block's latent holds. Reading it costs only entropy decoding (no torch,
no ONNX Runtime), which is what the compressed-domain analysis (``sccodec.analysis``) builds on.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sccodec import bitstream
from sccodec.api import parse_symbols
from sccodec.bitstream import DEFAULT_MAX_PIXELS, Header
from sccodec.errors import ImageInputError, ParameterError
from sccodec.tiling import assemble, latent_box, tile_boxes
from sccodec.weights import ModelFile, load_model_file


@dataclass(frozen=True, eq=False)
class SparseCodes:
    """The non-zero entries of a code grid, in raster order of position, then by atom.

    ``positions`` (n, 2) int32 (row, col) on the latent grid; ``atoms`` (n,) int32; ``symbols``
    (n,) int32, the coded integers; ``values`` (n,) float32, the dequantised code;
    ``shape`` the dense grid's (K, h, w).
    """

    positions: np.ndarray
    atoms: np.ndarray
    symbols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int, int]

    def __len__(self) -> int:
        return len(self.atoms)

    def dense(self) -> np.ndarray:
        """The (K, h, w) float32 grid of values these entries come from (zeros elsewhere)."""
        grid = np.zeros(self.shape, dtype=np.float32)
        grid[self.atoms, self.positions[:, 0], self.positions[:, 1]] = self.values
        return grid


@dataclass(frozen=True, eq=False)
class Codes:
    """A whole image's sparse code: the file's header, and its symbol grid with the tiles stitched.

    ``symbols`` (K, h, w) int32 with h = ceil(H / stride), w = ceil(W / stride); ``values`` the
    same grid dequantised (float32, ``symbols * step[:, None, None]``), the decoder's input to
    the dictionary; ``step`` (K,) float32, the quantiser step of each atom at the file's level
    (None for codes assembled by hand). The last row and column of positions cover the padding
    of an image whose size is not a multiple of ``stride``.
    """

    header: Header
    symbols: np.ndarray
    values: np.ndarray
    stride: int
    step: np.ndarray | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the image, in pixels."""
        return self.header.height, self.header.width

    @property
    def grid_size(self) -> tuple[int, int]:
        """(h, w) of the latent grid."""
        return self.symbols.shape[1], self.symbols.shape[2]

    @property
    def atoms(self) -> int:
        """K, the dictionary size of the file's model."""
        return self.symbols.shape[0]

    @property
    def dictionary(self) -> np.ndarray:
        """(M, K) float32: the model's dictionary, unit-norm atoms as columns (as the decoder uses it)."""
        return model_dictionary(_model_file(self.header.model, self.header.weights_hash))

    @property
    def inverse_gain(self) -> np.ndarray:
        """(M,) float32: the file's level's gain from the dictionary's output back to the latent."""
        return level_inverse_gain(_model_file(self.header.model, self.header.weights_hash), self.header.quality)

    def latent(self) -> np.ndarray:
        """(M, h, w) float32: ŷ = dictionary · values × inverse_gain, the latent the synthesis
        network receives (the decoder's next step, still without any network).

        Unlike the code, its scale and meaning do not depend on the quality level: every level
        approximates the same analysis latent, whichever atoms its code uses."""
        k, h, w = self.values.shape
        latent = (self.dictionary @ self.values.reshape(k, h * w)) * self.inverse_gain[:, None]
        return latent.reshape(-1, h, w)

    def sparse(self) -> SparseCodes:
        """Only the non-zero entries (a few per position at usual rates: the code is sparse)."""
        rows, cols, atoms = np.nonzero(self.symbols.transpose(1, 2, 0))
        return SparseCodes(positions=np.stack([rows, cols], axis=1).astype(np.int32),
                           atoms=atoms.astype(np.int32), symbols=self.symbols[atoms, rows, cols].astype(np.int32),
                           values=self.values[atoms, rows, cols].astype(np.float32),
                           shape=tuple(self.symbols.shape))


@functools.lru_cache(maxsize=4)
def _model_file(name: str, digest: bytes) -> ModelFile:
    """One read (and one set of entropy tables) per model while many files are read."""
    return load_model_file(name, digest)


def level_steps(model_file: ModelFile, quality: int) -> np.ndarray:
    """(K,) float32 quantiser step of each atom at level ``quality`` (1-based): exp(log_step)."""
    return np.exp(model_file.tensors["log_step"][quality - 1].astype(np.float32))


def model_dictionary(model_file: ModelFile) -> np.ndarray:
    """(M, K) float32 unit-norm atoms (``sccodec.model.lista.LISTA.atoms``)."""
    d = model_file.tensors["lista.dictionary"].astype(np.float32)
    return d / np.maximum(np.linalg.norm(d, axis=0, keepdims=True), np.float32(1e-8))


def level_inverse_gain(model_file: ModelFile, quality: int) -> np.ndarray:
    """(M,) float32 gain from the dictionary's output to the latent at level ``quality`` (1-based)."""
    return np.exp(model_file.tensors["log_inv_gain"][quality - 1].astype(np.float32))


def read_codes(source: bytes | bytearray | memoryview | str | os.PathLike, *,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Codes:
    """An .scv file (its bytes or a path) -> its ``Codes``, by entropy decoding alone.

    Raises an ``SCVError`` subclass for anything that is not a readable .scv file of an
    installed model (the same checks as decoding: format, CRCs, limits, model and hash).
    """
    data = _read_bytes(source)
    container = bitstream.parse(data, max_pixels)
    h = container.header
    model_file = _model_file(h.model, h.weights_hash)
    stride = model_file.geometry.stride
    parsed = parse_symbols(container, model_file, max_pixels)
    symbols = assemble(parsed.tiles, [latent_box(box, stride) for box in tile_boxes(h.height, h.width, h.tile)])
    symbols = symbols.astype(np.int32, copy=False)
    step = level_steps(model_file, h.quality)
    values = symbols.astype(np.float32) * step[:, None, None]
    return Codes(header=h, symbols=symbols, values=values, stride=stride, step=step)


def _read_bytes(source: object) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            return Path(source).read_bytes()
        except OSError as e:
            raise ImageInputError(f"cannot read {source}: {e.strerror or e}") from None
    raise ParameterError(f"read_codes() takes an .scv file's bytes or path, got {type(source).__name__}")
