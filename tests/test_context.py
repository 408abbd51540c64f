"""Integer contexts (sccodec.context): causality with respect to the coding order, and range."""
from __future__ import annotations

import numpy as np
import pytest

from sccodec.context import (NUM_ACTIVITY, NUM_CONTEXTS, NUM_SAME, SCHEMES, contexts, parity, phase_positions,
                             scheme_contexts, steps, stepwise_contexts)

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


def step_mask(k: int, groups: int, h: int, w: int, step: tuple[int, int], context: str = "checkerboard") -> np.ndarray:
    """Boolean (K, h, w): the symbols coded at one (phase, group) step."""
    p, g = step
    mask = np.zeros((k, h, w), dtype=bool)
    per = k // groups
    mask[g * per : (g + 1) * per] = SCHEMES[context].phase(h, w) == p
    return mask


@pytest.mark.parametrize(("k", "groups", "h", "w", "density"), SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("context", list(SCHEMES))
def test_contexts_read_only_earlier_coding_steps(k, groups, h, w, density, seed, context) -> None:
    """What the decoder sees (only earlier steps decoded, the rest still 0) gives the same
    flag and value contexts, at every step, as the full array the encoder sees."""
    scheme = SCHEMES[context]
    symbols = random_symbols(k, h, w, density, seed)
    full = scheme_contexts(scheme, symbols, groups)
    decoded = np.zeros(symbols.shape, dtype=bool)
    for step in steps(scheme, groups):
        partial = np.where(decoded, symbols, 0).astype(np.int32)
        here = step_mask(k, groups, h, w, step, context)
        for seen, want, kind in zip(scheme_contexts(scheme, partial, groups), full, ("flag", "value")):
            np.testing.assert_array_equal(seen[here], want[here],
                                          err_msg=f"{kind} context at step {step} reads symbols not decoded yet")
        decoded |= here
    assert decoded.all(), "the coding steps must cover every symbol exactly once"


@pytest.mark.parametrize(("k", "groups", "h", "w", "density"), SHAPES + [(16, 4, 13, 17, 0.2), (8, 4, 11, 6, 0.8)])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("context", list(SCHEMES))
def test_all_steps_at_once_give_the_decoders_step_by_step_contexts(k, groups, h, w, density, seed, context) -> None:
    """The encoder computes every context in one pass over the array; the decoder one coding
    step at a time. Any difference would mis-decode files."""
    symbols = random_symbols(k, h, w, density, seed)
    for fast, reference, kind in zip(scheme_contexts(SCHEMES[context], symbols, groups),
                                     stepwise_contexts(SCHEMES[context], symbols, groups), ("flag", "value")):
        assert fast.dtype == np.int32
        np.testing.assert_array_equal(fast, reference, err_msg=f"{kind} contexts differ")


@pytest.mark.parametrize(("h", "w"), [(5, 7), (1, 9), (9, 1), (1, 1), (2, 2), (13, 17)])
@pytest.mark.parametrize("context", list(SCHEMES))
def test_phase_positions_read_and_write_what_the_phase_masks_do(h, w, context) -> None:
    """The coder reads and writes a phase's symbols through ``PhasePositions`` (a strided slice
    on the lattice schemes); in the order and at the places of the boolean phase mask."""
    scheme = SCHEMES[context]
    phase = scheme.phase(h, w)
    for a in (np.arange(3 * h * w).reshape(3, h, w), np.arange(h * w).reshape(h, w)):  # symbols, and maps
        for p, at in enumerate(phase_positions(scheme, h, w)):
            np.testing.assert_array_equal(at.take(a), a[..., phase == p])
            written, want = np.zeros_like(a), np.zeros_like(a)
            values = -np.arange(a[..., phase == p].size).reshape(a[..., phase == p].shape) - 1
            at.put(written, values)
            want[..., phase == p] = values
            np.testing.assert_array_equal(written, want)


@pytest.mark.parametrize(("k", "groups", "h", "w", "density"), SHAPES)
def test_training_contexts_are_the_checkerboard_coders(k, groups, h, w, density) -> None:
    """Training's vectorised rate proxy must price symbols in the contexts the checkerboard
    coder uses (value context = activity part)."""
    symbols = random_symbols(k, h, w, density, seed=2)
    flag, value = scheme_contexts(SCHEMES["checkerboard"], symbols, groups)
    np.testing.assert_array_equal(contexts(symbols, groups), flag)
    np.testing.assert_array_equal(flag % NUM_ACTIVITY, value)


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("context", list(SCHEMES))
def test_coding_steps_cover_each_symbol_once(groups, context) -> None:
    k, h, w = 8, 3, 5
    order = steps(SCHEMES[context], groups)
    assert len(order) == len(set(order)) == SCHEMES[context].phases * groups
    total = sum(step_mask(k, groups, h, w, s, context).astype(int) for s in order)
    np.testing.assert_array_equal(total, 1)
    assert [p for p, _ in order] == sorted(p for p, _ in order), "phase by phase"


@pytest.mark.parametrize(("k", "groups", "h", "w", "density"), SHAPES)
@pytest.mark.parametrize("context", ["quad", "nested"])
def test_quad_and_nested_context_values_are_in_range(k, groups, h, w, density, context) -> None:
    scheme = SCHEMES[context]
    flag, value = scheme_contexts(scheme, random_symbols(k, h, w, density, seed=3), groups)
    s = scheme.sign_contexts
    assert 0 <= flag.min() and flag.max() < scheme.flag_contexts
    assert 0 <= value.min() and value.max() < scheme.value_contexts * s
    first = np.broadcast_to(scheme.phase(h, w) == 0, flag.shape)  # no decoded neighbour of its own atom
    assert flag[first].max(initial=0) < NUM_ACTIVITY and value[first].max(initial=0) // s < 4
    assert (value[first] % s == 0).all(), "a first-phase symbol has no neighbour sign to go by"


def test_nested_phases_split_the_first_quad_phase() -> None:
    """Phases 0-3 are quad's first phase, itself in quad order at stride 2; 4-6 are quad's later ones."""
    h, w = 9, 10
    nested, quad = SCHEMES["nested"].phase(h, w), SCHEMES["quad"].phase(h, w)
    np.testing.assert_array_equal(nested >= 4, quad > 0)
    np.testing.assert_array_equal(nested[quad > 0], quad[quad > 0] + 3)
    np.testing.assert_array_equal(nested[::2, ::2], quad[: (h + 1) // 2, : (w + 1) // 2])


def test_nested_sign_context_follows_the_neighbours_signs() -> None:
    """The sign context of a later-phase symbol is the sign of its atom's decoded neighbours'
    sum (at distance 2 inside the first quad phase, 1 after), and ignores other atoms."""
    k, groups, h, w = 4, 2, 5, 5
    scheme = SCHEMES["nested"]
    s = scheme.sign_contexts

    def sign_at(symbols, y, x):
        return scheme_contexts(scheme, symbols, groups)[1][0, y, x] % s

    base = np.zeros((k, h, w), dtype=np.int32)
    for value, want in ((-3, 1), (0, 2), (4, 3)):
        near, far = base.copy(), base.copy()
        near[0, 0, 0] = value  # (0, 0) is phase 0, (1, 1) phase 4: neighbours at distance 1
        far[0, 0, 0] = value  # (2, 2) is phase 1: (0, 0) is its neighbour at distance 2
        assert sign_at(near, 1, 1) == want and sign_at(far, 2, 2) == want
    other = base.copy()
    other[1, 0, 0] = -3
    assert sign_at(other, 1, 1) == 2, "another atom's sign counted as this atom's"
    assert sign_at(base, 0, 0) == 0


def test_quad_phases_have_their_own_flag_contexts() -> None:
    """The three later phases see different neighbour sets (diagonals; then rows; then
    columns): their flag contexts must not share tables."""
    k, groups, h, w = 8, 2, 9, 9
    scheme = SCHEMES["quad"]
    phase = np.broadcast_to(scheme.phase(h, w), (k, h, w))
    used = {p: set() for p in range(scheme.phases)}
    for seed, density in ((0, 0.1), (1, 0.4), (2, 0.8)):
        symbols = np.where(np.random.default_rng(seed).random((k, h, w)) < density,
                           np.random.default_rng(seed).integers(1, 30, (k, h, w)), 0).astype(np.int32)
        flag, _ = scheme_contexts(scheme, symbols, groups)
        for p in used:
            used[p] |= set(flag[phase == p].tolist())
    for a in used:
        for b in used:
            assert a == b or not used[a] & used[b], f"phases {a} and {b} share flag contexts"


def test_quad_contexts_see_the_magnitudes_of_decoded_neighbours() -> None:
    """Against a degenerate implementation: a later-phase symbol's contexts grow with the
    magnitude of its atom's decoded neighbours, and ignore other atoms' magnitudes."""
    k, groups, h, w = 4, 2, 4, 4
    scheme = SCHEMES["quad"]
    base = np.zeros((k, h, w), dtype=np.int32)
    small, large, group_mate, other_group = base.copy(), base.copy(), base.copy(), base.copy()
    small[0, 0, 0] = 1  # (0, 0) is phase 0, a decoded neighbour of (1, 1) (phase 1)
    large[0, 0, 0] = 20
    group_mate[1, 0, 0] = 20  # atom 1: same group as atom 0, not the same atom
    other_group[3, 0, 0] = 20  # atom 3: another group
    got = {name: [c[0, 1, 1] for c in scheme_contexts(scheme, s, groups)]
           for name, s in (("small", small), ("large", large), ("mate", group_mate), ("other", other_group))}
    assert got["small"][1] < got["large"][1], "value context ignores the neighbour's magnitude"
    assert got["small"][0] < got["large"][0], "flag context ignores the neighbour's magnitude"
    for name in ("mate", "other"):
        assert got[name][1] < got["small"][1], f"{name}: another atom's magnitude counted as this atom's"


@pytest.mark.parametrize(("k", "groups", "h", "w", "density"), SHAPES)
def test_checkerboard_context_values_are_in_range(k, groups, h, w, density) -> None:
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


@pytest.mark.parametrize("h", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("w", [1, 2, 5, 7, 12])
@pytest.mark.parametrize("context", ["quad", "nested"])
def test_each_phase_is_its_lattice(h, w, context) -> None:
    """The decoder reads each step's contexts on the phase's lattice only: the lattices must
    cover every position once and give the documented order, (even, even), (odd, odd),
    (even, odd), (odd, even), in every tile shape (nested's split of the first phase:
    test_nested_phases_split_the_first_quad_phase)."""
    scheme = SCHEMES[context]
    phases = scheme.phase(h, w)
    covered = np.zeros((h, w), dtype=int)
    for p, (row, col, stride) in enumerate(scheme.lattices):
        on_lattice = np.zeros((h, w), dtype=bool)
        on_lattice[row::stride, col::stride] = True
        covered += on_lattice
        np.testing.assert_array_equal(phases == p, on_lattice, err_msg=f"phase {p}")
    np.testing.assert_array_equal(covered, 1)
    i, j = np.arange(h)[:, None] % 2, np.arange(w)[None, :] % 2
    quad = np.select([(i == 0) & (j == 0), (i == 1) & (j == 1), i == 0], [0, 1, 2], 3)
    np.testing.assert_array_equal(SCHEMES["quad"].phase(h, w), quad)
