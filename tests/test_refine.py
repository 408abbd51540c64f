"""Efforts 3 and 4: the symbols refined against the synthesis (sccodec.refine), between fresh
gradients with the synthesis' curvature (sccodec.curvature)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import astronaut_crop, make_tables
import sccodec
from sccodec import refine
from sccodec.api import Codec, parse_symbols
from sccodec.context import SCHEMES
from sccodec.curvature import REACH, CodeCurvature
from sccodec.errors import ParameterError
from sccodec.rdo import value_bits
from sccodec.refine import RefinementSettings, Schedule, best_moves
from sccodec.tiling import Box


def separable(weight: np.ndarray) -> CodeCurvature:
    """The curvature of an error Σ weight_k·(s − target)²: symbols are the latent, no offsets."""
    k = len(weight)
    kernel = np.zeros((2 * REACH + 1, 2 * REACH + 1, k, k), np.float32)
    kernel[REACH, REACH] = np.diag(weight)
    return CodeCurvature(np.eye(k, dtype=np.float32), kernel)


def settings_for(tables, energy: float = 1.0, lagrangian: float = 0.0, open_atoms: int | None = None) -> RefinementSettings:
    return RefinementSettings(tables, 0, separable(np.full(tables.atoms, energy)), lagrangian,
                              tables.atoms if open_atoms is None else open_atoms)


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(0)
    k, r, scheme = 8, 4, SCHEMES["checkerboard"]
    return make_tables(rng.uniform(0.05, 0.5, (1, k, scheme.flag_contexts)),
                       rng.dirichlet(np.full(2 * r, 2.0), (1, k, scheme.value_contexts)), 2, "checkerboard")


def quadratic(target: np.ndarray, weight: np.ndarray):
    """A 'synthesis' whose error is Σ weight·(s − target)²: no atom or position interacts."""
    def gradient(symbols: np.ndarray) -> tuple[float, np.ndarray]:
        d = symbols - target
        return float((weight * d**2).sum()), 2 * weight * d
    return gradient


def test_each_pass_moves_at_most_one_value_per_position_on_one_checkerboard_colour(tables) -> None:
    rng = np.random.default_rng(1)
    symbols = rng.integers(-2, 3, (tables.atoms, 6, 7)).astype(np.int32)
    g = rng.normal(0, 5, symbols.shape)
    where = (np.add.outer(np.arange(6), np.arange(7)) % 2 == 0)
    moves = best_moves(symbols, g, settings_for(tables, energy=0.5), where)
    assert set(np.unique(moves)) <= {-1, 0, 1}
    assert (np.abs(moves).sum(axis=0) <= 1).all()
    assert not moves[:, ~where].any() and moves[:, where].any()


def test_a_move_is_taken_only_where_it_lowers_distortion_plus_weighted_bits(tables) -> None:
    symbols = np.zeros((tables.atoms, 1, 1), np.int32)
    where = np.ones((1, 1), bool)
    g = np.zeros(symbols.shape)
    g[3] = -3.0  # raising atom 3 by one changes the error by -3 + energy
    bits_now, bits_up = value_bits(symbols, np.ones(symbols.shape, bool), tables, 0, (symbols.ravel(), symbols.ravel() + 1))
    extra = float(bits_up[3] - bits_now[3])
    cheap = best_moves(symbols, g, settings_for(tables, energy=1.0, lagrangian=1.9 / extra), where)
    dear = best_moves(symbols, g, settings_for(tables, energy=1.0, lagrangian=2.1 / extra), where)
    assert cheap[3, 0, 0] == 1 and np.abs(cheap).sum() == 1
    assert not dear.any()


def test_closed_atoms_and_the_escape_limit_are_never_crossed(tables) -> None:
    limit = tables.value_range + sccodec.entropy.MAX_MAGNITUDE_OVER_RANGE
    symbols = np.zeros((tables.atoms, 2, 2), np.int32)
    symbols[0] = limit
    g = np.full(symbols.shape, -100.0)  # every value wants to grow
    moves = best_moves(symbols, g, settings_for(tables, energy=0.0, open_atoms=2), np.ones((2, 2), bool))
    assert not moves[2:].any() and not moves[0].any() and (moves[1] == 1).all()


@pytest.mark.parametrize("gradient_every", [1, 2, 7])
def test_refinement_walks_the_code_to_the_best_one_when_the_model_is_exact(tables, gradient_every) -> None:
    """λ = 0 and a separable error, exactly the refinement's model (and its curvature's): every
    pass lowers the error and enough passes reach the nearest integers to the target on the open
    atoms, whether each pass measures the gradient or the curvature predicts it."""
    rng = np.random.default_rng(2)
    target = rng.uniform(-3, 3, (tables.atoms, 4, 6))
    weight = np.broadcast_to(rng.uniform(0.5, 2, tables.atoms)[:, None, None], target.shape)
    gradient = quadratic(target, weight)
    settings = dataclasses.replace(settings_for(tables, open_atoms=6), curvature=separable(weight[:, 0, 0]))
    start = np.zeros(target.shape, np.int32)
    tiles = [Box(0, 0, 4, 3), Box(0, 3, 4, 3)]
    errors = [gradient(start)[0]]
    symbols = start
    for _ in range(40):
        symbols = refine.refine(symbols, gradient, settings, Schedule(4, gradient_every), tiles)
        errors.append(gradient(symbols)[0])
    assert all(b <= a for a, b in zip(errors, errors[1:])) and errors[-1] < errors[0]
    assert np.array_equal(symbols[:6], np.rint(target[:6])) and not symbols[6:].any()


def linear_synthesis(responses: np.ndarray, target: np.ndarray):
    """A linear 'synthesis' whose atoms overlap their neighbours: atom k at latent position p adds
    ``responses[k]`` (2×2 pixels) at pixels p..p+1; the error is its squared distance from the
    image of ``target``. Returns the error's gradient and its exact curvature (A = identity)."""
    k, h, w = target.shape

    def image(symbols: np.ndarray) -> np.ndarray:
        x = np.zeros((h + 1, w + 1))
        for i in range(2):
            for j in range(2):
                x[i : i + h, j : j + w] += np.einsum("k,khw->hw", responses[:, i, j], symbols)
        return x

    goal = image(target)

    def gradient(symbols: np.ndarray) -> tuple[float, np.ndarray]:
        residual = image(symbols) - goal
        g = np.zeros(symbols.shape)
        for i in range(2):
            for j in range(2):
                g += 2 * responses[:, i, j][:, None, None] * residual[None, i : i + h, j : j + w]
        return float((residual**2).sum()), g

    kernel = np.zeros((3, 3, k, k))  # H(d)_kl = ⟨atom k at p, atom l at p + d⟩
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            for ui in range(2):
                for uj in range(2):
                    if 0 <= ui - di < 2 and 0 <= uj - dj < 2:
                        kernel[1 + di, 1 + dj] += np.outer(responses[:, ui, uj], responses[:, ui - di, uj - dj])
    return gradient, CodeCurvature(np.eye(k, dtype=np.float32), kernel.astype(np.float32))


