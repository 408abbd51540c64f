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
from sccodec.image_io import pad_to_multiple, to_tensor
from sccodec.model.scvae import SCVAE, STRIDE
from sccodec.train.data import load_rgb

FLAG_PRIOR = 16.0  # pseudo-counts given to the pooled table per (atom, context)
VALUE_PRIOR = 64.0  # pseudo-counts per value distribution
DEFAULT_CONTEXT = "quad"


def count_symbols(model: SCVAE, paths: list[Path], context: str = DEFAULT_CONTEXT,
                  max_side: int = 768) -> tuple[np.ndarray, ...]:
    """(flag totals (Q,K,C), non-zero counts (Q,K,C), value counts (Q,K,V,2R)) over the images."""
    c, scheme = model.config, SCHEMES[context]
    r, n_flag, n_value = c.value_range, scheme.flag_contexts, scheme.value_contexts
    totals = np.zeros((c.qualities, c.atoms, n_flag))
    nonzero = np.zeros_like(totals)
    values = np.zeros((c.qualities, c.atoms, n_value, 2 * r))
    atom = np.arange(c.atoms)[:, None, None]
    for path in paths:
        img = load_rgb(path)[:, :max_side, :max_side].permute(1, 2, 0).numpy()
        y = model.analyze(pad_to_multiple(to_tensor(img), STRIDE))
        for q in range(c.qualities):
            s = model.quantize(y, q).numpy()
            flag, value = scheme_contexts(scheme, s, c.groups)
            flat = (atom * n_flag + flag).ravel()
            totals[q] += np.bincount(flat, minlength=c.atoms * n_flag).reshape(c.atoms, -1)
            nz = s != 0
            nonzero[q] += np.bincount(flat[nz.ravel()], minlength=c.atoms * n_flag).reshape(c.atoms, -1)
            vidx = value_index(s[nz], r)  # escapes land in the ±R bins, as in the coder
            a = np.broadcast_to(atom, s.shape)[nz] * n_value + value[nz]
            values[q] += np.bincount(a * 2 * r + vidx, minlength=c.atoms * n_value * 2 * r).reshape(
                c.atoms, n_value, 2 * r)
    return totals, nonzero, values


@torch.no_grad()
def fitted_tables(model: SCVAE, paths: list[Path], context: str = DEFAULT_CONTEXT) -> SymbolTables:
    """The coder's tables for ``context``, fitted to the model's symbols on ``paths``."""
    totals, nonzero, values = count_symbols(model.eval(), paths, context)
    pooled_p = (nonzero.sum(1, keepdims=True) + 1) / (totals.sum(1, keepdims=True) + 2)
    pooled_v = values.sum(1, keepdims=True) + 0.1
    pooled_v /= pooled_v.sum(-1, keepdims=True)
    p = (nonzero + FLAG_PRIOR * pooled_p) / (totals + FLAG_PRIOR)
    v = (values + VALUE_PRIOR * pooled_v) / (values.sum(-1, keepdims=True) + VALUE_PRIOR)
    return SymbolTables(p, v, model.config.groups, context)
