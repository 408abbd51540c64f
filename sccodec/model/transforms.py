"""Analysis and synthesis transforms (image <-> latent y, stride 16).

Why these choices: conv + PixelShuffle upsampling in the synthesis, because transposed
convolutions run about 3x slower on CPUs. The nonlinearity is a model option: GDN / inverse GDN
(``"gdn"``, the default model's) or LeakyReLU (``"leaky"``, the older ``scvae-base``'s). On a
probe of how fast the bare transforms learn natural crops from scratch
(``bench/probe_transforms.py``: batch 8 of 128² crops, mean PSNR over steps 250-300) GDN reaches
19.0 dB at lr 1e-4 against 16.3 / 16.9 dB for LeakyReLU at lr 1e-3 / 1e-4, for about 25% more
time per step.
"""
from __future__ import annotations


import torch
from torch import nn

from sccodec.model.config import synthesis_margin


class Conv3x3(nn.Conv2d):
    """3x3, stride 1, padding 1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 3, padding=1)


class UpConv(nn.Sequential):
    """Conv3x3 to 4x the channels, then a factor-2 pixel shuffle."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(Conv3x3(cin, cout * 4), nn.PixelShuffle(2))


def _down(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


NONLINEARITIES = ("leaky", "gdn")


class GDN(nn.Module):
    """Generalised divisive normalisation (Ballé et al.) or its inverse: x ÷ or × sqrt(β + Γ·x²).

    β and Γ are kept non-negative by squaring (β ≥ 1e-6); Γ starts at 0.1·I, β at 1. Train it
    with a low learning rate (1e-4): inverse GDN diverged at 1e-3 in the calibration runs.
    """

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_root = nn.Parameter(torch.ones(channels))
        self.gamma_root = nn.Parameter((0.1 * torch.eye(channels) + 2**-18).sqrt())

    def gamma_beta(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Γ, β) from their stored roots: what every form of this layer computes with."""
        return self.gamma_root.pow(2), self.beta_root.pow(2) + 1e-6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.gamma_beta()
        norm = torch.sqrt(nn.functional.conv2d(x * x, gamma[:, :, None, None], beta))
        return x * norm if self.inverse else x / norm


def _act(kind: str, channels: int, inverse: bool) -> nn.Module:
    if kind not in NONLINEARITIES:
        raise ValueError(f"unknown nonlinearity {kind!r} (known: {', '.join(NONLINEARITIES)})")
    return GDN(channels, inverse) if kind == "gdn" else nn.LeakyReLU(0.1)


class AnalysisTransform(nn.Sequential):
    """g_a: RGB in [0, 1] (B,3,H,W) -> latent y (B,M,H/16,W/16)."""

    def __init__(self, n: int, m: int, nonlinearity: str = "leaky") -> None:
        super().__init__(
            _down(3, n), _act(nonlinearity, n, False),
            _down(n, n), _act(nonlinearity, n, False),
            _down(n, n), _act(nonlinearity, n, False),
            _down(n, m),
        )


class ResidualBlock(nn.Module):
    """x + conv(leaky(conv(x))), the last conv zero-initialised: a new block is the identity.

    Why zero: blocks are grown into an already-trained synthesis (``sccodec train
    --synthesis-blocks``), which must start exactly where it was and only then learn to use them.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(Conv3x3(channels, channels), nn.LeakyReLU(0.1), Conv3x3(channels, channels))
        nn.init.zeros_(self.body[2].weight)
        nn.init.zeros_(self.body[2].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SynthesisTransform(nn.Sequential):
    """g_s: latent y_hat (B,M,h,w) -> RGB (B,3,16h,16w), mirror of g_a.

        y_hat ─up─IGDN─▶ [blocks] ─up─IGDN─▶ [blocks] ─up─IGDN─▶ ─up─▶ x_hat
                  (1/8 scale)          (1/4 scale)

    ``blocks`` residual blocks after the first two upsamplings, where they are cheap (a block at
    1/4 scale costs about a third of the plain synthesis' multiply-adds, one at 1/8 a twelfth).
    Kept in ``refine`` beside the plain layers, so a model without them has the same keys as before;
    ``refine`` is then the Sequential's last child, so run the transform through ``forward`` only
    (``self[i]`` for i < ``self.layers`` are the plain layers).
    """

    REFINED = (1, 3)  # indices of the layers the refinement follows

    def __init__(self, n: int, m: int, nonlinearity: str = "leaky", blocks: int = 0) -> None:
        super().__init__(
            UpConv(m, n), _act(nonlinearity, n, True),
            UpConv(n, n), _act(nonlinearity, n, True),
            UpConv(n, n), _act(nonlinearity, n, True),
            UpConv(n, 3),
        )
        self.layers = len(self)
        self.blocks = blocks
        if blocks:
            self.refine = nn.ModuleList(nn.Sequential(*(ResidualBlock(n) for _ in range(blocks)))
                                        for _ in self.REFINED)

    def forward(self, x: torch.Tensor, layers: int | None = None) -> torch.Tensor:
        """``layers``: run only the first that many plain layers (and their refinements)."""
        if layers is not None and not 0 <= layers <= self.layers:
            raise ValueError(f"the synthesis has {self.layers} layers, not {layers}")
        for i in range(self.layers if layers is None else layers):
            x = self[i](x)
            if self.blocks and i in self.REFINED:
                x = self.refine[self.REFINED.index(i)](x)
        return x

    @property
    def margin(self) -> int:
        """Latent positions of neighbouring symbols a pixel depends on (tiled decoding reads them)."""
        return synthesis_margin(self.blocks)
