"""Kodak-free validation: the held-out slice of the training folder, at every quality level.

    held-out photos ─centre crop─▶ model.forward(x, q) for each q ─▶ rate of the *rounded*
    symbols under the training entropy model (not the noisy training proxy; a real file's
    fitted quad tables, escapes and headers differ a little) and PSNR of the decoded crop

Training watches this instead of Kodak so that no decision made during training ever looks at
the evaluation set (BENCHMARK.md).
"""
from __future__ import annotations

from pathlib import Path

import torch

from sccodec.model.scvae import SCVAE
from sccodec.train.data import load_rgb


def load_validation(paths: list[Path], crop: int = 256) -> torch.Tensor:
    """Centre crops (N,3,crop,crop) of the held-out photos that are large enough."""
    crops = []
    for path in paths:
        im = load_rgb(path)
        h, w = im.shape[1:]
        if min(h, w) < crop:
            continue
        top, left = (h - crop) // 2, (w - crop) // 2
        crops.append(im[:, top : top + crop, left : left + crop].float() / 255)
    return torch.stack(crops) if crops else torch.empty(0, 3, crop, crop)


@torch.no_grad()
def validate(model: SCVAE, images: torch.Tensor) -> dict:
    """Mean bpp, PSNR and atoms in use (firing at >= 0.1% of positions) per level, and the mean
    RD loss over levels (lower is better)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    levels, losses = [], []
    for qi, lam in enumerate(model.config.lambdas):
        bpp_sum = psnr_sum = loss_sum = 0.0
        fired = torch.zeros(model.config.atoms)
        positions = 0
        for x in images.split(4):
            x = x.to(device)
            q = torch.full((x.shape[0],), qi, device=device)
            s, _ = model.scaled_code(x, q)
            hard = torch.round(s)
            fired += (hard != 0).sum(dim=(0, 2, 3)).cpu()
            positions += hard[:, 0].numel()
            bits = -torch.log2(model.symbol_likelihoods(hard, hard, q)).sum(dim=(1, 2, 3))
            bpp = bits / (x.shape[-2] * x.shape[-1])
            mse = (model.synthesize(hard, q).clamp(0, 1) - x).pow(2).mean(dim=(1, 2, 3))
            bpp_sum += bpp.sum().item()
            psnr_sum += (-10 * torch.log10(mse.clamp_min(1e-10))).sum().item()
            loss_sum += (bpp + lam * 255**2 * mse).sum().item()
        n = max(1, images.shape[0])
        atoms = int((fired >= 0.001 * max(1, positions)).sum())
        levels.append({"bpp": round(bpp_sum / n, 4), "psnr": round(psnr_sum / n, 3), "atoms": atoms})
        losses.append(loss_sum / n)
    model.train(was_training)
    return {"images": images.shape[0], "loss": round(sum(losses) / len(losses), 4), "levels": levels}
