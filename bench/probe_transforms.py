"""How fast do the bare transforms learn? A short, cheap probe of g_s(g_a(x)).

    python bench/probe_transforms.py [--steps 300] [--lr 1e-3] [--centre] [--kaiming] [--threads 1]

No bottleneck, no quantisation, no rate: batch 8 of 128² training crops (every 4th photo of the
training split), Adam on the MSE, seed 0. Prints the mean PSNR over a few windows of steps.

Why: the young models of training runs 10-12 (bench/results/training_log.md) were limited by
their transforms, not by the sparse code (unrounded codes decoded no better than rounded ones,
and PSNR was flat across rates), so how many steps the transforms need is what a CPU training
budget runs into. Compare transform designs and recipes with this before a long run.
"""
from __future__ import annotations

import click
import torch
from torch import nn

from sccodec.model.transforms import AnalysisTransform, SynthesisTransform
from sccodec.train.data import PatchSampler, list_images, split_holdout


@click.command()
@click.option("--data", default="../shared/data/train", show_default=True, type=click.Path(file_okay=False, exists=True))
@click.option("--steps", default=300, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--centre", is_flag=True, help="Code x - 0.5 and add 0.5 back.")
@click.option("--kaiming", is_flag=True, help="Kaiming-normal conv weights (LeakyReLU slope 0.1), zero biases.")
@click.option("--gdn", is_flag=True, help="GDN in g_a and inverse GDN in g_s instead of LeakyReLU.")
@click.option("--threads", default=1, show_default=True)
def main(data: str, steps: int, lr: float, centre: bool, kaiming: bool, gdn: bool, threads: int) -> None:
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    g_a, g_s = AnalysisTransform(128, 160), SynthesisTransform(128, 160)
    if gdn:
        for net, inverse in ((g_a, False), (g_s, True)):
            for i, layer in enumerate(net):
                if isinstance(layer, nn.LeakyReLU):
                    net[i] = GDN(128, inverse)
    if kaiming:
        for conv in (m for net in (g_a, g_s) for m in net.modules() if isinstance(m, nn.Conv2d)):
            nn.init.kaiming_normal_(conv.weight, a=0.1)
            nn.init.zeros_(conv.bias)
    sampler = PatchSampler(split_holdout(list_images(data))[0][::4], 128, seed=0)
    opt = torch.optim.Adam([*g_a.parameters(), *g_s.parameters()], lr=lr)
    shift = 0.5 if centre else 0.0
    psnr = []
    for _ in range(steps):
        x = sampler.batch(8)
        mse = (g_s(g_a(x - shift)) + shift - x).pow(2).mean()
        opt.zero_grad()
        mse.backward()
        opt.step()
        psnr.append(-10 * torch.log10(mse.detach()).item())
    windows = [(lo, min(lo + steps // 6, steps)) for lo in range(0, steps, max(1, steps // 6))]
    means = ", ".join(f"{lo}-{hi}: {sum(psnr[lo:hi]) / max(1, hi - lo):.2f}" for lo, hi in windows if hi > lo)
    click.echo(f"lr {lr:g}, centre {centre}, kaiming {kaiming}, gdn {gdn}: mean PSNR dB over steps {means}")


class GDN(nn.Module):
    """Generalised divisive normalisation (Ballé et al.), or its inverse: x / or * sqrt(β + Γ·x²).

    β and Γ are kept non-negative by squaring (β ≥ 1e-6); Γ starts at 0.1·I, β at 1.
    """

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_root = nn.Parameter(torch.ones(channels))
        self.gamma_root = nn.Parameter((0.1 * torch.eye(channels) + 2**-18).sqrt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma_root.pow(2)[:, :, None, None]
        norm = torch.sqrt(nn.functional.conv2d(x * x, gamma, self.beta_root.pow(2) + 1e-6))
        return x * norm if self.inverse else x / norm


if __name__ == "__main__":
    main()
