"""A model's architecture as data: the hyper-parameters in every weights file, and the geometry
the codec tiles with. No torch: the coding path reads these without building any network.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from sccodec.errors import ModelMismatchError

STRIDE = 16  # pixels per latent position, each way
ANALYSIS_MARGIN = 64  # pixels beyond a tile that g_a sees: its receptive field reaches 61 px
#: Receptive radius of g_s's four 3x3 convolutions, in latent positions (one at each scale).
SYNTHESIS_PLAIN_RADIUS = 1 + 1 / 2 + 1 / 4 + 1 / 8


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


def open_atoms(config: ModelConfig, quality_index: int) -> int:
    """How many atoms (the first ones) level ``quality_index`` (0-based) may code: every one, or
    with nested atoms ceil(K·(q+1)/Q); the others' symbols are always 0 (``SCVAE.atom_mask``).
    Integer arithmetic only, so an integer tensor of levels gives a tensor of counts."""
    if not config.nested_atoms:
        return config.atoms
    return ((quality_index + 1) * config.atoms + config.qualities - 1) // config.qualities


#: ModelConfig fields added after the first weights format, with their (omitted) defaults.
_LATER_FIELDS = {"synthesis_blocks": 0}


def synthesis_margin(blocks: int) -> int:
    """Latent positions of neighbouring symbols a pixel of g_s depends on (tiled decoding reads
    them): a residual block's two 3x3 convs reach 2 px at its scale, i.e. 1 latent position at
    1/8 scale and 1/2 at 1/4 scale."""
    return math.ceil(SYNTHESIS_PLAIN_RADIUS + blocks * (1 + 1 / 2))


@dataclass(frozen=True)
class Geometry:
    """How a model's symbol grid sits on the image: what tiling and parsing need of it."""

    stride: int  # pixels per symbol position, each way
    analysis_margin: int  # pixels beyond a tile that its analysis sees (a multiple of stride)
    synthesis_margin: int  # symbol positions beyond a tile that its synthesis reads


def geometry(config: ModelConfig) -> Geometry:
    """The SC-VAE's geometry for ``config``."""
    return Geometry(STRIDE, ANALYSIS_MARGIN, synthesis_margin(config.synthesis_blocks))
