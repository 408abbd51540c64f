"""The SC-VAE: image -> latent -> sparse code -> integer symbols, and back.

    x ─g_a─▶ y ─×gain[q]─▶ y_q ─LISTA(θ[q])─▶ z ─÷step[q]─▶ s ─round*─▶ symbols   (*dead zone at the encoder)
    symbols ─×step[q]─▶ ẑ ─D─▶ ŷ_q ─×inv_gain[q]─▶ ŷ ─g_s─▶ x̂

One model serves every quality level q (../shared/DESIGN.md principle 6): a level only selects a gain
vector on the latent, per-atom quantiser steps (to which the LISTA thresholds are tied) and
its own entropy tables.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from sccodec.context import contexts
from sccodec.entropy import MAX_MAGNITUDE_OVER_RANGE
from sccodec.errors import ModelMismatchError
from sccodec.model.entropy_model import ContextualZeroInflatedLaplace
from sccodec.model.lista import LISTA
from sccodec.model.transforms import AnalysisTransform, SynthesisTransform

STRIDE = 16
MAX_THRESHOLD = 1.5  # LISTA threshold bound, in quantiser steps
# The encoder codes |s| < ZERO_THRESHOLD as 0 (a dead zone; plain rounding would be 0.5): a ±1
# costs more bits than the error it removes near the rounding boundary. Encoder-side only:
# decoders and files are unchanged. Measured in training_log.md ("Dead-zone quantisation").
ZERO_THRESHOLD = 0.58


def dead_zone_round(s: torch.Tensor, zero_threshold: float = ZERO_THRESHOLD) -> torch.Tensor:
    """Round to the nearest integer, except that |s| < zero_threshold becomes 0."""
    return torch.where(s.abs() < zero_threshold, torch.zeros_like(s), torch.round(s))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters; stored in the weights sidecar."""

    channels: int = 128  # N, transform width
    latent: int = 160  # M, latent channels
    atoms: int = 256  # K, dictionary size
    lista_steps: int = 4  # T
    groups: int = 4  # atom groups in the coding order (sccodec.context)
    value_range: int = 31  # R: tables cover |symbol| <= R; larger values use escape codes
    # Level q (0-based) may use only the first ceil(K·(q+1)/Q) atoms (see SCVAE.atom_mask).
    nested_atoms: bool = False
    # Per-level gains and steps fixed to the initial ladder instead of learned (see SCVAE.__init__).
    fixed_ladder: bool = False
    nonlinearity: str = "leaky"  # of the transforms: "leaky" or "gdn" (sccodec.model.transforms)
    synthesis_blocks: int = 0  # residual blocks per refined stage of g_s (SynthesisTransform)
    # rate-distortion trade-off per quality level (loss = bpp + λ·255²·MSE), low to high
    lambdas: tuple[float, ...] = field(
        default=(0.00045, 0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18)
    )

    @property
    def qualities(self) -> int:
        return len(self.lambdas)

    def to_dict(self) -> dict:
        """Fields added after the first weights format are left out at their default, so a model
        without the feature keeps its bytes (and weights hash) and older sccodec versions read it."""
        return {k: v for k, v in asdict(self).items() if not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ModelMismatchError(f"a model with architecture fields this sccodec does not know "
                                     f"({', '.join(sorted(unknown))}): made by a newer sccodec?")
        d = dict(d)
        d["lambdas"] = tuple(d["lambdas"])
        return cls(**d)


#: ModelConfig fields added after the first weights format, with their (omitted) defaults.
_LATER_FIELDS = {"synthesis_blocks": 0}


class SCVAE(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        c = config
        self.config = c
        self.g_a = AnalysisTransform(c.channels, c.latent, c.nonlinearity)
        self.g_s = SynthesisTransform(c.channels, c.latent, c.nonlinearity, c.synthesis_blocks)
        self.lista = LISTA(c.latent, c.atoms, c.lista_steps)
        # Levels start spread apart (step ratio sqrt(2) per level, as high-rate theory gives
        # for λ doubling); the calibration run found levels collapse together otherwise.
        spread = torch.tensor([0.5 * math.log(2) * (i - (c.qualities - 1)) for i in range(c.qualities)])
        log_gain = spread[:, None].repeat(1, c.latent) + math.log(30.0)
        ladder = {"log_gain": log_gain, "log_inv_gain": -log_gain, "log_step": torch.zeros(c.qualities, c.atoms)}
        # fixed_ladder: buffers under the same names, so the weights file keeps its layout. Why:
        # learned, the rate term pushed every level's steps up and its gains down (effective step
        # ratio top/bottom fell from 22x to 2.4x in 7k steps of training run 11, so all levels
        # coded at nearly the same PSNR) and inflated the steps of the atoms the top level had
        # just opened (14x the others': they never fired). The straight-through rounding hides
        # the distortion those coarser steps cause, so nothing pushed back.
        for name, value in ladder.items():
            if c.fixed_ladder:
                self.register_buffer(name, value)
            else:
                setattr(self, name, nn.Parameter(value))
        # Per level and atom, as a fraction of that level's step (see _thresholds).
        self.threshold_logit = nn.Parameter(torch.full((c.qualities, c.atoms), -2.0))
        self.entropy = ContextualZeroInflatedLaplace(c.qualities, c.atoms)
        self.bf16_transforms = False  # training speed switch; coding always runs in fp32
        # torch.compile'd g_a/g_s for training steps (compile_transforms); a plain dict, so the
        # compiled wrappers are not submodules and the state dict keeps its keys
        self._compiled: dict[str, nn.Module] = {}

    def compile_transforms(self) -> None:
        """Train through torch.compile'd transforms; evaluation and coding stay eager.

        Why: a third of an eager CPU training step was GDN's element-wise passes (x², √, ÷ and
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

    def _code(self, y: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent y -> (real-valued symbols s, y_q = gain·y)."""
        gain, _, step = self._per_level(q)
        y_q = y * gain
        z = self.lista(y_q, self._thresholds(q, step), self.atom_mask(q))
        return z / step, y_q

    def atom_mask(self, q: torch.Tensor) -> torch.Tensor | None:
        """(B,K,1,1) 0/1: the atoms level q may use, or None when every level may use all.

        Why nested: with every atom open at every level, the low levels' rate term shrank the
        encoder rows of all but 34 atoms until they never fired, and the high levels were left
        with a dense 34-channel code that saturated at 28.5 dB on Kodak (training_log.md). An
        atom closed at the low levels is never coded there, so only the levels that can afford
        it shape it. The coder needs no change: a closed atom's symbols are always 0.
        """
        c = self.config
        if not c.nested_atoms:
            return None
        budget = ((q + 1) * c.atoms + c.qualities - 1) // c.qualities
        return (torch.arange(c.atoms, device=q.device)[None, :] < budget[:, None]).float()[:, :, None, None]

    def _thresholds(self, q: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """LISTA thresholds tied to the quantiser step (BENCHMARK.md calibration advice).

        Bounded by MAX_THRESHOLD steps: with an unbounded threshold the rate term pushed 222 of
        256 atoms past 3 steps, where they never fire, get no gradient and stay dead (measured on
        the first shipped model, which became a dense 34-channel code). The bound stops the
        threshold alone from killing an atom; shrinking encoder rows still can (the atoms revived
        in training run 5 died that way). Per level, so that high qualities may use more atoms.
        """
        return MAX_THRESHOLD * torch.sigmoid(self.threshold_logit[q])[:, :, None, None] * step

    def synthesize(self, symbols: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """(Possibly straight-through) symbols (B,K,h,w) -> image (B,3,16h,16w), unclamped."""
        _, inv_gain, step = self._per_level(q)
        y_hat = self.lista.reconstruct(symbols * step) * inv_gain
        return self._transform("g_s", y_hat)

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
        ctx = contexts(hard.detach().to(torch.int32).cpu().numpy(), self.config.groups)
        return self.entropy.likelihood(values, torch.from_numpy(ctx).to(values.device, torch.int64), q)

    # -- coding (batch 1) ------------------------------------------------------------------
    @torch.no_grad()
    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        """Padded image (1,3,H,W) -> latent y; shared by every quality level (rate search)."""
        return self._transform("g_a", x)

    @torch.no_grad()
    def scaled_symbols(self, y: torch.Tensor, quality_index: int) -> torch.Tensor:
        """Latent y (1,M,h,w) -> real-valued symbols s (K,h,w), before any rounding."""
        return self._code(y, torch.tensor([quality_index], device=y.device))[0][0]

    @torch.no_grad()
    def quantize(self, y: torch.Tensor, quality_index: int) -> torch.Tensor:
        """Latent y (1,M,h,w) -> int32 symbols (K,h,w) with the fixed dead zone; |s| > R is coded
        with escapes. The codec rounds with the rate-aware ``sccodec.rdo.quantize`` instead, which
        needs the tables; this one fits them (``sccodec.train.tables``)."""
        limit = self.config.value_range + MAX_MAGNITUDE_OVER_RANGE  # beyond: escape codes run out
        return dead_zone_round(self.scaled_symbols(y, quality_index)).clamp_(-limit, limit).to(torch.int32)

    def encode_symbols(self, x: torch.Tensor, quality_index: int) -> torch.Tensor:
        """Padded image (1,3,H,W) -> int32 symbols (K,h,w)."""
        return self.quantize(self.analyze(x), quality_index)

    @torch.no_grad()
    def decode_symbols(self, symbols: torch.Tensor, quality_index: int) -> torch.Tensor:
        """Symbols (K,h,w) -> image (1,3,16h,16w) clamped to [0, 1]."""
        q = torch.tensor([quality_index], device=symbols.device)
        return self.synthesize(symbols[None].float(), q).clamp_(0, 1)
