"""Fit the coder's tables to the symbols the trained encoder actually produces.

The parametric zero-inflated Laplace the network trains against is a convenient, smooth
rate proxy, but the real symbol statistics per (quality, atom, context) differ from it.
At export we run the encoder over training photos (never the evaluation set), count
significance flags per context and values per activity level, and blend the counts with
the parametric tables as a prior (pseudo-counts), so rare contexts fall back to the model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sccodec.context import NUM_ACTIVITY, NUM_CONTEXTS, contexts
from sccodec.entropy import value_index
from sccodec.image_io import pad_to_multiple, to_tensor
from sccodec.model.scvae import SCVAE, STRIDE
from sccodec.train.data import load_rgb

FLAG_PRIOR = 16.0  # pseudo-counts given to the parametric table per context
VALUE_PRIOR = 64.0  # pseudo-counts per value distribution


def count_symbols(model: SCVAE, paths: list[Path], max_side: int = 768) -> tuple[np.ndarray, ...]:
    """(flag totals (Q,K,C), non-zero counts (Q,K,C), value counts (Q,K,A,2R)) over the images."""
    c = model.config
    r = c.value_range
    totals = np.zeros((c.qualities, c.atoms, NUM_CONTEXTS))
    nonzero = np.zeros_like(totals)
    values = np.zeros((c.qualities, c.atoms, NUM_ACTIVITY, 2 * r))
    atom = np.arange(c.atoms)[:, None, None]
    for path in paths:
        img = load_rgb(path)[:, :max_side, :max_side].permute(1, 2, 0).numpy()
        y = model.analyze(pad_to_multiple(to_tensor(img), STRIDE))
        for q in range(c.qualities):
            s = model.quantize(y, q).numpy()
            ctx = contexts(s, c.groups)
            flat = (atom * NUM_CONTEXTS + ctx).ravel()
            totals[q] += np.bincount(flat, minlength=c.atoms * NUM_CONTEXTS).reshape(c.atoms, -1)
            nz = s != 0
            nonzero[q] += np.bincount(flat[nz.ravel()], minlength=c.atoms * NUM_CONTEXTS).reshape(c.atoms, -1)
            vidx = value_index(s[nz], r)  # escapes land in the ±R bins, as in the coder
            a = np.broadcast_to(atom, s.shape)[nz] * NUM_ACTIVITY + ctx[nz] % NUM_ACTIVITY
            values[q] += np.bincount(a * 2 * r + vidx, minlength=c.atoms * NUM_ACTIVITY * 2 * r).reshape(
                c.atoms, NUM_ACTIVITY, 2 * r)
    return totals, nonzero, values


@torch.no_grad()
def fitted_tables(model: SCVAE, paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables like ``model.entropy.tables`` but fitted to real symbol counts."""
    p_param, v_param = (t.double().numpy() for t in model.entropy.tables(model.config.value_range))
    totals, nonzero, values = count_symbols(model.eval(), paths)
    p = (nonzero + FLAG_PRIOR * p_param) / (totals + FLAG_PRIOR)
    v = (values + VALUE_PRIOR * v_param) / (values.sum(-1, keepdims=True) + VALUE_PRIOR)
    return torch.from_numpy(p).float(), torch.from_numpy(v).float()
