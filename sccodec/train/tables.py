"""Fit the coder's tables to the symbols the trained encoder actually produces.

The parametric zero-inflated Laplace the network trains against is a convenient, smooth
rate proxy, but the real symbol statistics per (quality, atom, context) differ from it, and
the coder may use a richer context scheme than training does (``sccodec.context``). At
export we run the encoder over training photos (never the evaluation set), count
significance flags per flag context and values per value context, and smooth each atom's
counts towards the same context pooled over all atoms (pseudo-counts), so rare
(atom, context) pairs fall back to what the other atoms do there.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sccodec.context import SCHEMES, scheme_contexts, value_index
from sccodec.entropy import SymbolTables
from sccodec.image_io import pad_to_multiple, to_planes
from sccodec.model.config import STRIDE
from sccodec.model.scvae import SCVAE
from sccodec.rdo import fixed_dead_zone
from sccodec.train.data import load_rgb

FLAG_PRIOR = 16.0  # pseudo-counts given to the pooled table per (atom, context)
VALUE_PRIOR = 64.0  # pseudo-counts per value distribution
SIGN_PRIOR = 16.0  # pseudo-counts per sign distribution
DEFAULT_CONTEXT = "nested"


@torch.no_grad()
def symbols_for_fitting(model: SCVAE, x: torch.Tensor, quality_index: int) -> np.ndarray:
    """Padded image (1,3,H,W) -> int32 symbols (K,h,w), rounded with the fixed dead zone.

    Why not the encoder's rate-aware rounding: that needs the tables being fitted."""
    return _fixed_symbols(model, model.analyze(x), quality_index)


def _fixed_symbols(model: SCVAE, y: torch.Tensor, quality_index: int) -> np.ndarray:
    return fixed_dead_zone(model.scaled_symbols(y, quality_index).cpu().numpy(), model.config.value_range)


def count_symbols(model: SCVAE, paths: list[Path], context: str = DEFAULT_CONTEXT,
                  max_side: int = 768) -> tuple[np.ndarray, ...]:
    """(flag totals (Q,K,C), non-zero counts (Q,K,C), value counts (Q,K,V,2R), sign counts
    (Q,K,S,2): negative, positive) over the images; value rows as the coder reads them
    (without the sign context)."""
    c, scheme = model.config, SCHEMES[context]
    r, n_flag, n_value, n_sign = c.value_range, scheme.flag_contexts, scheme.value_contexts, scheme.sign_contexts
    totals = np.zeros((c.qualities, c.atoms, n_flag))
    nonzero = np.zeros_like(totals)
    values = np.zeros((c.qualities, c.atoms, n_value, 2 * r))
    signs = np.zeros((c.qualities, c.atoms, n_sign, 2))
    atom = np.arange(c.atoms)[:, None, None]
    for path in paths:
        img = load_rgb(path)[:, :max_side, :max_side].permute(1, 2, 0).numpy()
        y = model.analyze(torch.from_numpy(to_planes(pad_to_multiple(img, STRIDE))))
        for q in range(c.qualities):
            s = _fixed_symbols(model, y, q)
            flag, value = scheme_contexts(scheme, s, c.groups)
            flat = (atom * n_flag + flag).ravel()
            totals[q] += np.bincount(flat, minlength=c.atoms * n_flag).reshape(c.atoms, -1)
            nz = s != 0
            nonzero[q] += np.bincount(flat[nz.ravel()], minlength=c.atoms * n_flag).reshape(c.atoms, -1)
            vidx = value_index(s[nz], r)  # escapes land in the ±R bins, as in the coder
            nz_atom = np.broadcast_to(atom, s.shape)[nz]
            a = nz_atom * n_value + value[nz] // n_sign
            values[q] += np.bincount(a * 2 * r + vidx, minlength=c.atoms * n_value * 2 * r).reshape(
                c.atoms, n_value, 2 * r)
            b = (nz_atom * n_sign + value[nz] % n_sign) * 2 + (s[nz] > 0)
            signs[q] += np.bincount(b, minlength=c.atoms * n_sign * 2).reshape(c.atoms, n_sign, 2)
    return totals, nonzero, values, signs


def _smoothed(counts: np.ndarray, prior: float, floor: float) -> np.ndarray:
    """Each atom's distributions (last axis) pulled towards all atoms' (axis 1) by ``prior``
    pseudo-counts, so rare (atom, context) pairs fall back to what the other atoms do."""
    pooled = counts.sum(1, keepdims=True) + floor
    pooled /= pooled.sum(-1, keepdims=True)
    return (counts + prior * pooled) / (counts.sum(-1, keepdims=True) + prior)


@torch.no_grad()
def fitted_tables(model: SCVAE, paths: list[Path], context: str = DEFAULT_CONTEXT) -> SymbolTables:
    """The coder's tables for ``context``, fitted to the model's symbols on ``paths``."""
    totals, nonzero, values, signs = count_symbols(model.eval(), paths, context)
    flags = _smoothed(np.stack([totals - nonzero, nonzero], -1), FLAG_PRIOR, 1.0)
    if SCHEMES[context].sign_contexts == 1:
        return SymbolTables(flags[..., 1], _smoothed(values, VALUE_PRIOR, 0.1), model.config.groups, context)
    magnitudes = values + values[..., ::-1]  # both signs of |v| counted together: symmetric rows
    return SymbolTables(flags[..., 1], _smoothed(magnitudes, VALUE_PRIOR, 0.1), model.config.groups, context,
                        _smoothed(signs, SIGN_PRIOR, 1.0)[..., 1])
