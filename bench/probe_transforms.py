"""How fast do the bare transforms learn? A short, cheap probe of g_s(g_a(x)).

    python bench/probe_transforms.py [--steps 300] [--lr 1e-3] [--centre] [--kaiming] [--threads 1]

No bottleneck, no quantisation, no rate: batch 8 of 128² training crops (every 4th photo of the
training split), Adam on the MSE, seed 0. Prints the mean PSNR over a few windows of steps.

Why: young models are limited by their transforms, not by the sparse code (unrounded codes
decode no better than rounded ones, and PSNR is flat across rates; docs/training.md), so how
many steps the transforms need is what a CPU training budget runs into. Compare transform designs and recipes with this before a long run.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from sccodec.model.transforms import NONLINEARITIES, AnalysisTransform, SynthesisTransform
from sccodec.train.data import PatchSampler, list_images, split_holdout


def main(data: str, steps: int, lr: float, centre: bool, kaiming: bool, nonlinearity: str, threads: int) -> None:
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    g_a, g_s = AnalysisTransform(128, 160, nonlinearity), SynthesisTransform(128, 160, nonlinearity)
    if kaiming:
        for conv in (m for net in (g_a, g_s) for m in net.modules() if isinstance(m, nn.Conv2d)):
            nn.init.kaiming_normal_(conv.weight, a=0.1)
            nn.init.zeros_(conv.bias)
    sampler = PatchSampler(split_holdout(list_images(data))[0][::4], 128, seed=0)
    opt = torch.optim.Adam([*g_a.parameters(), *g_s.parameters()], lr=lr)
    shift = 0.5 if centre else 0.0
    psnr = []
    start = time.perf_counter()
    for _ in range(steps):
        x = sampler.batch(8)
        mse = (g_s(g_a(x - shift)) + shift - x).pow(2).mean()
        opt.zero_grad()
        mse.backward()
        opt.step()
        psnr.append(-10 * torch.log10(mse.detach()).item())
    windows = [(lo, min(lo + steps // 6, steps)) for lo in range(0, steps, max(1, steps // 6))]
    means = ", ".join(f"{lo}-{hi}: {sum(psnr[lo:hi]) / max(1, hi - lo):.2f}" for lo, hi in windows if hi > lo)
    seconds = (time.perf_counter() - start) / steps  # crops included, as in training
    print(f"lr {lr:g}, centre {centre}, kaiming {kaiming}, {nonlinearity}: mean PSNR dB over steps {means}; "
               f"{seconds * 1000:.0f} ms per step on {threads} thread(s)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/train")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--centre", action="store_true", help="code x - 0.5 and add 0.5 back")
    ap.add_argument("--kaiming", action="store_true", help="Kaiming-normal conv weights (LeakyReLU slope 0.1), zero biases")
    ap.add_argument("--nonlinearity", choices=NONLINEARITIES, default="leaky")
    ap.add_argument("--threads", type=int, default=1)
    main(**vars(ap.parse_args()))
