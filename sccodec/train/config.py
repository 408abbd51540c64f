"""What a training run is asked to do (TrainConfig), and how a resumed run's settings are resolved.

    new run:      ModelConfig() + cfg.model (the shape options given)        ─▶ the model's config
    resumed run:  the checkpoint's ModelConfig, grown if cfg.model asks      ─▶ the model's config
                  the checkpoint's recipe (RESUMED_FIELDS) unless given again ─▶ this run's cfg

``cfg.model`` holds ModelConfig fields by name, so a field added to ModelConfig is a training
option as soon as ``sccodec train`` has a flag of the same name: nothing is copied here.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field, fields, replace

from sccodec.errors import ParameterError
from sccodec.model.scvae import ModelConfig


@dataclass
class TrainConfig:
    data: str
    checkpoint: str = "train_runs/latest.pt"
    steps: int = 0  # this run's steps, counted from the resume point; 0: no step bound
    minutes: float = 0.0  # wall-time bound; 0: none. With both bounds the first one reached ends the run
    crop: int = 128
    batch: int = 8
    lr: float = 1e-3
    fast_lr: float = 5e-3  # gains, steps, thresholds, entropy parameters
    blocks_lr: float = 0.0  # the synthesis' residual blocks; 0: lr (new blocks in an old model may want more)
    warmup: int = 500
    final_decay: float = 0.15  # last fraction of the run at lr / 10
    tail_average: bool = True  # keep the mean of the weights over the lr/10 tail (averaging.py)
    # ‖y_q − D z‖² (SC-VAE latent term). Off by default: measured after the per-level gain it
    # penalised large gains and collapsed the quality levels.
    latent_weight: float = 0.0
    checkpoint_minutes: float = 5.0
    log_every: int = 100
    seed: int = 0
    bf16: bool = True
    compile: bool = True  # torch.compile the conv transforms (SCVAE.compile_transforms)
    device: str = "auto"  # auto: this rank's GPU if CUDA is available, else CPU
    validate_minutes: float = 10.0  # held-out validation (rank 0); 0 turns it off
    dead_zone_grad: float = 0.0  # gradient slope below the LISTA thresholds (lista.soft_threshold)
    # The model's shape: ModelConfig fields away from their defaults. A new model is ModelConfig
    # with these; a resumed model keeps its own and may only grow (GROWABLE). Once resolved,
    # the shape of the model this run trains, as the model has it.
    model: dict = field(default_factory=dict)


#: ModelConfig fields a resumed model may take from ``cfg.model``: it grows (resumed_model_config).
GROWABLE = ("synthesis_blocks",)
#: The recipe a resumed run takes from its checkpoint unless the command line gives it again
#: (not the run's bounds, data, device, bf16 or checkpoint path, which belong to this run and
#: machine: bf16 is on wherever the hardware has it, see has_native_bf16).
RESUMED_FIELDS = ("crop", "batch", "lr", "fast_lr", "blocks_lr", "warmup", "final_decay", "latent_weight",
                  "checkpoint_minutes", "log_every", "seed", "compile", "validate_minutes",
                  "dead_zone_grad", "tail_average")


def model_shape(config: ModelConfig) -> dict:
    """The fields of ``config`` away from ModelConfig's defaults: ``cfg.model`` for that model."""
    default = ModelConfig()
    return {f.name: getattr(config, f.name) for f in fields(ModelConfig)
            if getattr(config, f.name) != getattr(default, f.name)}


def new_model_config(cfg: TrainConfig) -> ModelConfig:
    """A new model's config: the defaults with ``cfg.model`` (ParameterError for unknown fields)."""
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(cfg.model) - known)
    if unknown:
        raise ParameterError(f"{', '.join(unknown)}: not a model option (ModelConfig has {', '.join(sorted(known))})")
    return ModelConfig.from_dict(ModelConfig().to_dict() | cfg.model)


def resumed_model_config(saved: ModelConfig, asked: dict) -> ModelConfig:
    """A resumed model's config: its own, grown to what ``asked`` (``cfg.model``) wants.

    Only synthesis blocks grow; any other shape change is refused (ParameterError), as are
    fewer blocks. Why grow rather than train a bigger model anew: the shipped lineage holds
    tens of CPU-hours; new blocks start as the identity (ResidualBlock) and add capacity to what
    it learned.
    """
    changed = sorted(name for name, value in asked.items()
                     if name not in GROWABLE and value != getattr(saved, name, None))
    if changed:
        raise ParameterError(f"{', '.join(changed)} shape a new model; a resumed run keeps its model's")
    have, want = saved.synthesis_blocks, asked.get("synthesis_blocks", 0)
    if 0 < want < have:
        raise ParameterError(f"the resumed model has {have} synthesis blocks per stage; blocks cannot be removed")
    return replace(saved, synthesis_blocks=max(have, want))


def resumed_config(cfg: TrainConfig, saved: dict | None, given: frozenset[str] | None,
                   model_config: ModelConfig) -> tuple[TrainConfig, dict]:
    """This run's config when continuing a saved one: -> (config, the options taken from it).

    Why: without it a resumed run silently goes back to the defaults of every option not
    repeated (a GDN fine-tune at lr 5e-5 and 256 px crops would resume at lr 1e-3 and 128 px).
    ``given``: the options set on the command line (None: all of them, as from Python). The
    model's shape is recorded as the model has it, so the sidecar never contradicts it.
    """
    inherited = {name: saved[name] for name in RESUMED_FIELDS
                 if saved and name in saved and given is not None and name not in given
                 and saved[name] != getattr(cfg, name)}
    return replace(cfg, **inherited, model=model_shape(model_config)), inherited


def current_train_config(saved: dict) -> dict:
    """A recorded TrainConfig in the current layout.

    Format compatibility: checkpoints and sidecars written before ``model`` existed keep the
    model's shape options as top-level keys of the same names (None where not set); they move
    under ``model`` here.
    """
    shape_names = {f.name for f in fields(ModelConfig)} - {f.name for f in fields(TrainConfig)}
    flat = {k: v for k, v in saved.items() if k in shape_names and v is not None}
    rest = {k: v for k, v in saved.items() if k not in shape_names}
    return rest | {"model": flat | rest.get("model", {})}


def command_line(cfg: dict, resume: str | None) -> str:
    """The ``sccodec train`` invocation that reproduces a recorded TrainConfig (sidecars keep it).

    Every option away from its default becomes its flag, ``cfg["model"]`` entries included (a
    resumed run takes only the growable ones: the rest is the resumed model's own shape).
    """
    cfg = current_train_config(cfg)
    options = {f.name: (cfg.get(f.name, f.default), f.default) for f in fields(TrainConfig)
               if f.name not in ("data", "model")}
    default = ModelConfig()
    options |= {f.name: (cfg["model"][f.name], getattr(default, f.name)) for f in fields(ModelConfig)
                if f.name in cfg["model"] and (not resume or f.name in GROWABLE)}  # in ModelConfig's order
    parts = ["sccodec", "train", "--data", cfg["data"]]
    for name, (value, default) in options.items():
        if _plain(value) == _plain(default):
            continue
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            parts += [f"--{flag}", ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
    if resume:
        parts += ["--resume", resume]
    return shlex.join(parts)


def _plain(value: object) -> object:
    """Tuples as lists: a recorded config read back from JSON has lists where the dataclass had tuples."""
    return list(value) if isinstance(value, tuple) else value
