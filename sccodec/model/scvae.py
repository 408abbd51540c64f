"""The SC-VAE: image -> latent -> sparse code -> integer symbols, and back.

    x ─g_a─▶ y ─×gain[q]─▶ y_q ─LISTA(θ[q])─▶ z ─÷step[q]─▶ s ─round*─▶ symbols   (*dead zone at the encoder)
    symbols ─×step[q]─▶ ẑ ─D─▶ ŷ_q ─×inv_gain[q]─▶ ŷ ─g_s─▶ x̂

One model serves every quality level q: a level only selects a gain vector on the latent,
per-atom quantiser steps (to which the LISTA thresholds are tied) and its own entropy tables,
so ten levels cost one set of transforms.
"""
from __future__ import annotations

import math
import torch
from torch import nn

from sccodec.model.config import ModelConfig, open_atoms
from sccodec.model.entropy_model import ContextualZeroInflatedLaplace
from sccodec.model.lista import LISTA
from sccodec.model.transforms import AnalysisTransform, SynthesisTransform

MAX_THRESHOLD = 1.5  # LISTA threshold bound, in quantiser steps


class SCVAE(nn.Module):
    """The sparse-coding VAE: transforms, LISTA and dictionary, level ladder, trainable rate model."""

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        c = config
        self.config = c
        self.g_a = AnalysisTransform(c.channels, c.latent, c.nonlinearity)
        self.g_s = SynthesisTransform(c.channels, c.latent, c.nonlinearity, c.synthesis_blocks)
        self.lista = LISTA(c.latent, c.atoms, c.lista_steps)
        # Levels start spread apart (step ratio sqrt(2) per level, as high-rate theory gives
        # for λ doubling); started equal, the levels collapse together in training.
        spread = torch.tensor([0.5 * math.log(2) * (i - (c.qualities - 1)) for i in range(c.qualities)])
        log_gain = spread[:, None].repeat(1, c.latent) + math.log(30.0)
        ladder = {"log_gain": log_gain, "log_inv_gain": -log_gain, "log_step": torch.zeros(c.qualities, c.atoms)}
        # fixed_ladder: buffers under the same names, so the weights file keeps its layout. Why:
        # learned, the rate term pushes every level's steps up and its gains down (the effective
        # step ratio top/bottom can fall from 22x to 2.4x within a few thousand steps, so all levels
        # code at nearly the same PSNR) and inflates the steps of the atoms the top level has
        # just opened (to many times the others': they never fire). The straight-through rounding hides
        # the distortion those coarser steps cause, so nothing pushes back.
        for name, value in ladder.items():
            if c.fixed_ladder:
                self.register_buffer(name, value)
            else:
                setattr(self, name, nn.Parameter(value))
        # Per level and atom, as a fraction of that level's step (see _thresholds).
        self.threshold_logit = nn.Parameter(torch.full((c.qualities, c.atoms), -2.0))
        self.entropy = ContextualZeroInflatedLaplace(c.qualities, c.atoms, c.groups)
        self.bf16_transforms = False  # training speed switch; coding always runs in fp32
        # torch.compile'd g_a/g_s for training steps (compile_transforms); a plain dict, so the
        # compiled wrappers are not submodules and the state dict keeps its keys
        self._compiled: dict[str, nn.Module] = {}

    def compile_transforms(self) -> None:
        """Train through torch.compile'd transforms; evaluation and coding stay eager.

        Why: a third of an eager CPU training step is GDN's element-wise passes (x², √, ÷ and
        their gradients, profiled at 256² crops), which the compiler fuses (steps per second:
        ``bench/train_speed.py``). Eager in eval mode: validation and coding see many image
        sizes, and each would compile anew.
        """
        self._compiled = {name: torch.compile(getattr(self, name), dynamic=False) for name in ("g_a", "g_s")}

    def uncompile_transforms(self) -> None:
        self._compiled = {}

    def _transform(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Run the conv transform ``name``, optionally under bf16 autocast; LISTA and rates stay fp32."""
        net = self._compiled.get(name) if self.training else None
        if net is None:
            net = getattr(self, name)
        x = x.contiguous(memory_format=torch.channels_last)  # a no-op for training batches
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16_transforms):
            return net(x).float()

    # -- pieces shared by training and coding ------------------------------------------
    def _per_level(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gain = torch.exp(self.log_gain[q])[:, :, None, None]
        inv_gain = torch.exp(self.log_inv_gain[q])[:, :, None, None]
        step = torch.exp(self.log_step[q])[:, :, None, None]
        return gain, inv_gain, step

    def scaled_code(self, x: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image (B,3,H,W), H and W multiples of 16 -> (real-valued symbols s, y_q)."""
        return self._code(self._transform("g_a", x), q)

    def latent_code(self, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Latent y (B,M,h,w) at levels q (B,) -> real-valued symbols s (B,K,h,w): the runtime's
        ``code`` graph (``sccodec.train.graphs``)."""
        return self._code(y, q)[0]

    def _code(self, y: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent y -> (real-valued symbols s, y_q = gain·y)."""
        gain, _, step = self._per_level(q)
        y_q = y * gain
        z = self.lista(y_q, self._thresholds(q, step), self.atom_mask(q))
        return z / step, y_q

    def atom_mask(self, q: torch.Tensor) -> torch.Tensor | None:
        """(B,K,1,1) 0/1: the atoms level q may use, or None when every level may use all.

        Why nested: with every atom open at every level, the low levels' rate term shrinks the
        encoder rows of all but a few dozen atoms until they never fire, and the high levels are
        left with a dense code that saturates (at 28.5 dB on Kodak for ``scvae-base``). An
        atom closed at the low levels is never coded there, so only the levels that can afford
        it shape it. The coder needs no change: a closed atom's symbols are always 0.
        """
        c = self.config
        if not c.nested_atoms:
            return None
        budget = open_atoms(c, q)
        return (torch.arange(c.atoms, device=q.device)[None, :] < budget[:, None]).float()[:, :, None, None]

    def _thresholds(self, q: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """LISTA thresholds tied to the quantiser step, so one threshold shape serves every level.

        Bounded by MAX_THRESHOLD steps: with an unbounded threshold the rate term pushes most
        atoms past 3 steps, where they never fire, get no gradient and stay dead (the code becomes
        dense over a few dozen atoms). The bound stops the threshold alone from killing an atom;
        shrinking encoder rows still can. Per level, so that high qualities may use more atoms.
        """
        return MAX_THRESHOLD * torch.sigmoid(self.threshold_logit[q])[:, :, None, None] * step

    def synthesis_input(self, symbols: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Symbols (B,K,h,w) at levels q -> y_hat (B,M,h,w): dictionary, then the level's inverse gain."""
        _, inv_gain, step = self._per_level(q)
        return self.lista.reconstruct(symbols * step) * inv_gain

    def synthesize(self, symbols: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """(Possibly straight-through) symbols (B,K,h,w) -> image (B,3,16h,16w), unclamped."""
        return self._transform("g_s", self.synthesis_input(symbols, q))

    # -- training ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, q: torch.Tensor, rate_grad: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``rate_grad`` (K,) scales, per atom, the rate term's gradient on the code (not its value,
        nor the entropy model's gradient): 0 lets newly revived atoms learn to be useful first."""
        s, y_q = self.scaled_code(x, q)
        hard = torch.round(s)
        coded = s if rate_grad is None else torch.lerp(s.detach(), s, rate_grad[None, :, None, None])
        likelihoods = self.symbol_likelihoods(coded + torch.empty_like(s).uniform_(-0.5, 0.5), hard, q)
        _, _, step = self._per_level(q)
        latent_error = (self.lista.reconstruct(s * step) - y_q).pow(2).mean(dim=(1, 2, 3))
        x_hat = self.synthesize(s + (hard - s).detach(), q)
        return {"x_hat": x_hat, "likelihoods": likelihoods, "latent_error": latent_error,
                "nonzero": (hard != 0).float().mean(dim=(1, 2, 3)),
                "live_atoms": (hard != 0).any(dim=3).any(dim=2).any(dim=0).sum()}

    def symbol_likelihoods(self, values: torch.Tensor, hard: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Likelihood of ``values`` (noisy or rounded symbols) in the integer contexts of ``hard``."""
        return self.entropy.likelihood(values, hard, q)

    # -- coding (batch 1; sccodec.model.torch_model adapts these to the codec) ---------------
    @torch.no_grad()
    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        """Padded image (1,3,H,W) -> latent y; shared by every quality level (rate search)."""
        return self._transform("g_a", x)

    @torch.no_grad()
    def scaled_symbols(self, y: torch.Tensor, quality_index: int) -> torch.Tensor:
        """Latent y (1,M,h,w) -> real-valued symbols s (K,h,w), before any rounding (the coder rounds)."""
        return self._code(y, torch.tensor([quality_index], device=y.device))[0][0]

    @torch.no_grad()
    def decode_symbols(self, symbols: torch.Tensor, quality_index: int) -> torch.Tensor:
        """Symbols (K,h,w) -> image (1,3,16h,16w) clamped to [0, 1]."""
        q = torch.tensor([quality_index], device=symbols.device)
        return self.synthesize(symbols[None].float(), q).clamp_(0, 1)
