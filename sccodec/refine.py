"""Efforts 3 and 4: integer symbols refined against the synthesis itself (pixel-domain RDO).

    symbols (effort 2) ─synthesis─▶ x̂,  g = ∂‖clamp(x̂) − x‖² / ∂symbol     (one backward pass)
    for every value v and δ = ±1:  ΔJ = g·δ + e_k·δ² + λ_q·(bits(v + δ) − bits(v))
    a pass: on one colour of a checkerboard of latent positions, each position takes its one
            best move where ΔJ < 0; the next pass takes the other colour
    between fresh gradients:  g ≈ g(measured) + curvature · (moves since)   (sccodec.curvature)

Why: effort 2 rounds each value from the code alone, but the decoder's image is what counts,
and the synthesis is far from linear in the code. One backward pass gives, for every value at
once, the first-order change of the squared pixel error; the atom's measured image-space energy
per step (``e_k``, the diagonal of the synthesis' measured curvature) is the second-order term.
For one move alone this predicts the real change well; moves at neighbouring positions excite
overlapping pixels, and taken in the same pass they chase the same error and overshoot, so a
pass moves at most one value per position and only on one checkerboard colour. The next pass
needs the gradient after those moves: the curvature predicts it for the cost of a few small
matrix products, so a backward pass through the synthesis is needed only every few passes
(``Schedule``). The bits are the
static tables' in the tile's current contexts (``sccodec.rdo.value_bits``), and ``λ_q`` is the
slope the level was trained at (its loss is bits + λ·255²·MSE over three channels, so a bit is
worth ``3 / (λ·255²)`` of summed squared error in [0, 1] units).

Encoder only: files decode as any other, and the decoder has no part in it. The caller supplies
the gradient (``gradient``): the model's gradient graph in ONNX Runtime, or torch.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sccodec.curvature import CodeCurvature
from sccodec.entropy import MAX_MAGNITUDE_OVER_RANGE, SymbolTables
from sccodec.rdo import value_bits
from sccodec.tiling import Box


@dataclass(frozen=True)
class Schedule:
    """``passes`` refinement passes, a fresh gradient from the synthesis before every
    ``gradient_every``-th (one forward and one backward pass over the image); the passes between
    take the gradient the curvature predicts. On held-out photos more than about four passes per
    gradient lose what they gain, as the predicted gradient drifts (docs/design.md)."""

    passes: int
    gradient_every: int

    def __post_init__(self) -> None:
        if self.passes < 0 or self.gradient_every < 1:
            raise ValueError(f"a schedule needs passes >= 0 and gradient_every >= 1, not {self}")

    @property
    def gradients(self) -> int:
        return -(-self.passes // self.gradient_every)


#: The refinement of each effort level above 2 (efforts 1 and 2 do not refine).
SCHEDULES: dict[int, Schedule] = {3: Schedule(passes=4, gradient_every=4), 4: Schedule(passes=6, gradient_every=2)}

#: Symbols (K,h,w) -> (squared pixel error, its gradient with respect to every symbol (K,h,w)).
DistortionGradient = Callable[[np.ndarray], tuple[float, np.ndarray]]


def lagrangian(trained_lambda: float) -> float:
    """Summed squared pixel error (three channels, [0, 1] units) one bit is worth at a level
    trained with loss = bits + λ·255²·MSE."""
    return 3 / (trained_lambda * 255.0**2)


@dataclass(frozen=True)
class RefinementSettings:
    """What a refinement needs to know of the model at one level.

    ``curvature``: the synthesis' curvature in the level's symbols (its ``energy``: the squared
    pixel error one step of each atom adds); ``lagrangian``: pixel error one bit is worth;
    ``open_atoms``: the first atoms the level may code (the rest stay 0)."""

    tables: SymbolTables
    quality_index: int
    curvature: CodeCurvature
    lagrangian: float
    open_atoms: int


def refine(symbols: np.ndarray, gradient: DistortionGradient, settings: RefinementSettings, schedule: Schedule,
           tiles: Sequence[Box]) -> np.ndarray:
    """Integer symbols (K,h,w) of the whole image -> refined symbols of the same shape.

    ``tiles``: the latent boxes of the file's tiles (each tile's contexts stop at its edges)."""
    symbols = np.array(symbols, dtype=np.int32)
    _, h, w = symbols.shape
    checker = (np.add.outer(np.arange(h), np.arange(w)) % 2).astype(bool)
    for done in range(schedule.passes):
        if done % schedule.gradient_every == 0:
            _, measured = gradient(symbols)
            measured_at, g = symbols.copy(), measured
        else:
            g = measured + settings.curvature.gradient_change(symbols - measured_at)
        colour = checker if done % 2 else ~checker
        change = np.zeros_like(symbols)
        for box in tiles:
            rows, cols = box.slices()
            change[:, rows, cols] = best_moves(symbols[:, rows, cols], g[:, rows, cols], settings, colour[rows, cols])
        symbols += change
    return symbols


def best_moves(symbols: np.ndarray, g: np.ndarray, settings: RefinementSettings, where: np.ndarray) -> np.ndarray:
    """(K,h,w) in {-1, 0, +1}: at each position of ``where`` (h,w), the one move of one value
    that lowers the predicted cost J = distortion + λ·bits the most, if any does."""
    s = settings
    allowed = np.zeros(symbols.shape, dtype=bool)
    allowed[: s.open_atoms] = where
    value = symbols[allowed]
    limit = s.tables.value_range + MAX_MAGNITUDE_OVER_RANGE
    now, up, down = value_bits(symbols, allowed, s.tables, s.quality_index, (value, value + 1, value - 1))
    slope = g[allowed]
    energy = np.broadcast_to(s.curvature.energy[:, None, None], symbols.shape)[allowed]
    cost_up = np.where(value + 1 > limit, np.inf, slope + energy + s.lagrangian * (up - now))
    cost_down = np.where(value - 1 < -limit, np.inf, -slope + energy + s.lagrangian * (down - now))
    cost = np.full(symbols.shape, np.inf, dtype=np.float64)
    cost[allowed] = np.minimum(cost_up, cost_down)
    step = np.zeros(symbols.shape, dtype=np.int32)
    step[allowed] = np.where(cost_up < cost_down, 1, -1)
    best = cost.argmin(axis=0)[None]  # (1,h,w): the atom of each position's best move
    take = np.take_along_axis(cost, best, axis=0) < 0
    moves = np.zeros_like(step)
    np.put_along_axis(moves, best, np.where(take, np.take_along_axis(step, best, axis=0), 0), axis=0)
    return moves