def test_with_an_exact_curvature_predicted_gradients_make_the_moves_measured_ones_do(tables) -> None:
    """Neighbouring atoms overlap, so each pass's moves change the gradient at the next pass's
    positions: a schedule that measures once must still move exactly as one that measures every
    pass, and lower the error."""
    rng = np.random.default_rng(4)
    target = rng.uniform(-3, 3, (tables.atoms, 5, 6))
    gradient, curvature = linear_synthesis(rng.normal(size=(tables.atoms, 2, 2)), target)
    settings = dataclasses.replace(settings_for(tables), curvature=curvature)
    start = np.rint(target + rng.normal(0, 1.5, target.shape)).astype(np.int32)
    tiles = [Box(0, 0, 5, 6)]
    every_pass = refine.refine(start, gradient, settings, Schedule(6, 1), tiles)
    once = refine.refine(start, gradient, settings, Schedule(6, 6), tiles)
    assert np.array_equal(once, every_pass) and not np.array_equal(once, start)
    assert gradient(once)[0] < gradient(start)[0]


@pytest.mark.parametrize(("passes", "every"), [(2, 0), (-1, 1)])
def test_a_schedule_needs_a_gradient_step_of_at_least_one(passes, every) -> None:
    with pytest.raises(ValueError, match="schedule"):
        Schedule(passes, every)


@pytest.mark.parametrize(("passes", "every", "gradients"), [(4, 4, 1), (6, 2, 3), (5, 2, 3), (1, 3, 1)])
def test_the_synthesis_is_asked_for_a_gradient_once_per_schedule_step(tables, passes, every, gradients) -> None:
    calls = []
    exact = quadratic(np.ones((tables.atoms, 2, 2)), np.ones((tables.atoms, 2, 2)))

    def gradient(symbols: np.ndarray) -> tuple[float, np.ndarray]:
        calls.append(symbols.copy())
        return exact(symbols)

    schedule = Schedule(passes, every)
    refine.refine(np.zeros((tables.atoms, 2, 2), np.int32), gradient, settings_for(tables), schedule, [Box(0, 0, 2, 2)])
    assert len(calls) == schedule.gradients == gradients


