"""Integer contexts (sccodec.context): causality with respect to the coding order, and range."""
from __future__ import annotations

import numpy as np
import pytest

from sccodec.context import NUM_ACTIVITY, NUM_CONTEXTS, NUM_SAME, coding_steps, contexts, parity

# (atoms K, groups G, h, w, density of non-zeros)
SHAPES = [
    (8, 4, 5, 7, 0.3),
    (8, 2, 1, 9, 0.5),  # a single row
    (6, 3, 9, 1, 0.5),  # a single column
    (4, 1, 1, 1, 0.7),  # a single position
    (64, 4, 6, 6, 0.6),  # dense: reaches the top activity buckets
    (12, 4, 4, 3, 0.0),  # all zero
]


def random_symbols(k: int, h: int, w: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.integers(1, 6, size=(k, h, w)) * rng.choice([-1, 1], size=(k, h, w))
    return np.where(rng.random((k, h, w)) < density, values, 0).astype(np.int32)


def step_mask(k: int, groups: int, h: int, w: int, step: tuple[int, int]) -> np.ndarray:
    """Boolean (K, h, w): the symbols coded at one (pass, group) step."""
    p, g = step
    mask = np.zeros((k, h, w), dtype=bool)
    per = k // groups
    mask[g * per : (g + 1) * per] = parity(h, w) == p
    return mask


@pytest.mark.parametrize(("k", "groups", "h", "w", "density"), SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_contexts_read_only_earlier_coding_steps(k, groups, h, w, density, seed) -> None:
    """What the decoder sees (only earlier steps decoded, the rest still 0) gives the same
    context, at every step, as the full array the encoder and the training loss see."""
    symbols = random_symbols(k, h, w, density, seed)
    full = np.asarray(contexts(symbols, groups))
    steps = coding_steps(groups)
    decoded = np.zeros(symbols.shape, dtype=bool)
    for step in steps:
        partial = np.where(decoded, symbols, 0).astype(np.int32)
        here = step_mask(k, groups, h, w, step)
        np.testing.assert_array_equal(np.asarray(contexts(partial, groups))[here], full[here],
                                      err_msg=f"step {step} reads symbols that are not decoded yet")
        decoded |= here
    assert decoded.all(), "the coding steps must cover every symbol exactly once"


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_coding_steps_cover_each_symbol_once(groups) -> None:
    k, h, w = 8, 3, 4
    steps = coding_steps(groups)
    assert len(steps) == len(set(steps)) == 2 * groups
    total = sum(step_mask(k, groups, h, w, s).astype(int) for s in steps)
    np.testing.assert_array_equal(total, 1)
    assert [p for p, _ in steps] == sorted(p for p, _ in steps), "all anchors come first"


@pytest.mark.parametrize(("k", "groups", "h", "w", "density"), SHAPES)
def test_context_values_are_in_range(k, groups, h, w, density) -> None:
    symbols = random_symbols(k, h, w, density, seed=3)
    ctx = np.asarray(contexts(symbols, groups))
    assert ctx.shape == symbols.shape
    assert np.issubdtype(ctx.dtype, np.integer)
    assert ctx.min() >= 0 and ctx.max() < NUM_CONTEXTS
    # anchors (pass 0) have no decoded neighbour of their own atom: "unknown" same-atom part
    anchors = np.broadcast_to(parity(h, w) == 0, ctx.shape)
    np.testing.assert_array_equal(ctx[anchors] // NUM_ACTIVITY, NUM_SAME - 1)


def test_contexts_use_the_neighbourhood() -> None:
    """Sanity against a degenerate implementation: contexts change with the neighbours."""
    k, groups, h, w = 8, 2, 5, 5
    lonely = np.zeros((k, h, w), dtype=np.int32)
    busy = lonely.copy()
    busy[:, 1:4, 1:4] = 1
    busy[:, 2, 2] = 0
    assert np.asarray(contexts(lonely, groups)).max() == (NUM_SAME - 1) * NUM_ACTIVITY
    # centre position (2,2) is an anchor; (2,3) is not: its 4 neighbours include non-zero anchors
    assert np.asarray(contexts(busy, groups))[0, 2, 3] != np.asarray(contexts(lonely, groups))[0, 2, 3]
    assert np.asarray(contexts(busy, groups))[k - 1, 2, 2] != np.asarray(contexts(lonely, groups))[k - 1, 2, 2]


def test_batched_contexts_equal_per_item() -> None:
    """Training computes contexts on a (B, K, h, w) batch: each item must match its own."""
    batch = np.stack([random_symbols(8, 4, 6, 0.4, seed) for seed in range(3)])
    together = np.asarray(contexts(batch, 4))
    for item, ctx in zip(batch, together):
        np.testing.assert_array_equal(ctx, np.asarray(contexts(item, 4)))
