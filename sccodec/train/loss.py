"""The variable-rate training objective, and the rate phase-in for revived atoms.

Each sample in a batch draws its own quality level q, so every step trains every rate:
    loss = mean_i [ bpp_i + λ[q_i]·255²·MSE_i + latent_weight·‖y_q − D z‖² ]
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def rd_loss(model: torch.nn.Module, x: torch.Tensor, q: torch.Tensor, latent_weight: float,
            rate_grad: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The loss above and what the progress lines report; ``model`` may be the SCVAE or its DDP wrapper."""
    out = model(x, q, rate_grad)
    pixels = x.shape[-2] * x.shape[-1]
    bpp = -torch.log2(out["likelihoods"]).sum(dim=(1, 2, 3)) / pixels
    mse = (out["x_hat"] - x).pow(2).mean(dim=(1, 2, 3))
    lam = torch.tensor(getattr(model, "module", model).config.lambdas, device=x.device)[q]
    loss = (bpp + lam * 255**2 * mse + latent_weight * out["latent_error"]).mean()
    psnr = (-10 * torch.log10(mse.detach().clamp_min(1e-10))).mean()
    return {"loss": loss, "bpp": bpp.mean().detach(), "psnr": psnr, "nonzero": out["nonzero"].mean().detach(),
            "live_atoms": out["live_atoms"].float()}


@dataclass(frozen=True)
class RatePhaseIn:
    """Revived atoms first learn to be useful, free of rate pressure.

    Atoms that never fire can be revived by checkpoint surgery (re-initialised encoder rows);
    the checkpoint then carries this schedule. The rate term's gradient on their code is 0 for
    ``hold`` steps from ``start_step``, then rises linearly to 1 over ``ramp`` steps. Why: with
    full rate pressure from the start, Adam shrinks the small new encoder rows to nothing
    within a few hundred steps, before the synthesis can learn to use them. Stored in the
    checkpoint so a resumed run keeps it.
    """

    atoms: list[int]
    start_step: int
    hold: int = 1000
    ramp: int = 3000

    def rate_grad(self, step: int, atoms: int) -> torch.Tensor | None:
        """(atoms,) gradient scale of the rate term at this step; None once fully phased in."""
        t = (step - self.start_step - self.hold) / self.ramp
        if t >= 1:
            return None
        grad = torch.ones(atoms)
        grad[self.atoms] = min(1.0, max(0.0, t))
        return grad