@pytest.fixture(scope="module")
def codec():
    return Codec(device="cpu")


def cost(codec: Codec, image: np.ndarray, data: bytes) -> float:
    """Squared error in [0, 1] units + the level's λ × bits: what the refinement lowers."""
    q = sccodec.bitstream.parse_header(data)[0].quality - 1
    decoded = np.asarray(codec.decode(data), np.float64) / 255
    error = float(((decoded - image / 255.0) ** 2).sum())
    return error + refine.lagrangian(codec.model_file.config.lambdas[q]) * 8 * len(data)


@pytest.mark.parametrize("quality", [2, 6])
def test_higher_efforts_lower_the_rate_distortion_cost_of_a_photo(codec, quality) -> None:
    image = astronaut_crop(96, 128)
    files = {e: codec.encode(image, quality, effort=e) for e in (2, 3, 4)}
    costs = {e: cost(codec, image, data) for e, data in files.items()}
    assert costs[4] < costs[3] < costs[2]
    for data in files.values():
        assert sccodec.bitstream.parse_header(data)[0].quality == quality


def test_refinement_spans_tiles_and_keeps_each_tiles_symbols_in_its_chunk(codec) -> None:
    image = astronaut_crop(96, 128)
    tiled = codec.encode(image, 4, effort=3, tile=64)
    assert len(parse_symbols(tiled).tiles) == 4
    assert cost(codec, image, tiled) < cost(codec, image, codec.encode(image, 4, effort=2, tile=64))


def test_the_gradient_summed_over_synthesis_windows_is_the_whole_images() -> None:
    """Windows of 32 px (with the decoder's margins) give the file one window gives."""
    image = astronaut_crop(96, 128)
    small = Codec(device="cpu")
    small.synthesis_window = 32
    assert small.encode(image, 5, effort=4) == Codec(device="cpu").encode(image, 5, effort=4)


@pytest.mark.parametrize("shape", [(1, 1), (17, 33), (40, 40, "L"), (16, 120), (100, 16)])
def test_odd_sizes_and_grey_images_refine_and_decode(codec, shape) -> None:
    pixels = astronaut_crop(*shape[:2])
    image = Image.fromarray(pixels).convert(shape[2]) if len(shape) > 2 else pixels
    data = codec.encode(image, 6, effort=4)
    decoded = codec.decode(data)
    assert decoded.size == (shape[1], shape[0]) and decoded.mode == ("L" if len(shape) > 2 else "RGB")


def test_the_same_input_gives_the_same_file(codec) -> None:
    image = astronaut_crop(64, 64)
    assert codec.encode(image, 3, effort=4) == Codec(device="cpu").encode(image, 3, effort=4)


def test_a_model_without_a_curvature_offers_efforts_up_to_2(codec) -> None:
    bare = dataclasses.replace(codec.model_file)
    bare.__dict__["curvature"] = None  # as if no curvature file (or one for other weights) were beside it
    image = astronaut_crop(32, 32)
    assert Codec(bare, device="cpu").encode(image, 3, effort=2)
    with pytest.raises(ParameterError, match="effort 3 needs the synthesis' curvature.*other weights"):
        Codec(bare, device="cpu").encode(image, 3, effort=3)


def test_without_a_gradient_graph_or_torch_the_higher_efforts_say_what_to_install(monkeypatch) -> None:
    from sccodec.model.runtime import RuntimeModel

    monkeypatch.setattr(RuntimeModel, "gradient_available", False)
    monkeypatch.setitem(sys.modules, "sccodec.model.torch_model", None)  # import fails
    with pytest.raises(ParameterError, match=r"sccodec\[torch\]"):
        Codec(device="cpu").encode(astronaut_crop(32, 32), 3, effort=4)


def test_without_a_gradient_graph_torch_refines_to_the_same_choices(monkeypatch) -> None:
    from sccodec.model.runtime import RuntimeModel

    image = astronaut_crop(64, 96)
    with_graph = Codec(device="cpu").encode(image, 5, effort=4)
    monkeypatch.setattr(RuntimeModel, "gradient_available", False)
    assert Codec(device="cpu").encode(image, 5, effort=4) == with_graph


def test_the_highest_effort_needs_no_torch_with_the_gradient_graph(tmp_path) -> None:
    script = ("import sys, numpy as np, sccodec; "
              "img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8); "
              "sccodec.decode(sccodec.encode(img, 4, effort=4)); assert 'torch' not in sys.modules, 'torch'")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr

