"""Trainable entropy model of the sparse-code symbols, and its export to static tables.

For atom k at quality q with integer context c (see ``sccodec.context``), a symbol s is
zero-inflated Laplace:

    P(s) = π[q,k,c]·[s == 0] + (1 − π[q,k,c])·Lap(s; b[q,k,a(c)])     (a = activity part of c)

During training s is replaced by s + uniform noise (the usual continuous relaxation), so the
rate is differentiable. The contexts are the checkerboard scheme's (``sccodec.context``).
``tables()`` turns the parameters into that scheme's two static tables (a significance
probability per (q,k,c) and a value distribution per (q,k,a)): what an export without
``--fit-tables`` stores. Shipped models store tables counted from real symbols instead
(``sccodec.train.tables``), for the richer nested scheme.
"""
from __future__ import annotations

import torch
from torch import nn

from sccodec.context import NUM_ACTIVITY, NUM_CONTEXTS, contexts

_MIN_SCALE = 0.05
_MIN_PROB = 1e-9


def _laplace_mass(v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Laplace(0, scale) mass of the unit interval centred on v (v may be non-integer)."""
    m = v.abs()
    near = 1 - 0.5 * (torch.exp(-(0.5 - m).clamp_min(0) / scale) + torch.exp(-(0.5 + m) / scale))
    far = 0.5 * (torch.exp(-(m - 0.5).clamp_min(0) / scale) - torch.exp(-(m + 0.5) / scale))
    return torch.where(m < 0.5, near, far)


class ContextualZeroInflatedLaplace(nn.Module):
    """``groups``: atom groups of the coding order, which the contexts depend on (``sccodec.context``)."""

    def __init__(self, qualities: int, atoms: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.zero_logit = nn.Parameter(torch.full((qualities, atoms, NUM_CONTEXTS), 2.0))
        self.log_scale = nn.Parameter(torch.zeros(qualities, atoms, NUM_ACTIVITY))

    def _params(self, ctx: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, k = ctx.shape[:2]
        flat = ctx.reshape(b, k, -1)
        pi = torch.gather(torch.sigmoid(self.zero_logit[q]), 2, flat).reshape(ctx.shape)
        scale = torch.gather(self.scales()[q], 2, flat % NUM_ACTIVITY).reshape(ctx.shape)
        return pi, scale

    def scales(self) -> torch.Tensor:
        return torch.exp(self.log_scale).clamp_min(_MIN_SCALE)

    def likelihood(self, values: torch.Tensor, hard: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Likelihood of ``values`` (B,K,h,w; noisy or rounded symbols) at levels q (B,), in the
        integer contexts of the rounded symbols ``hard``."""
        ctx = contexts(hard.detach().to(torch.int32).cpu().numpy(), self.groups)
        pi, scale = self._params(torch.from_numpy(ctx).to(values.device, torch.int64), q)
        box = (values.abs() < 0.5).to(values.dtype)
        return (pi * box + (1 - pi) * _laplace_mass(values, scale)).clamp_min(_MIN_PROB)

    @torch.no_grad()
    def tables(self, value_range: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(P(s != 0) as (Q,K,C), P(s = v | s != 0) as (Q,K,A,2R) over v = -R..-1, 1..R)."""
        pi = torch.sigmoid(self.zero_logit.double())
        scales = self.scales().double()
        zero_mass = _laplace_mass(torch.zeros(()), scales)  # (Q,K,A)
        activity = torch.arange(NUM_CONTEXTS) % NUM_ACTIVITY
        p_nonzero = (1 - pi) * (1 - zero_mass[:, :, activity])
        mags = torch.arange(1, value_range + 1, dtype=torch.float64)
        mass = _laplace_mass(mags, scales[..., None])  # (Q,K,A,R)
        # the ±R bins also stand for every larger magnitude (escape codes follow them)
        mass[..., -1] = 0.5 * torch.exp(-(value_range - 0.5) / scales)
        values = torch.cat([mass.flip(-1), mass], dim=-1)
        values = values / values.sum(-1, keepdim=True)
        return p_nonzero.float(), values.float()
