"""Training checkpoints: what they hold, writing them atomically, reading them back without pickle,
and where a run starts from (a new model, a checkpoint or shipped weights).

A checkpoint is a ``torch.save``'d dict of tensors and plain values only, so ``torch.load`` reads
it with ``weights_only=True`` (no code runs while loading):

    model          the last step's state dict (what Adam's state belongs to)
    optimizer      Adam's state dict
    step           optimiser steps over the whole lineage
    model_config   ModelConfig.to_dict()
    train_config   asdict(TrainConfig) of the last run (config.py), the model's shape under "model"
    wall_seconds   wall time over the whole lineage
    history        progress, validation and event lines, as printed
    runs           one record per run: command line, steps, wall time, processes, device, ...
    tail_average   (optional) TailAverage.to_dict(): the mean over the last run's lr/10 tail
    rate_phase_in  (optional) asdict(RatePhaseIn)
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from sccodec.atomic import atomic_path, remove_stale_temps
from sccodec.errors import ModelMismatchError, ParameterError, SCVError
from sccodec.model.scvae import SCVAE, ModelConfig
from sccodec.train.config import TrainConfig, model_shape, new_model_config, resumed_config, resumed_model_config

REQUIRED_KEYS = frozenset({"model", "model_config", "step"})


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` to ``path`` whole or not at all (a killed run leaves the previous one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)  # a checkpoint's worth of disk each, if a run was killed mid-write
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str) -> dict:
    """A training checkpoint written by ``save_checkpoint``; ParameterError (one line) if it is not one.

    Loaded with ``weights_only=True``. A file that needs pickle (it holds objects other than
    tensors and plain values) is refused, not loaded through a pickle fallback: unpickling runs
    whatever code the file names, and every checkpoint sccodec has written holds plain values
    only (configs as dicts from the start), so such a file is not one of ours as written.
    """
    if path.endswith(".safetensors"):
        raise ParameterError(f"{path} is an exported model, not a training checkpoint (.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise ParameterError(f"{path} needs pickle to load ({', '.join(unsafe)}): refused, since unpickling "
                                 "can run code; sccodec checkpoints hold tensors and plain values only") from None
        raise ParameterError(f"{path} is not a training checkpoint ({_first_line(e)})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ParameterError(f"{path} is not a training checkpoint ({_first_line(e)})") from None
    if not isinstance(state, dict) or not REQUIRED_KEYS <= state.keys():
        raise ParameterError(f"{path} is not a training checkpoint (no model, model_config and step)")
    return state


def _unsafe_globals(path: str) -> list[str]:
    """The classes and functions a torch file would unpickle, if it is a readable torch file."""
    probe = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # torch >= 2.5
    try:
        return probe(path) if probe else []
    except Exception:  # noqa: BLE001 (not a torch zip file: then it is simply not a checkpoint)
        return []


def _first_line(error: Exception) -> str:
    """torch's loading errors run to many lines of advice; the one-line error keeps the gist."""
    text = str(error).split("WeightsUnpickler error:")[-1]  # what the safe unpickler found, if it failed
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:200]


def load_resume(path: str) -> dict:
    """A checkpoint, or shipped weights (``.safetensors``: no optimiser state, which restarts)."""
    if not path.endswith(".safetensors"):
        return load_checkpoint(path)
    from sccodec.weights import read_model_file

    try:
        model_file = read_model_file(path)
        sidecar = Path(path).with_suffix(".json")
        training = json.loads(sidecar.read_text()).get("training", {}) if sidecar.is_file() else {}
        model = model_file.build().state_dict()
    except ModelMismatchError as e:  # not a readable weights file
        raise ParameterError(f"cannot resume from {path}: {e}") from None
    except SCVError:
        raise
    except Exception as e:  # noqa: BLE001 (safetensors, JSON and key errors: all mean "not a model")
        raise ParameterError(f"cannot resume from {path}: not an sccodec model with a readable sidecar "
                             f"({type(e).__name__}: {e})") from None
    return {"model": model, "model_config": model_file.config.to_dict(),
            "step": training.get("iterations", 0), "wall_seconds": training.get("wall_seconds", 0.0),
            "runs": training.get("runs", []), "train_config": training.get("train_config")}


@dataclass
class Start:
    """Where a run starts: its resolved config, its model's config, and what it resumes, if anything."""

    cfg: TrainConfig
    model_config: ModelConfig
    resume: str | None = None
    saved: dict | None = None  # the checkpoint (or shipped weights) resumed from
    saved_config: ModelConfig | None = None  # its model's config, before any growth
    inherited: dict = field(default_factory=dict)  # options taken from its recipe

    @property
    def grown(self) -> bool:
        return self.saved_config is not None and self.model_config != self.saved_config

    @property
    def step(self) -> int:
        return self.saved.get("step", 0) if self.saved else 0


def starting_point(cfg: TrainConfig, resume: str | None, given: frozenset[str] | None) -> Start:
    """A new model shaped by ``cfg.model``, or the resumed one (grown if asked) with its recipe."""
    if not resume:
        model_config = new_model_config(cfg)
        return _checked(Start(replace(cfg, model=model_shape(model_config)), model_config))
    saved = load_resume(resume)
    saved_config = ModelConfig.from_dict(saved["model_config"])
    model_config = resumed_model_config(saved_config, cfg.model)
    cfg, inherited = resumed_config(cfg, saved.get("train_config"), given, model_config)
    return _checked(Start(cfg, model_config, resume, saved, saved_config, inherited))


def _checked(start: Start) -> Start:
    """``start``, if its options fit its model (ParameterError before any process group forms)."""
    if start.cfg.blocks_lr and not start.model_config.synthesis_blocks:
        raise ParameterError("--blocks-lr sets the learning rate of synthesis blocks; this model has none "
                             "(add --synthesis-blocks N)")
    return start


def restore_weights(model: SCVAE, start: Start) -> None:
    """Load the resumed weights; a grown model's new blocks (only those) keep their initial values."""
    if start.saved is None:
        return
    missing, unexpected = model.load_state_dict(start.saved["model"], strict=not start.grown)
    if unexpected or any(not key.startswith("g_s.refine.") for key in missing):
        raise ParameterError(f"cannot grow the model of {start.resume}: keys {unexpected or missing} do not fit")
