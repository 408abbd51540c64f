"""The synthesis' curvature (sccodec.curvature): what efforts 3 and 4 predict the gradient with
between passes of the synthesis."""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from PIL import Image

from helpers import ASTRONAUT
from sccodec.api import Codec
from sccodec.curvature import REACH, CodeCurvature, Curvature, curvature_file_path, latent_atoms, read_curvature
from sccodec.errors import ModelMismatchError
from sccodec.model.config import open_atoms
from sccodec.refine import RefinementSettings, best_moves, lagrangian
from sccodec.weights import available_models


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(device="cpu")


def test_the_latent_atoms_are_the_synthesis_input_per_symbol(codec) -> None:
    net = codec.model_file.build()
    rng = np.random.default_rng(0)
    symbols = rng.integers(-3, 4, (1, codec.coder.atoms, 3, 5)).astype(np.float32)
    for q in (0, 5, 9):
        _, inv_gain, step = net._per_level(torch.tensor([q]))
        with torch.no_grad():
            want = (net.lista.reconstruct(torch.from_numpy(symbols) * step) * inv_gain)[0].numpy()
        got = np.einsum("mk,khw->mhw", latent_atoms(codec.model_file.tensors, q), symbols[0])
        assert np.allclose(got, want, rtol=1e-4, atol=1e-5)


def test_the_curvature_predicts_how_moves_change_the_gradient_of_a_photo(codec) -> None:
    """The moves of one refinement pass on a photo crop: the gradient the synthesis gives after
    them, less the one before, against the curvature's prediction from the moves alone. The crop
    has few saturated pixels: the curvature does not know the decoder's clamp to [0, 1]."""
    q = 5
    with Image.open(ASTRONAUT) as im:
        pixels = np.asarray(im.convert("RGB"))[:128, :192]  # the full-resolution sample's top left
    assert ((pixels < 3) | (pixels > 252)).mean() < 0.02
    net = codec.network
    target = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], np.float32) / 255
    symbols = codec.coder.quantize(net.scaled_symbols(net.analyze(target), q), q)
    region = (slice(None), slice(None))
    before = net.distortion_gradient(symbols, q, target, region)[1]
    curvature = codec.model_file.curvature.at_level(codec.model_file.tensors, q)
    settings = RefinementSettings(codec.coder.tables, q, curvature, lagrangian(codec.model_file.config.lambdas[q]),
                                  open_atoms(codec.model_file.config, q))
    checker = np.add.outer(np.arange(symbols.shape[1]), np.arange(symbols.shape[2])) % 2 == 0
    moves = best_moves(symbols, before, settings, checker)
    assert np.abs(moves).sum() >= 30
    after = net.distortion_gradient(symbols + moves, q, target, region)[1]
    change, predicted = (after - before).ravel(), curvature.gradient_change(moves).ravel()
    assert np.corrcoef(change, predicted)[0, 1] > 0.95  # the kernel's rows flipped: 0.92
    assert np.linalg.norm(change - predicted) < 0.33 * np.linalg.norm(change)  # flipped: 0.39


def test_the_gradient_change_is_the_gradient_of_the_quadratic_form() -> None:
    """E(Δ) = Σ_{p,p'} Δ_pᵀ H(p' − p) Δ_{p'} with H(d) = Aᵀ M(d) A and M(−d) = M(d)ᵀ: the
    prediction is exactly ∇E, checked by central differences of E summed out in full."""
    rng = np.random.default_rng(3)
    m, k, h, w = 3, 5, 3, 4
    atoms = rng.normal(size=(m, k)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, m, m))
    kernel = ((kernel + kernel[::-1, ::-1].transpose(0, 1, 3, 2)) / 2).astype(np.float32)
    moves = rng.integers(-2, 3, (k, h, w)).astype(np.float64)
    a = atoms.astype(np.float64)

    def energy(x: np.ndarray) -> float:
        total = 0.0
        for i in range(h):
            for j in range(w):
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        if 0 <= i + di < h and 0 <= j + dj < w:
                            total += x[:, i, j] @ a.T @ kernel[1 + di, 1 + dj] @ a @ x[:, i + di, j + dj]
        return total

    numeric = np.zeros_like(moves)
    for index in np.ndindex(moves.shape):
        step = np.zeros_like(moves)
        step[index] = 0.5
        numeric[index] = energy(moves + step) - energy(moves - step)
    predicted = CodeCurvature(atoms, kernel).gradient_change(moves.astype(np.int32))
    assert np.allclose(predicted, numeric, rtol=1e-4, atol=1e-3)


def test_each_atoms_energy_is_positive(codec) -> None:
    for q in (0, 9):
        energy = codec.model_file.curvature.at_level(codec.model_file.tensors, q).energy
        assert energy.shape == (codec.coder.atoms,) and (energy > 0).all()


def test_a_curvature_file_is_used_only_for_the_weights_it_was_measured_for(codec, tmp_path) -> None:
    weights = tmp_path / "m.safetensors"
    shutil.copyfile(codec.model_file.path, weights)
    model_file = dataclasses.replace(codec.model_file, path=weights)
    side = 2 * REACH + 1
    kernel = np.random.default_rng(0).normal(size=(side, side, 4, 4)).astype(np.float32)
    target = curvature_file_path(weights)
    assert target.name == "m.curvature.safetensors"
    target.write_bytes(Curvature(kernel, model_file.digest).to_bytes())
    read = read_curvature(target)
    assert np.array_equal(read.kernel, kernel) and read.model_digest == model_file.digest
    assert dataclasses.replace(model_file).curvature.model_digest == model_file.digest
    target.write_bytes(Curvature(kernel, bytes(8)).to_bytes())
    assert dataclasses.replace(model_file).curvature is None
    target.write_bytes(b"not a curvature file")
    with pytest.raises(ModelMismatchError, match="not a usable curvature file"):
        _ = dataclasses.replace(model_file).curvature


@pytest.mark.parametrize("shape", [(3, 3, 4, 5), (2, 2, 4, 4), (3, 3, 4)])
def test_a_kernel_of_the_wrong_shape_is_refused(shape) -> None:
    with pytest.raises(ValueError, match="shape"):
        Curvature(np.zeros(shape, np.float32), bytes(8))


def test_a_curvature_of_other_latent_channels_is_refused(codec) -> None:
    with pytest.raises(ValueError, match="latent channels"):
        Curvature(np.zeros((3, 3, 7, 7), np.float32), bytes(8)).at_level(codec.model_file.tensors, 0)


def test_curvature_files_are_not_models() -> None:
    assert not [m for m in available_models() if m.endswith(".curvature")]
